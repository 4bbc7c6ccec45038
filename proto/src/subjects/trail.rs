//! The audit trail's subjects: each record filed under the buckets of its
//! case and notification, and the filters and checks that read one
//! notification's, one case's or every trail back.

use super::{AUDIT_NONE, AUDIT_PREFIX};

/// Subject of one audit record.
pub fn audit(case_id: &str, notification_id: &str) -> String {
    format!(
        "{AUDIT_PREFIX}.{}.{}",
        audit_bucket(case_id),
        audit_bucket(notification_id)
    )
}

/// The bucket an id's audit records are filed under: two hex digits of the
/// id's 32-bit FNV-1a hash, or `_` for none. Stored subjects depend on it,
/// so it never changes.
pub fn audit_bucket(id: &str) -> String {
    if id.is_empty() {
        return AUDIT_NONE.to_string();
    }
    format!("{:02x}", crate::ids::fnv1a32(id.as_bytes()) & 0xff)
}

/// Which records a trail holds, and the filter that finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    /// Subject filter on [`STREAM_AUDIT`]: the id's bucket.
    pub filter: String,
    pub of: TrailOf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailOf {
    Notification(String),
    Case(String),
    /// Every record of every notification and case.
    Everything,
}

impl Trail {
    /// Whether `record` belongs to this trail, not to another id of the
    /// same bucket.
    pub fn holds(&self, record: &crate::v1::AuditRecord) -> bool {
        match &self.of {
            TrailOf::Notification(id) => record.notification_id == *id,
            TrailOf::Case(id) => record.case_id == *id,
            TrailOf::Everything => true,
        }
    }

    /// No record of this trail was written before this moment, as far as
    /// the id can tell (a notification id carries the time it was made):
    /// a reader may start there rather than at the stream's first message.
    pub fn not_before(&self) -> Option<std::time::SystemTime> {
        match &self.of {
            TrailOf::Notification(id) => crate::ids::made_at(id),
            TrailOf::Case(_) | TrailOf::Everything => None,
        }
    }
}

/// One notification's trail.
pub fn audit_of_notification(notification_id: &str) -> Trail {
    Trail {
        filter: format!("{AUDIT_PREFIX}.*.{}", audit_bucket(notification_id)),
        of: TrailOf::Notification(notification_id.to_string()),
    }
}

/// A whole case's trail, notifications included.
pub fn audit_of_case(case_id: &str) -> Trail {
    Trail {
        filter: format!("{AUDIT_PREFIX}.{}.*", audit_bucket(case_id)),
        of: TrailOf::Case(case_id.to_string()),
    }
}

/// The whole trail, every notification and case.
pub fn audit_everything() -> Trail {
    Trail {
        filter: audit_all().to_string(),
        of: TrailOf::Everything,
    }
}

pub fn audit_all() -> &'static str {
    "herald.v1.audit.>"
}
