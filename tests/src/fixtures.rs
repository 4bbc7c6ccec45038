//! Contacts, recipients and requests the tests build again and again.

use herald_directory::contacts::{Consent, Contact, Verification};
use herald_proto::v1::{
    Channel, CommunicationType, InlineRecipient, NotificationRequest, Priority, Recipient,
    recipient::Target,
};

/// A directory contact who consents to every channel, in the `acme`
/// organisation, named after the id (`alice` → `Alice`).
pub fn contact(id: &str, email: Option<&str>, phone: Option<&str>, preferred: &str) -> Contact {
    Contact {
        id: id.into(),
        name: format!("{}{}", id[..1].to_uppercase(), &id[1..]),
        email: email.map(str::to_string),
        phone: phone.map(str::to_string),
        preferred_channel: Some(preferred.into()),
        language: "en".into(),
        time_zone: "Europe/London".into(),
        identity_verified: true,
        verification: Some(Verification {
            by: "sup-ana".into(),
            method: "photo ID seen at the front desk".into(),
            at: "2026-01-12T09:30:00Z".parse().expect("a time"),
        }),
        third_party: false,
        third_party_category: None,
        sharing: Vec::new(),
        consent: Consent {
            email: true,
            sms: true,
            voice: true,
        },
        organisation: Some("acme".into()),
        role: None,
        team: None,
        interprets: Vec::new(),
    }
}

pub fn to_contact(id: &str) -> Recipient {
    Recipient {
        target: Some(Target::ContactId(id.into())),
    }
}

/// An initial-inquiry acknowledgement to one contact.
pub fn inquiry(key: &str, contact_id: &str, reference: &str) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::InitialInquiry as i32,
        recipients: vec![to_contact(contact_id)],
        template_id: "inquiry_received".into(),
        params: [("reference".to_string(), reference.to_string())].into(),
        requester: "crm".into(),
        responsible_staff: "frontline-7".into(),
        ..Default::default()
    }
}

/// A phone number unique to `i` (`+44770` and seven digits; see
/// [`index_of_phone`]).
pub fn phone(i: usize) -> String {
    format!("+44770{i:07}")
}

/// The `i` a number from [`phone`] was made from.
pub fn index_of_phone(phone: &str) -> usize {
    phone
        .trim_start_matches("+44770")
        .parse()
        .unwrap_or_else(|_| panic!("{phone} is not a number from fixtures::phone"))
}

/// An email address unique to `i`.
pub fn email(i: usize) -> String {
    format!("person{i}@example.org")
}

/// A one-off (inline) recipient who can be reached on the channels given,
/// preferring the first: tests that send thousands need no directory.
pub fn person(i: usize, channels: &[Channel]) -> Recipient {
    let has = |c: Channel| channels.contains(&c);
    Recipient {
        target: Some(Target::Inline(InlineRecipient {
            name: format!("Person {i}"),
            email: if has(Channel::Email) {
                email(i)
            } else {
                String::new()
            },
            phone: if has(Channel::Sms) || has(Channel::Voice) {
                phone(i)
            } else {
                String::new()
            },
            preferred_channel: channels.first().copied().unwrap_or_default() as i32,
            consent_email: has(Channel::Email),
            consent_sms: has(Channel::Sms),
            consent_voice: has(Channel::Voice),
            ..Default::default()
        })),
    }
}

/// An inquiry acknowledgement to one recipient, with reference `REF-<key>`.
pub fn inquiry_to(key: &str, to: Recipient) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::InitialInquiry as i32,
        priority: Priority::Normal as i32,
        recipients: vec![to],
        template_id: "inquiry_received".into(),
        params: [("reference".to_string(), format!("REF-{key}"))].into(),
        requester: "tests".into(),
        ..Default::default()
    }
}
