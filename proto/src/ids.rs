//! Identifiers Herald mints. Sortable by creation time, safe as subject
//! tokens and file names.

use crate::v1::Channel;

pub fn notification_id() -> String {
    format!("ntf_{}", ulid::Ulid::new())
}

/// When a notification id was minted, read from its ULID; `None` for an
/// id that is not one Herald made.
pub fn made_at(notification_id: &str) -> Option<std::time::SystemTime> {
    let ulid = notification_id.strip_prefix("ntf_")?;
    Some(ulid::Ulid::from_string(ulid).ok()?.datetime())
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

/// The 32-bit FNV-1a hash of `bytes`: what case partitions and audit
/// buckets are chosen by (stored subjects depend on it, so it never
/// changes).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The 64-bit FNV-1a hash of `bytes`: a short stable name for a value too
/// long to spell out (not a secret; not for anything an attacker chooses
/// to collide).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_id_tells_when_it_was_made() {
        let before = std::time::SystemTime::now() - std::time::Duration::from_millis(1);
        let made = made_at(&notification_id()).expect("a Herald id");
        assert!(made >= before && made <= std::time::SystemTime::now());
        assert_eq!(made_at("ntf_not-a-ulid"), None);
        assert_eq!(made_at("BC-2026-1"), None);
    }
}
