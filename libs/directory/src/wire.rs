//! Contacts and groups as the contract carries them (`herald.v1.Contact`,
//! `herald.v1.Group`), to and from the records the directory keeps.

use herald_proto::v1::{self, Channel};

use crate::{
    contacts::{Consent, Contact, SharingConsent, Verification},
    groups::Group,
};

impl From<&Contact> for v1::Contact {
    fn from(c: &Contact) -> v1::Contact {
        v1::Contact {
            id: c.id.clone(),
            name: c.name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            preferred_channel: c.preferred().unwrap_or(Channel::Unspecified) as i32,
            language: c.language.clone(),
            time_zone: c.time_zone.clone(),
            identity_verified: c.identity_verified,
            verification: c.verification.as_ref().map(v1::Verification::from),
            third_party: c.third_party,
            third_party_category: c.third_party_category.clone(),
            sharing: c.sharing.iter().map(v1::SharingConsent::from).collect(),
            consent: Some(v1::Consent {
                email: c.consent.email,
                sms: c.consent.sms,
                voice: c.consent.voice,
            }),
            organisation: c.organisation.clone(),
            role: c.role.clone(),
            team: c.team.clone(),
            interprets: c.interprets.clone(),
        }
    }
}

impl From<v1::Contact> for Contact {
    /// Empty language and time zone take the defaults a contact file
    /// gives them; the record still has to pass [`Contact::problems`].
    fn from(c: v1::Contact) -> Contact {
        let consent = c.consent.unwrap_or_default();
        let preferred = Channel::try_from(c.preferred_channel).unwrap_or(Channel::Unspecified);
        Contact {
            id: c.id,
            name: c.name,
            email: c.email,
            phone: c.phone,
            preferred_channel: (preferred != Channel::Unspecified)
                .then(|| preferred.name().to_string()),
            language: if c.language.is_empty() {
                "en".into()
            } else {
                c.language
            },
            time_zone: if c.time_zone.is_empty() {
                "UTC".into()
            } else {
                c.time_zone
            },
            identity_verified: c.identity_verified,
            verification: c.verification.map(Verification::from),
            third_party: c.third_party,
            third_party_category: c.third_party_category,
            sharing: c.sharing.into_iter().map(SharingConsent::from).collect(),
            consent: Consent {
                email: consent.email,
                sms: consent.sms,
                voice: consent.voice,
            },
            organisation: c.organisation,
            role: c.role,
            team: c.team,
            interprets: c.interprets,
        }
    }
}

impl From<&Verification> for v1::Verification {
    fn from(v: &Verification) -> v1::Verification {
        v1::Verification {
            by: v.by.clone(),
            method: v.method.clone(),
            at: Some(herald_proto::timestamp(v.at.into())),
        }
    }
}

impl From<v1::Verification> for Verification {
    /// A missing time is the epoch, which the record's check refuses.
    fn from(v: v1::Verification) -> Verification {
        Verification {
            by: v.by,
            method: v.method,
            at: herald_proto::system_time(v.at.as_ref()).into(),
        }
    }
}

impl From<&SharingConsent> for v1::SharingConsent {
    fn from(s: &SharingConsent) -> v1::SharingConsent {
        v1::SharingConsent {
            with: s.with.clone(),
            source: s.source.clone(),
            given_at: Some(herald_proto::timestamp(s.given_at.into())),
            withdrawn_at: s.withdrawn_at.map(|w| herald_proto::timestamp(w.into())),
        }
    }
}

impl From<v1::SharingConsent> for SharingConsent {
    /// A missing `given_at` is the epoch, which the record's check refuses.
    fn from(s: v1::SharingConsent) -> SharingConsent {
        SharingConsent {
            with: s.with,
            source: s.source,
            given_at: herald_proto::system_time(s.given_at.as_ref()).into(),
            withdrawn_at: s
                .withdrawn_at
                .map(|w| herald_proto::system_time(Some(&w)).into()),
        }
    }
}

impl From<&Group> for v1::Group {
    fn from(g: &Group) -> v1::Group {
        v1::Group {
            id: g.id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            members: g.members.clone(),
        }
    }
}

impl From<v1::Group> for Group {
    fn from(g: v1::Group) -> Group {
        Group {
            id: g.id,
            name: g.name,
            description: g.description,
            members: g.members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_contacts_and_groups_survive_the_wire() {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let contacts = crate::contacts::parse_file(&config.join("contacts.example.yaml")).unwrap();
        assert!(!contacts.is_empty());
        for c in &contacts {
            assert_eq!(&Contact::from(v1::Contact::from(c)), c);
        }
        let groups = crate::groups::parse_file(&config.join("groups.example.yaml")).unwrap();
        for g in &groups {
            assert_eq!(&Group::from(v1::Group::from(g)), g);
        }
    }
}
