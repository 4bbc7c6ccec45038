//! What guards a contact's content: a recorded verification of their
//! identity (SOP 000 §4: sensitive content only to a verified person) and
//! their consents to share their matter with third parties (SOP 001
//! §4.4.3, SOP 003 §6.4), each with who, how and when.

use serde::{Deserialize, Serialize};

use crate::contacts::Contact;

/// A verification of a contact's identity (SOP 000 §4), as staff recorded
/// it: `herald contacts verify <id> --by <staff> --method <how>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The staff member's contact id.
    pub by: String,
    /// How the identity was checked.
    pub method: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A person's consent to share their matter with a third party (SOP 001
/// §4.4.3), with where it comes from and when it was given and withdrawn.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SharingConsent {
    /// A contact id, or `category:<name>` for every third party of a kind.
    pub with: String,
    pub source: String,
    pub given_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The most consents one contact's record keeps.
pub const MAX_SHARING: usize = 100;

/// What `with` a consent may name: a contact id or `category:<name>`.
pub fn check_sharing_with(with: &str) -> Result<(), String> {
    let name = with.strip_prefix("category:").unwrap_or(with);
    if herald_proto::subjects::is_subject_token(name) && !name.contains(':') {
        Ok(())
    } else {
        Err("must be a contact id or category:<name> (letters, digits or - _ @ + =)".into())
    }
}

impl SharingConsent {
    pub fn active(&self) -> bool {
        self.withdrawn_at.is_none()
    }

    /// Whether this consent covers `recipient`.
    pub fn covers(&self, recipient: &Contact) -> bool {
        self.active()
            && (self.with == recipient.id
                || recipient
                    .third_party_category
                    .as_deref()
                    .is_some_and(|c| self.with.strip_prefix("category:") == Some(c)))
    }

    fn problems(&self, i: usize) -> Vec<(String, String)> {
        let field = |f: &str| format!("sharing[{i}].{f}");
        let mut out = Vec::new();
        if let Err(why) = check_sharing_with(&self.with) {
            out.push((field("with"), why));
        }
        if let Err(why) = one_line(&self.source) {
            out.push((
                field("source"),
                format!("{why}: say where the consent comes from"),
            ));
        }
        if self.given_at.timestamp() <= 0 {
            out.push((field("given_at"), "is missing".into()));
        }
        if self.withdrawn_at.is_some_and(|w| w < self.given_at) {
            out.push((field("withdrawn_at"), "is before given_at".into()));
        }
        out
    }
}

/// A short free-text field: one line, not empty, at most [`MAX_METHOD`]
/// characters.
pub fn one_line(text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        Err("is empty".into())
    } else if text.chars().count() > MAX_METHOD || text.contains(['\n', '\r']) {
        Err(format!(
            "must be one line of at most {MAX_METHOD} characters"
        ))
    } else {
        Ok(())
    }
}

/// The longest description of how an identity was checked.
pub const MAX_METHOD: usize = 200;

impl Verification {
    /// Every problem with this verification, as (field, reason), the field
    /// named under `verification.`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !herald_proto::subjects::is_subject_token(&self.by) {
            out.push((
                "verification.by".into(),
                "must be the contact id of the staff member who verified the identity".into(),
            ));
        }
        let method = self.method.trim();
        if method.is_empty() {
            out.push((
                "verification.method".into(),
                "is empty: say how the identity was checked".into(),
            ));
        } else if method.chars().count() > MAX_METHOD || method.contains(['\n', '\r']) {
            out.push((
                "verification.method".into(),
                format!("must be one line of at most {MAX_METHOD} characters"),
            ));
        }
        if self.at.timestamp() <= 0 {
            out.push((
                "verification.at".into(),
                "is missing: say when the identity was checked".into(),
            ));
        } else if self.at > chrono::Utc::now() + chrono::Duration::minutes(5) {
            out.push(("verification.at".into(), "is in the future".into()));
        }
        out
    }
}

impl Contact {
    /// The consent on record to share this person's matter with
    /// `recipient`, if any.
    pub fn consent_to_share(&self, recipient: &Contact) -> Option<&SharingConsent> {
        self.sharing.iter().find(|s| s.covers(recipient))
    }

    /// Records consent to share with `with`; false if an active one was
    /// already on record (it is kept as it was).
    pub fn give_consent(
        &mut self,
        with: &str,
        source: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        if self.sharing.iter().any(|s| s.active() && s.with == with) {
            return false;
        }
        self.sharing.push(SharingConsent {
            with: with.to_string(),
            source: source.trim().to_string(),
            given_at: at,
            withdrawn_at: None,
        });
        true
    }

    /// Withdraws the active consent to share with `with`; false if there
    /// was none.
    pub fn withdraw_consent(&mut self, with: &str, at: chrono::DateTime<chrono::Utc>) -> bool {
        let mut found = false;
        for s in self
            .sharing
            .iter_mut()
            .filter(|s| s.active() && s.with == with)
        {
            s.withdrawn_at = Some(at.max(s.given_at));
            found = true;
        }
        found
    }

    /// Whether the person's identity is verified, with a record of who
    /// verified it, how and when: a bare `identity_verified` is not enough.
    pub fn verified(&self) -> bool {
        self.identity_verified && self.verification.is_some()
    }

    /// This contact, verified by `by` with `method` at `at`.
    pub fn verify(&mut self, verification: Verification) {
        self.identity_verified = true;
        self.verification = Some(verification);
    }

    /// This record replacing `old`: consents on record stay as recorded (a
    /// withdrawal stops queued sends, which an import cannot do, so only
    /// `withdraw_consent` withdraws); consents the import brings that are
    /// not on record yet are added.
    pub fn carry_consents(&mut self, old: &Contact) {
        let brought = std::mem::replace(&mut self.sharing, old.sharing.clone());
        for s in brought {
            let known = self
                .sharing
                .iter()
                .any(|k| k.with == s.with && (k.active() || k.given_at == s.given_at));
            if !known {
                self.sharing.push(s);
            }
        }
    }

    /// This record replacing `old`: a verification is the directory's
    /// record of what staff checked, so an import that says nothing of it
    /// keeps the one `old` had, unless the email or phone changed, which
    /// clears it (the new address was never checked), as it clears one
    /// the import carries that is not newer than `old`'s. True if `old`'s
    /// verification was cleared.
    pub fn carry_verification(&mut self, old: &Contact) -> bool {
        let Some(before) = old.verification.as_ref().filter(|_| old.verified()) else {
            return false;
        };
        let moved = self.email != old.email || self.phone != old.phone;
        match &self.verification {
            Some(now) if !moved || now.at > before.at => false,
            Some(_) => {
                self.identity_verified = false;
                self.verification = None;
                true
            }
            None if moved => true,
            None => {
                self.verify(before.clone());
                false
            }
        }
    }

    /// Every problem with the verification, the third-party marking and
    /// the consents, as (field, reason).
    pub(crate) fn safeguard_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(c) = &self.third_party_category {
            if !self.third_party {
                out.push((
                    "third_party_category".into(),
                    "is given but third_party is false".into(),
                ));
            } else if !herald_proto::subjects::is_subject_token(c) || c.contains(':') {
                out.push((
                    "third_party_category".into(),
                    "must be 1-128 letters, digits or - _ @ + =".into(),
                ));
            }
        }
        if self.sharing.len() > MAX_SHARING {
            out.push((
                "sharing".into(),
                format!("has more than {MAX_SHARING} consents"),
            ));
        }
        for (i, s) in self.sharing.iter().enumerate() {
            out.extend(s.problems(i));
        }
        match (&self.verification, self.identity_verified) {
            (None, true) => out.push((
                "identity_verified".into(),
                "is true but nothing says who verified the identity, how or when: give \
                 verification: {by, method, at}, or record it with \
                 `herald contacts verify <id> --by <staff> --method <how>`"
                    .into(),
            )),
            (Some(_), false) => out.push((
                "verification".into(),
                "is given but identity_verified is false".into(),
            )),
            (Some(v), true) => out.extend(v.problems()),
            (None, false) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(at: &str) -> Verification {
        Verification {
            by: "sup-ana".into(),
            method: "passport seen".into(),
            at: at.parse().unwrap(),
        }
    }

    fn verified_contact() -> Contact {
        let mut c: Contact = serde_saphyr::from_str(
            "id: ann\nname: Ann\nemail: ann@example.org\nphone: '+447700900123'\n",
        )
        .unwrap();
        c.verify(checked("2026-01-01T10:00:00Z"));
        c
    }

    #[test]
    fn a_claim_of_verification_without_who_how_and_when_is_refused() {
        let mut c = verified_contact();
        c.verification = None;
        let problems = c.problems();
        assert_eq!(problems[0].0, "identity_verified", "{problems:?}");
        assert!(
            problems[0].1.contains("herald contacts verify"),
            "{problems:?}"
        );
        assert!(!c.verified());

        let mut c = verified_contact();
        c.verification.as_mut().unwrap().method = " ".into();
        assert_eq!(c.problems()[0].0, "verification.method");
        let mut c = verified_contact();
        c.verification.as_mut().unwrap().at = chrono::DateTime::UNIX_EPOCH;
        assert_eq!(c.problems()[0].0, "verification.at");
        assert!(verified_contact().problems().is_empty());
    }

    #[test]
    fn a_new_email_or_phone_clears_the_verification_and_nothing_else_does() {
        let old = verified_contact();

        // The same person imported again without a word on verification
        // keeps it.
        let mut same = old.clone();
        same.identity_verified = false;
        same.verification = None;
        same.name = "Ann M.".into();
        assert!(!same.carry_verification(&old));
        assert!(same.verified());
        assert_eq!(same.verification, old.verification);

        // A new phone number was never checked.
        for change in [
            |c: &mut Contact| c.phone = Some("+447700900999".into()),
            |c: &mut Contact| c.email = Some("ann@elsewhere.org".into()),
            |c: &mut Contact| c.email = None,
        ] {
            let mut moved = old.clone();
            change(&mut moved);
            assert!(moved.carry_verification(&old));
            assert!(!moved.verified() && moved.verification.is_none());
            assert!(moved.problems().is_empty(), "{:?}", moved.problems());
        }

        // Unless the import brings a later verification of the new details.
        let mut renewed = old.clone();
        renewed.phone = Some("+447700900999".into());
        renewed.verify(checked("2026-02-01T10:00:00Z"));
        assert!(!renewed.carry_verification(&old));
        assert!(renewed.verified());
    }

    #[test]
    fn consents_are_kept_through_imports_and_only_withdrawn_by_asking() {
        let at = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let mut insurer = verified_contact();
        insurer.id = "ins-x".into();
        insurer.third_party = true;
        insurer.third_party_category = Some("insurer".into());
        let mut old = verified_contact();
        assert!(old.give_consent(
            "category:insurer",
            "signed form",
            at("2026-03-02T10:00:00Z")
        ));
        assert!(!old.give_consent("category:insurer", "again", at("2026-03-03T10:00:00Z")));
        assert!(old.consent_to_share(&insurer).is_some());
        assert!(old.problems().is_empty(), "{:?}", old.problems());

        // An import without consents keeps them; one with a new one adds it.
        let mut imported = verified_contact();
        imported.carry_consents(&old);
        assert_eq!(imported.sharing, old.sharing);
        let mut more = verified_contact();
        more.give_consent("ins-y", "call", at("2026-04-01T10:00:00Z"));
        more.carry_consents(&old);
        assert_eq!(more.sharing.len(), 2);

        // Withdrawn, it covers no one, and stays on record.
        assert!(old.withdraw_consent("category:insurer", at("2026-05-01T10:00:00Z")));
        assert!(old.consent_to_share(&insurer).is_none());
        assert!(!old.withdraw_consent("category:insurer", at("2026-05-02T10:00:00Z")));
        assert_eq!(old.sharing.len(), 1);
        // An import of the old record, consent still active in it, does
        // not bring it back.
        let mut stale = verified_contact();
        stale.give_consent(
            "category:insurer",
            "signed form",
            at("2026-03-02T10:00:00Z"),
        );
        stale.carry_consents(&old);
        assert!(stale.consent_to_share(&insurer).is_none());

        let mut bad = verified_contact();
        bad.third_party_category = Some("insurer".into());
        assert_eq!(bad.problems()[0].0, "third_party_category");
        let mut bad = verified_contact();
        bad.give_consent("category:", "x", at("2026-03-02T10:00:00Z"));
        assert_eq!(bad.problems()[0].0, "sharing[0].with");
    }
}
