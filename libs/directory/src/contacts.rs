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

pub use crate::safeguards::{
    MAX_METHOD, MAX_SHARING, SharingConsent, Verification, check_sharing_with, one_line,
};
use crate::{records::JsonRecords, validate};

/// The role of the people meetings take interpreters from.
pub const INTERPRETER: &str = "interpreter";

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
    /// An interpreter (`role: interpreter`): the languages they interpret
    /// between, any two of them (SOP 004, translation and interpretation
    /// services). A meeting whose attendees speak another language than
    /// its organiser may ask for one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interprets: Vec<String>,
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

/// A language tag's primary subtag, lower-cased: `fr-CA` is `fr`.
pub fn primary_language(tag: &str) -> String {
    tag.split('-').next().unwrap_or(tag).to_ascii_lowercase()
}

impl Contact {
    /// Whether this interpreter interprets between `a` and `b` (language
    /// tags, compared by their primary subtag).
    pub fn interprets_between(&self, a: &str, b: &str) -> bool {
        let speaks = |l: &str| {
            let l = primary_language(l);
            self.interprets.iter().any(|x| primary_language(x) == l)
        };
        self.role.as_deref() == Some(INTERPRETER) && speaks(a) && speaks(b)
    }

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
        out.extend(self.safeguard_problems());
        if !self.interprets.is_empty() {
            if self.role.as_deref() != Some(INTERPRETER) {
                out.push((
                    "interprets".into(),
                    format!("is for interpreters: give the contact `role: {INTERPRETER}` too"),
                ));
            }
            if self.interprets.len() < 2 {
                out.push((
                    "interprets".into(),
                    "must name at least two languages, the ones interpreted between".into(),
                ));
            }
            for (i, l) in self.interprets.iter().enumerate() {
                if let Err(why) = validate::language(l) {
                    out.push((format!("interprets[{i}]"), why));
                }
            }
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
        self.records
            .update(id, |c| c.give_consent(with, source, chrono::Utc::now()))
            .await
    }

    /// Withdraws contact `id`'s consent to share with `with`; as
    /// [`Directory::give_consent`], with whether there was one to withdraw.
    pub async fn withdraw_consent(
        &self,
        id: &str,
        with: &str,
    ) -> Result<Option<(Contact, bool)>, DirectoryError> {
        self.records
            .update(id, |c| c.withdraw_consent(with, chrono::Utc::now()))
            .await
    }

    /// Forgets every consent of contact `id` to share with `with`, given or
    /// withdrawn, as if it had never been recorded: for erasing the third
    /// party it names (SOP 003 §6.5). Whether there was one.
    pub async fn forget_consents_with(&self, id: &str, with: &str) -> Result<bool, DirectoryError> {
        Ok(self
            .records
            .update(id, |c| {
                let before = c.sharing.len();
                c.sharing.retain(|s| s.with != with);
                c.sharing.len() != before
            })
            .await?
            .is_some_and(|(_, changed)| changed))
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
            .map(|found| found.map(|(contact, _)| contact))
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
    fn an_interpreter_names_the_languages_they_interpret_between() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "- { id: i1, name: I, email: i@example.org, role: interpreter, interprets: [fr, en-GB] }\n\
             - { id: i2, name: J, email: j@example.org, interprets: [fr, en] }\n\
             - { id: i3, name: K, email: k@example.org, role: interpreter, interprets: [fr] }\n\
             - { id: i4, name: L, email: l@example.org, role: interpreter, interprets: [fr, '??'] }\n",
        )
        .unwrap();
        let err = parse_file(&f).unwrap_err().to_string();
        assert!(!err.contains("(i1)"), "{err}");
        assert!(
            err.contains("(i2): interprets is for interpreters"),
            "{err}"
        );
        assert!(
            err.contains("(i3): interprets must name at least two"),
            "{err}"
        );
        assert!(err.contains("(i4): interprets[1]"), "{err}");
        let i1: Contact = serde_saphyr::from_str(
            "{ id: i1, name: I, role: interpreter, interprets: [fr, en-GB] }",
        )
        .unwrap();
        assert!(i1.interprets_between("en", "fr-CA"));
        assert!(!i1.interprets_between("en", "ar"));
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
}
