//! How cancel keys are written: the contract between the callers that
//! name keys, the services that derive them (escalation, broadcasts) and
//! delivery, which keeps them and checks them before every send.
//!
//! A plain key (`inq-8`) is cancelled once and for all. A key in a
//! *family* (`esc-CASE-1@42`: family `esc-CASE-1`, position 42) is
//! cancelled when its family is stopped at a later position: escalation
//! gives each escalation of a case the family [`escalation_family`] and,
//! as position, the case-stream sequence of what started it, so an
//! acknowledgement stored later in the stream stops every escalation begun
//! before it and none begun after.

/// Keys one request may carry.
pub const MAX_KEYS: usize = 8;

/// Whether `key` can be a cancel key: the same alphabet as a subject token,
/// so it never needs escaping in Redis or in the trail.
pub fn check_key(key: &str) -> Result<(), String> {
    if crate::subjects::is_subject_token(key) {
        Ok(())
    } else {
        Err("must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)".into())
    }
}

/// The cancel key of every send to a third party that rests on `client`'s
/// consent to share with `with` (a contact id or `category:<name>`):
/// withdrawing the consent cancels it. Readable when it fits a key, else
/// a digest of the pair.
pub fn consent_key(client: &str, with: &str) -> String {
    let key = format!("consent:{client}:{with}");
    if check_key(&key).is_ok() {
        return key;
    }
    let digest = crate::ids::fnv1a64(format!("{client}\u{0}{with}").as_bytes());
    format!("consent:{digest:016x}")
}

/// The key at `position` in `family`.
pub fn family_key(family: &str, position: u64) -> String {
    format!("{family}@{position}")
}

/// The family and position of a key written `family@position`.
pub fn split_family(key: &str) -> Option<(&str, u64)> {
    let (family, pos) = key.rsplit_once('@')?;
    if family.is_empty() || pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((family, pos.parse().ok()?))
}

/// The family of a case's escalations: an acknowledgement, a response or a
/// resolution stops every escalation of the case begun before it.
pub fn escalation_family(case_id: &str) -> String {
    format!("esc-{case_id}")
}

/// The family of a case's follow-up (survey and reminder): reopening the
/// case or receiving its feedback stops what is still pending.
pub fn follow_up_family(case_id: &str) -> String {
    format!("fu-{case_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_keys_split_back() {
        let k = family_key(&escalation_family("CASE-1"), 42);
        assert_eq!(k, "esc-CASE-1@42");
        assert!(check_key(&k).is_ok());
        assert_eq!(split_family(&k), Some(("esc-CASE-1", 42)));
        for plain in ["inq-8", "a@b", "@5", "x@", "x@1a"] {
            assert_eq!(split_family(plain), None, "{plain}");
        }
    }
}
