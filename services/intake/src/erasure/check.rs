//! An erasure request checked field by field, and what the trail may say
//! about it: pure, so every refusal and the field it names is tested here
//! without a directory or a bus.

use herald_directory::contacts::Contact;
use herald_proto::{
    Message,
    v1::{EraseContact, ErasedPart, ErrorCode, Rejected},
};
use herald_runtime::erase::Person;

use crate::validate::reject;

/// The longest `by` and `reason` the trail keeps.
const MAX_TEXT: usize = 200;

/// Reads an erasure request: the contact and who it is done for, trimmed.
/// An undecodable payload is refused as a whole, naming no field.
pub fn check(payload: &[u8]) -> Result<EraseContact, Rejected> {
    let req = EraseContact::decode(payload).map_err(|e| {
        reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.EraseContact: {e}"),
        )
    })?;
    let contact_id = req.contact_id.trim().to_string();
    if contact_id.is_empty() {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "contact_id",
            "name the contact to erase",
        ));
    }
    if contact_id.chars().count() > 128 || contact_id.chars().any(char::is_control) {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "contact_id",
            "is not a contact id (at most 128 printable characters)",
        ));
    }
    let by = req.by.trim().to_string();
    if by.is_empty() {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "by",
            "name the member of staff the erasure is done for (--by)",
        ));
    }
    let reason = req.reason.trim().to_string();
    for (field, value) in [("by", &by), ("reason", &reason)] {
        if value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                field,
                format!("must be at most {MAX_TEXT} printable characters"),
            ));
        }
    }
    Ok(EraseContact {
        contact_id,
        by,
        reason,
    })
}

/// What names the person: their id and name as words, their addresses
/// anywhere. Without a record (erased before), only the id.
pub fn person(id: &str, contact: Option<&Contact>) -> (Vec<String>, Vec<String>) {
    let mut words = vec![id.to_string()];
    let mut addresses = Vec::new();
    if let Some(c) = contact {
        words.push(c.name.clone());
        addresses.extend(c.email.iter().chain(&c.phone).cloned());
    }
    words.retain(|w| !w.trim().is_empty());
    (words, addresses)
}

/// The trail keeps `by` and `reason` as they are: neither may name the
/// person being erased.
pub fn keeps_no_trace(req: &EraseContact, person: &Person) -> Result<(), Rejected> {
    for (field, value) in [("by", &req.by), ("reason", &req.reason)] {
        if person.named_in(value.as_bytes()) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                field,
                "names the person being erased; the trail keeps it, so say it without them",
            ));
        }
    }
    Ok(())
}

/// The summary the trail keeps: how much went, never what it was.
pub fn summary(parts: &[ErasedPart], failed: &[ErasedPart], reason: &str) -> String {
    let removed: u64 = parts.iter().map(|p| p.removed).sum();
    let stores = parts.iter().filter(|p| p.removed > 0).count();
    let mut s = if removed == 0 {
        "erasure: nothing left to remove".to_string()
    } else {
        format!("erasure: {removed} record(s) removed from {stores} store(s)")
    };
    if !failed.is_empty() {
        let who: Vec<&str> = failed.iter().map(|f| f.service.as_str()).collect();
        s.push_str(&format!(
            "; incomplete, not done by {} (ask again)",
            who.join(", ")
        ));
    }
    if !reason.is_empty() {
        s.push_str(&format!(" ({reason})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, by: &str, reason: &str) -> Vec<u8> {
        EraseContact {
            contact_id: id.into(),
            by: by.into(),
            reason: reason.into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn every_refusal_names_its_field() {
        assert_eq!(check(b"\xff\xff").unwrap_err().field, "");
        assert_eq!(
            check(&req(" ", "dana", "")).unwrap_err().field,
            "contact_id"
        );
        let long = "x".repeat(129);
        assert_eq!(
            check(&req(&long, "dana", "")).unwrap_err().field,
            "contact_id"
        );
        assert_eq!(check(&req("ria", "", "")).unwrap_err().field, "by");
        assert_eq!(check(&req("ria", "da\nna", "")).unwrap_err().field, "by");
        let reason = "r".repeat(201);
        assert_eq!(
            check(&req("ria", "dana", &reason)).unwrap_err().field,
            "reason"
        );
        let ok = check(&req(" ria ", " dana ", " art. 17 ")).unwrap();
        assert_eq!((ok.contact_id.as_str(), ok.by.as_str()), ("ria", "dana"));
        assert_eq!(ok.reason, "art. 17");
    }

    #[test]
    fn the_trail_never_repeats_who_was_erased() {
        let p = Person::new(["ria", "Ria Lopez"], ["ria@example.org"]);
        let named = |by: &str, reason: &str| EraseContact {
            contact_id: "ria".into(),
            by: by.into(),
            reason: reason.into(),
        };
        assert!(keeps_no_trace(&named("dana", "request of 2 March"), &p).is_ok());
        assert_eq!(
            keeps_no_trace(&named("dana", "Ria Lopez asked"), &p)
                .unwrap_err()
                .field,
            "reason"
        );
        assert_eq!(
            keeps_no_trace(&named("ria@example.org", ""), &p)
                .unwrap_err()
                .field,
            "by"
        );
    }

    #[test]
    fn the_summary_counts_and_says_what_is_missing() {
        let part = |service: &str, removed| ErasedPart {
            service: service.into(),
            store: "HERALD_AUDIT".into(),
            removed,
            error: String::new(),
        };
        assert_eq!(
            summary(&[part("intake", 3), part("delivery", 0)], &[], ""),
            "erasure: 3 record(s) removed from 1 store(s)"
        );
        assert_eq!(
            summary(&[], &[part("delivery", 0)], "art. 17"),
            "erasure: nothing left to remove; incomplete, not done by delivery (ask again) (art. 17)"
        );
    }
}
