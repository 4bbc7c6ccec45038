//! Identifiers Herald mints. Sortable by creation time, safe as subject
//! tokens and file names.

use crate::v1::Channel;

pub fn notification_id() -> String {
    format!("ntf_{}", ulid::Ulid::new())
}

pub fn record_id() -> String {
    format!("aud_{}", ulid::Ulid::new())
}

/// A case an integration opens for an alert: `inc-<integration>-<ulid>`,
/// lower case, within what a case id may be.
pub fn incident_case_id(integration: &str) -> String {
    format!(
        "inc-{integration}-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// A delivery job id is derived, never random: routing the same
/// notification twice yields the same jobs, which delivery then sends once.
pub fn job_id(notification_id: &str, recipient_index: usize, channel: Channel) -> String {
    format!("{notification_id}-r{recipient_index}-{}", channel.name())
}

/// The name a process goes by where it holds something for a while (a
/// send's lease, an emergency pulse): its pid and a fresh ULID, so a
/// restarted process never takes over what its earlier self held.
pub fn owner_id() -> String {
    format!("{}-{}", std::process::id(), ulid::Ulid::new())
}
