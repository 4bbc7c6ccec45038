//! What intake, the broadcast service and delivery agree on about a
//! broadcast: how its id looks, the cancel keys its jobs carry and which
//! shipped templates it uses. The broadcast's state is the broadcast
//! service's own; others ask it (`BROADCAST_STATUS`).

/// The longest broadcast id, so that every job id and cancel key derived
/// from it stays a valid subject token.
pub const MAX_ID: usize = 64;

/// The template of the alert a data-breach notification broadcasts to the
/// Data Protection Officer and management (SOP 003 §8).
pub const BREACH_TEMPLATE: &str = "breach_protocol";

/// The words that ask for a confirmation, per language and channel: the
/// link line of the email, the key-press prompt of the call, the reply hint
/// of the SMS. Required wherever broadcasts run.
pub const CONFIRMATION_TEMPLATE: &str = "broadcast_confirmation";

/// Who started a broadcast that a data-breach notification caused.
pub const BREACH_ACTOR: &str = "breach-protocol";

/// Whether `id` can name a broadcast: a subject token of at most
/// [`MAX_ID`] characters that cannot be mistaken for a notification id.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID || !crate::subjects::is_subject_token(id) {
        return Err(format!(
            "must be 1-{MAX_ID} letters, digits or - _ : @ + = (no dots or spaces)"
        ));
    }
    if id.starts_with("ntf_") {
        return Err("must not start with ntf_ (notification ids do)".into());
    }
    Ok(())
}

/// The id of the broadcast a data-breach notification starts.
pub fn breach_id(notification_id: &str) -> String {
    format!("breach-{notification_id}")
}

/// Whether `id` is a data breach's id, as [`breach_id`] makes them.
pub fn is_breach_id(id: &str) -> bool {
    id.strip_prefix("breach-").is_some_and(|n| !n.is_empty())
        && crate::subjects::is_subject_token(id)
}

/// Carried by every job of the broadcast: cancelling the broadcast stops
/// them all.
pub fn cancel_key(broadcast_id: &str) -> String {
    format!("bc:{broadcast_id}")
}

/// Carried by one recipient's calls: their confirmation stops the rest.
pub fn recipient_cancel_key(broadcast_id: &str, recipient: usize) -> String {
    format!("bc:{broadcast_id}:r{recipient}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys() {
        assert!(check_id("flood-2026-03").is_ok());
        for bad in ["", "a.b", "ntf_01J", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_ID);
        assert!(crate::cancel_keys::check_key(&recipient_cancel_key(&long, 99_999)).is_ok());
        assert!(check_id(&breach_id("ntf_01J0000000000000000000000")).is_ok());
    }
}
