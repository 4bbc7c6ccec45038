//! The shared test kit: real servers on free loopback ports, provider sinks
//! that record what arrived on the wire, and a whole Herald in-process.

pub mod benchkit;
pub mod cases;
pub mod http;
pub mod otlp;
pub mod process;
pub mod scrape;
pub mod servers;
pub mod smtp;
pub mod system;

pub use system::TestSystem;

/// Contacts and requests the tests build again and again.
pub mod fixtures {
    use herald_directory::contacts::{Consent, Contact};
    use herald_proto::v1::{CommunicationType, NotificationRequest, Recipient, recipient::Target};

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
            consent: Consent {
                email: true,
                sms: true,
                voice: true,
            },
            organisation: Some("acme".into()),
            role: None,
            team: None,
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
}
