//! The contact directory in Redis: who people are, how they may be reached
//! (SOP 001 §4.2: preferred channel documented per client), whether their
//! identity is verified (SOP 000 §4) and what they consented to (SOP 001
//! §4.4).
//!
//! One JSON value per contact at `<directory keyspace>contact:<id>` (`herald:dir:` by default), plus a set of all
//! ids for listing, and a set of ids per organisation (`org:<name>`)
//! and per role (`role:<name>`) so that "everyone at site X" or
//! "every DPO" resolves in one round trip. The per-organisation and per-role
//! sets may name a contact that has since moved (two imports racing); the
//! contact record is the truth, so readers check it ([`Directory::in_group`]
//! does). Files to import are YAML (`contacts: [...]` or a bare list) or
//! TOML (`[[contact]]`).

use std::path::Path;

use herald_proto::v1::Channel;
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use crate::{records::JsonRecords, validate};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// email, sms or voice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_channel: Option<String>,
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// True only together with `verification`: what lets sensitive content
    /// reach this person ([`Contact::verified`]).
    #[serde(default)]
    pub identity_verified: bool,
    /// Who verified the person's identity, how and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Someone outside the client relationship (an insurer, another
    /// agency): told of a client's matter only with that client's consent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub third_party: bool,
    /// The kind of third party, for consents given to a whole kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub third_party_category: Option<String>,
    /// Whom this person agreed their matter may be shared with, withdrawn
    /// consents included (the record of what was allowed when).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sharing: Vec<SharingConsent>,
    #[serde(default)]
    pub consent: Consent,
    /// Organisation or site, for broadcasts to everyone there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// Staff role such as team_lead, supervisor, management, dpo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Staff: the team the person works in. An escalation to a role looks
    /// for that role in the case's team first, then among staff with no
    /// team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

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

/// Channels the person agreed to be contacted on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    #[serde(default)]
    pub email: bool,
    #[serde(default)]
    pub sms: bool,
    #[serde(default)]
    pub voice: bool,
}

fn default_language() -> String {
    "en".into()
}

fn default_time_zone() -> String {
    "UTC".into()
}

impl Consent {
    pub fn allows(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
            Channel::Voice => self.voice,
            Channel::Unspecified => false,
        }
    }
}

impl Contact {
    /// The address this contact has for a channel, if any.
    pub fn address(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Email => self.email.as_deref(),
            Channel::Sms | Channel::Voice => self.phone.as_deref(),
            Channel::Unspecified => None,
        }
    }

    pub fn preferred(&self) -> Option<Channel> {
        self.preferred_channel.as_deref().and_then(Channel::parse)
    }

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

    /// Every problem with this contact, as (field, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !herald_proto::subjects::is_subject_token(&self.id) {
            out.push((
                "id".into(),
                "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)".into(),
            ));
        }
        if self.name.trim().is_empty() {
            out.push(("name".into(), "is empty".into()));
        }
        if let Some(Err(why)) = self.email.as_deref().map(validate::email) {
            out.push(("email".into(), why));
        }
        if let Some(Err(why)) = self.phone.as_deref().map(validate::e164) {
            out.push(("phone".into(), why));
        }
        if self.email.is_none() && self.phone.is_none() {
            out.push((
                "email".into(),
                "a contact needs an email address or a phone number".into(),
            ));
        }
        if let Some(c) = &self.preferred_channel {
            match Channel::parse(c) {
                None => out.push((
                    "preferred_channel".into(),
                    format!("{c:?} is not email, sms or voice"),
                )),
                Some(ch) if self.address(ch).is_none() => out.push((
                    "preferred_channel".into(),
                    format!("is {} but the contact has no address for it", ch.name()),
                )),
                Some(_) => {}
            }
        }
        if let Err(why) = validate::language(&self.language) {
            out.push(("language".into(), why));
        }
        if let Err(why) = validate::time_zone(&self.time_zone) {
            out.push(("time_zone".into(), why));
        }
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
        for (field, value) in [("role", &self.role), ("team", &self.team)] {
            if let Some(v) = value
                && !herald_proto::subjects::is_subject_token(v)
            {
                out.push((
                    field.into(),
                    "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)".into(),
                ));
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{id}: {field} {reason}")]
    Invalid {
        id: String,
        field: String,
        reason: String,
    },
    #[error("{0}")]
    File(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("record: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads contacts from a YAML or TOML file and checks every one, reporting
/// all problems found.
pub fn parse_file(path: &Path) -> Result<Vec<Contact>, DirectoryError> {
    crate::listfile::read_checked(path, "contacts", "contact").map_err(DirectoryError::File)
}

impl crate::listfile::Record for Contact {
    fn id(&self) -> &str {
        &self.id
    }

    fn problems(&self) -> Vec<(String, String)> {
        Contact::problems(self)
    }
}

/// The contact fields the directory indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOf {
    Organisation,
    Role,
}

impl MemberOf {
    pub fn of(self, c: &Contact) -> Option<&str> {
        match self {
            MemberOf::Organisation => c.organisation.as_deref(),
            MemberOf::Role => c.role.as_deref(),
        }
    }
}

/// The directory: written by intake (its one owner), read by intake, the
/// router, the broadcast and escalation services.
#[derive(Clone)]
pub struct Directory {
    records: JsonRecords<Contact>,
}

impl Directory {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Directory {
        Directory {
            records: JsonRecords::new(
                redis,
                herald_proto::keyspace::DIRECTORY.prefix(prefix),
                "contact",
                "contacts",
            ),
        }
    }

    /// The connection the directory uses, for stores kept beside it.
    pub fn redis(&self) -> ConnectionManager {
        self.records.redis()
    }

    fn member_key(&self, by: MemberOf, value: &str) -> String {
        let kind = match by {
            MemberOf::Organisation => "org",
            MemberOf::Role => "role",
        };
        self.records.key_of(&format!("{kind}:{value}"))
    }

    /// Adds or replaces a contact, and moves it between the organisation
    /// and role indexes if those changed. The verification is carried over
    /// or cleared as [`Contact::carry_verification`] says; true if it was
    /// cleared.
    pub async fn put(&self, contact: &Contact) -> Result<bool, DirectoryError> {
        let mut cleared = false;
        let (old, new) = self
            .records
            .swap(&contact.id, |old| {
                let mut c = contact.clone();
                cleared = false;
                if let Some(old) = &old {
                    cleared = c.carry_verification(old);
                    c.carry_consents(old);
                }
                Some(c)
            })
            .await?;
        // The indexes follow the record; a reader checks the record, so an
        // index a racing import left behind misleads nobody.
        let mut pipe = redis::pipe();
        let mut moves = 0;
        for by in [MemberOf::Organisation, MemberOf::Role] {
            let before = old.as_ref().and_then(|c| by.of(c));
            let now = new.as_ref().and_then(|c| by.of(c));
            if let Some(b) = before.filter(|b| Some(*b) != now) {
                pipe.srem(self.member_key(by, b), &contact.id).ignore();
                moves += 1;
            }
            if let Some(n) = now {
                pipe.sadd(self.member_key(by, n), &contact.id).ignore();
                moves += 1;
            }
        }
        if moves > 0 {
            let mut r = self.redis();
            pipe.exec_async(&mut r).await?;
        }
        Ok(cleared)
    }

    /// Adds or replaces these contacts; the ids of those whose verification
    /// was cleared.
    pub async fn put_all(&self, contacts: &[Contact]) -> Result<Vec<String>, DirectoryError> {
        let mut cleared = Vec::new();
        for c in contacts {
            if self.put(c).await? {
                cleared.push(c.id.clone());
            }
        }
        Ok(cleared)
    }

    /// Records contact `id`'s consent to share with `with`; the contact as
    /// it now stands (`None` if there is no such contact) and whether the
    /// consent is new.
    pub async fn give_consent(
        &self,
        id: &str,
        with: &str,
        source: &str,
    ) -> Result<Option<(Contact, bool)>, DirectoryError> {
        let mut new = false;
        let contact = self
            .records
            .update(id, |c| {
                new = c.give_consent(with, source, chrono::Utc::now());
                new
            })
            .await?;
        Ok(contact.map(|c| (c, new)))
    }

    /// Withdraws contact `id`'s consent to share with `with`; as
    /// [`Directory::give_consent`], with whether there was one to withdraw.
    pub async fn withdraw_consent(
        &self,
        id: &str,
        with: &str,
    ) -> Result<Option<(Contact, bool)>, DirectoryError> {
        let mut found = false;
        let contact = self
            .records
            .update(id, |c| {
                found = c.withdraw_consent(with, chrono::Utc::now());
                found
            })
            .await?;
        Ok(contact.map(|c| (c, found)))
    }

    /// Records that `verification.by` verified contact `id`'s identity;
    /// the contact as it now stands, or `None` if there is no such contact.
    pub async fn verify(
        &self,
        id: &str,
        verification: Verification,
    ) -> Result<Option<Contact>, DirectoryError> {
        self.records
            .update(id, |c| {
                c.verify(verification.clone());
                true
            })
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Contact>, DirectoryError> {
        self.records.get(id).await
    }

    /// Looks contacts up in one round trip; `None` where an id is unknown.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Contact>>, DirectoryError> {
        self.records.get_many(ids).await
    }

    pub async fn remove(&self, id: &str) -> Result<bool, DirectoryError> {
        let old = self.get(id).await?;
        self.records
            .remove_with(id, |pipe| {
                for by in [MemberOf::Organisation, MemberOf::Role] {
                    if let Some(v) = old.as_ref().and_then(|c| by.of(c)) {
                        pipe.srem(self.member_key(by, v), id).ignore();
                    }
                }
            })
            .await
    }

    /// Every contact of an organisation or with a role, as stored now.
    pub async fn in_group(
        &self,
        by: MemberOf,
        value: &str,
    ) -> Result<Vec<Contact>, DirectoryError> {
        let ids =
            crate::records::sorted_members(&self.redis(), &self.member_key(by, value)).await?;
        Ok(self
            .get_many(&ids)
            .await?
            .into_iter()
            .flatten()
            .filter(|c| by.of(c) == Some(value))
            .collect())
    }

    /// How many contacts the organisation or role index names (an upper
    /// bound: the index may still name one that moved).
    pub async fn count_in(&self, by: MemberOf, value: &str) -> Result<u64, DirectoryError> {
        let mut r = self.redis();
        Ok(r.scard(self.member_key(by, value)).await?)
    }

    /// Every contact id, sorted.
    pub async fn ids(&self) -> Result<Vec<String>, DirectoryError> {
        self.records.ids().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_several_bad_contacts_reports_each() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "contacts:\n- id: a\n  name: A\n  email: not-an-email\n- id: b\n  name: B\n  phone: '0770'\n  time_zone: Nowhere/City\n",
        )
        .unwrap();
        let err = parse_file(&f).unwrap_err().to_string();
        assert!(err.contains("contacts[0] (a): email"), "{err}");
        assert!(err.contains("contacts[1] (b): phone"), "{err}");
        assert!(err.contains("contacts[1] (b): time_zone"), "{err}");
    }

    #[test]
    fn toml_and_yaml_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("c.toml");
        std::fs::write(
            &t,
            "[[contact]]\nid = \"alice\"\nname = \"Alice\"\nemail = \"alice@example.org\"\nconsent = { email = true }\n",
        )
        .unwrap();
        let c = parse_file(&t).unwrap();
        assert_eq!(c[0].language, "en");
        assert!(c[0].consent.email);
        let y = dir.path().join("c.yaml");
        std::fs::write(
            &y,
            "- id: bob\n  name: Bob\n  phone: '+447700900123'\n  preferred_channel: sms\n",
        )
        .unwrap();
        assert_eq!(parse_file(&y).unwrap()[0].preferred(), Some(Channel::Sms));
    }

    #[test]
    fn a_contact_printed_as_yaml_reads_back_the_same() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/contacts.example.yaml");
        let contacts = parse_file(&example).unwrap();
        assert!(!contacts.is_empty());
        for c in contacts {
            let printed = serde_saphyr::to_string(&c).unwrap();
            let back: Contact =
                serde_saphyr::from_str(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
            assert_eq!(back, c, "{printed}");
        }
    }

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
