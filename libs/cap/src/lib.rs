//! OASIS Common Alerting Protocol 1.2 (CAP): the XML alert message
//! public-warning systems exchange. Herald reads an `<alert>` to start,
//! update or cancel an emergency broadcast and writes a broadcast back as
//! one.
//!
//! Reading is strict where CAP is (the required elements, the values each
//! enumeration allows, the form of `sent`) and keeps what a broadcast
//! needs plus what a CAP consumer expects back: per `info` its language,
//! categories, event, urgency, severity, certainty, headline, description,
//! instruction and each area's `areaDesc`. Elements of other namespaces
//! (an XML signature, say) are passed over; a document type declaration
//! is refused, so no entity can be expanded.

mod broadcast;
mod read;
mod write;

pub use broadcast::{Command, command, export};
pub use read::parse;
pub use write::write;

use sha2::{Digest, Sha256};

/// The CAP 1.2 namespace, which the root `alert` must be in.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// The values CAP allows, element by element.
pub const STATUS: [&str; 5] = ["Actual", "Exercise", "System", "Test", "Draft"];
pub const MSG_TYPE: [&str; 5] = ["Alert", "Update", "Cancel", "Ack", "Error"];
pub const SCOPE: [&str; 3] = ["Public", "Restricted", "Private"];
pub const CATEGORY: [&str; 12] = [
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];
pub const URGENCY: [&str; 5] = ["Immediate", "Expected", "Future", "Past", "Unknown"];
pub const SEVERITY: [&str; 5] = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
pub const CERTAINTY: [&str; 6] = [
    "Observed",
    "Likely",
    "Possible",
    "Unlikely",
    "Unknown",
    // CAP 1.0's value, which 1.2 still accepts for compatibility.
    "Very Likely",
];

/// An alert message, as far as Herald reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alert {
    pub identifier: String,
    pub sender: String,
    /// `YYYY-MM-DDThh:mm:ss±hh:mm`, as CAP writes times.
    pub sent: String,
    pub status: String,
    pub msg_type: String,
    pub scope: String,
    pub note: String,
    /// Earlier messages this one follows (for an update or a cancel).
    pub references: Vec<Reference>,
    pub info: Vec<Info>,
}

/// One earlier message, `sender,identifier,sent` in `references`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
}

/// The alert in one language.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// RFC 3066 tag; CAP's default is `en-US`.
    pub language: String,
    pub categories: Vec<String>,
    pub event: String,
    pub urgency: String,
    pub severity: String,
    pub certainty: String,
    pub sender_name: String,
    pub headline: String,
    pub description: String,
    pub instruction: String,
    pub web: String,
    pub contact: String,
    /// Each area's `areaDesc`.
    pub areas: Vec<String>,
}

/// Why a document is not a CAP 1.2 alert Herald can read: the element
/// (a path such as `alert/info[1]/severity`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub element: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.element.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.element, self.message)
        }
    }
}

impl std::error::Error for Invalid {}

impl Alert {
    /// The broadcast this alert names, or, for an update or a cancel, the
    /// broadcast of the first message it references (the original alert).
    pub fn broadcast_id(&self) -> String {
        match (self.msg_type.as_str(), self.references.first()) {
            ("Update" | "Cancel", Some(r)) => broadcast_id(&r.sender, &r.identifier),
            _ => broadcast_id(&self.sender, &self.identifier),
        }
    }
}

/// The broadcast id of the alert `identifier` from `sender`: CAP makes the
/// pair unique, and its identifiers may hold characters a broadcast id may
/// not (dots, colons of OIDs), so it is a digest, `cap-` and 24 hex digits.
pub fn broadcast_id(sender: &str, identifier: &str) -> String {
    let digest = Sha256::digest(format!("{sender}\u{0}{identifier}").as_bytes());
    format!("cap-{}", hex::encode(&digest[..12]))
}

#[cfg(test)]
mod tests;
