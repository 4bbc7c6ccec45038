//! Checking a notification request field by field. Every refusal names the
//! field and says why, so the publishing system can fix it.
//!
//! The other intake subjects are read by pure functions beside their
//! handlers, named here too, so that everything a payload meets before
//! Herald looks anything up can be exercised without a running intake:
//! [`decode_case_event`] and [`check_case_event`] (`herald.v1.intake.case`),
//! [`decode_broadcast`] then [`check_broadcast_start`],
//! [`check_broadcast_update`] or [`check_broadcast_cancel`]
//! (`herald.v1.emergency.broadcast.*`), [`check_cancel`]
//! (`herald.v1.intake.cancel`) and [`read_directory`]
//! (`herald.v1.intake.directory`).

use std::collections::BTreeMap;

use herald_content::{
    routing::RoutingRules,
    templates::{TemplateError, TemplateStore},
};
use herald_directory::{contacts::Contact, validate};
use herald_proto::v1::{
    Channel, CommunicationType, Confidentiality, ErrorCode, NotificationRequest, Priority,
    Rejected, recipient::Target,
};

pub use crate::breach_release::check as check_breach_release;
pub use crate::broadcasts::check::{
    check_cancel as check_broadcast_cancel, check_start as check_broadcast_start,
    check_update as check_broadcast_update, decode as decode_broadcast,
};
pub use crate::cancel::check as check_cancel;
pub use crate::cases::check::{check as check_case_event, decode as decode_case_event};
pub use crate::directory::{Order as DirectoryOrder, read as read_directory};

const MAX_KEY: usize = 255;
const MAX_TEXT: usize = 200;
const MAX_PARAMS: usize = 64;
const MAX_PARAM_VALUE: usize = 4096;
/// The most contacts one breach notification may name as affected.
const MAX_AFFECTED: usize = 10_000;

pub fn reject(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Rejected {
    Rejected {
        code: code as i32,
        field: field.into(),
        message: message.into(),
    }
}

/// Limits that come from configuration.
pub struct Limits {
    pub max_recipients: usize,
}

/// Ids of the directory contacts a request names, for one lookup: its
/// recipients', then the client it is about, if any.
pub fn contact_ids(req: &NotificationRequest) -> Vec<String> {
    req.recipients
        .iter()
        .filter_map(|r| match &r.target {
            Some(Target::ContactId(id)) => Some(id.clone()),
            _ => None,
        })
        .chain((!req.about_contact_id.is_empty()).then(|| req.about_contact_id.clone()))
        .collect()
}

/// The recipients of `req` that are directory contacts, each with its
/// index in `recipients`, from the lookup of [`contact_ids`] (`contacts`,
/// in order).
pub fn directory_recipients(
    req: &NotificationRequest,
    contacts: &[Option<Contact>],
) -> Vec<(usize, Contact)> {
    let mut looked_up = contacts.iter();
    req.recipients
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.target {
            Some(Target::ContactId(_)) => looked_up.next().cloned().flatten().map(|c| (i, c)),
            _ => None,
        })
        .collect()
}

/// Checks `req` and fills in defaults (priority, confidentiality).
/// `contacts` holds the directory lookup of [`contact_ids`], in order.
pub fn check(
    mut req: NotificationRequest,
    contacts: &[Option<Contact>],
    templates: &TemplateStore,
    rules: &RoutingRules,
    limits: &Limits,
) -> Result<NotificationRequest, Rejected> {
    use ErrorCode as E;
    let key = req.idempotency_key.trim();
    if key.is_empty() {
        return Err(reject(
            E::InvalidArgument,
            "idempotency_key",
            "is required: choose a key that stays the same when you retry this request",
        ));
    }
    if key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(reject(
            E::InvalidArgument,
            "idempotency_key",
            format!("must be at most {MAX_KEY} printable characters"),
        ));
    }

    let ctype = match CommunicationType::try_from(req.communication_type) {
        Ok(CommunicationType::Unspecified) => {
            return Err(reject(
                E::InvalidArgument,
                "communication_type",
                "is required (initial_inquiry, service_update, feedback_complaint, resolution, incident, ...)",
            ));
        }
        Ok(t) => t,
        Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "communication_type",
                format!(
                    "{} is not a known communication type",
                    req.communication_type
                ),
            ));
        }
    };
    let priority = match Priority::try_from(req.priority) {
        Ok(Priority::Unspecified) => Priority::Normal,
        Ok(p) => p,
        Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "priority",
                format!("{} is not a known priority", req.priority),
            ));
        }
    };
    let confidentiality = match Confidentiality::try_from(req.confidentiality) {
        Ok(Confidentiality::Unspecified) => rules.default_confidentiality(ctype),
        Ok(c) => c,
        Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "confidentiality",
                format!(
                    "{} is not a known confidentiality level",
                    req.confidentiality
                ),
            ));
        }
    };
    req.priority = priority as i32;
    req.confidentiality = confidentiality as i32;

    let mut overrides = Vec::new();
    for (i, c) in req.channel_override.iter().enumerate() {
        let field = format!("channel_override[{i}]");
        match Channel::try_from(*c) {
            Ok(Channel::Unspecified) | Err(_) => {
                return Err(reject(
                    E::InvalidArgument,
                    field,
                    "is not email, sms or voice",
                ));
            }
            Ok(ch) if !rules.is_allowed(ch) => {
                return Err(reject(
                    E::ChannelNotAllowed,
                    field,
                    format!("{} is not an approved channel here", ch.name()),
                ));
            }
            Ok(ch) => overrides.push(ch),
        }
    }

    if !req.case_id.is_empty() && !herald_proto::subjects::is_subject_token(&req.case_id) {
        return Err(reject(
            E::InvalidArgument,
            "case_id",
            "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
        ));
    }
    if req.cancel_keys.len() > herald_proto::cancel_keys::MAX_KEYS {
        return Err(reject(
            E::InvalidArgument,
            "cancel_keys",
            format!("has more than {} keys", herald_proto::cancel_keys::MAX_KEYS),
        ));
    }
    for (i, k) in req.cancel_keys.iter().enumerate() {
        if let Err(why) = herald_proto::cancel_keys::check_key(k) {
            return Err(reject(E::InvalidArgument, format!("cancel_keys[{i}]"), why));
        }
    }
    crate::attachments::check(&req)?;
    if !req.key_press_url.is_empty() {
        let url = &req.key_press_url;
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok
            || url.len() > 2048
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(reject(
                E::InvalidArgument,
                "key_press_url",
                "must be an http or https URL of at most 2048 characters, without spaces",
            ));
        }
    }
    for (field, value) in [
        ("requester", &req.requester),
        ("responsible_staff", &req.responsible_staff),
    ] {
        if value.chars().count() > MAX_TEXT {
            return Err(reject(
                E::InvalidArgument,
                field,
                format!("is longer than {MAX_TEXT} characters"),
            ));
        }
    }
    if !req.language.is_empty()
        && let Err(why) = validate::language(&req.language)
    {
        return Err(reject(E::InvalidArgument, "language", why));
    }

    if req.template_id.is_empty() {
        return Err(reject(E::InvalidArgument, "template_id", "is required"));
    }
    if req.params.len() > MAX_PARAMS {
        return Err(reject(
            E::InvalidArgument,
            "params",
            format!("has more than {MAX_PARAMS} entries"),
        ));
    }
    for (k, v) in &req.params {
        let ident = !k.is_empty()
            && k.len() <= 64
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !k.as_bytes()[0].is_ascii_digit();
        if !ident {
            return Err(reject(
                E::InvalidArgument,
                format!("params.{k}"),
                "parameter names are letters, digits and _, not starting with a digit",
            ));
        }
        if v.len() > MAX_PARAM_VALUE {
            return Err(reject(
                E::InvalidArgument,
                format!("params.{k}"),
                format!("is longer than {MAX_PARAM_VALUE} bytes"),
            ));
        }
    }
    let params: BTreeMap<String, String> = req.params.clone();
    if let Err(e) = templates.check(&req.template_id, req.template_version, &params) {
        return Err(match e {
            TemplateError::Unknown(_) => reject(E::UnknownTemplate, "template_id", e.to_string()),
            TemplateError::UnknownVersion { .. } | TemplateError::NotApproved { .. } => {
                reject(E::UnknownTemplate, "template_version", e.to_string())
            }
            TemplateError::NoApprovedVersion { .. } => {
                reject(E::UnknownTemplate, "template_id", e.to_string())
            }
            TemplateError::MissingParam { ref param, .. } => {
                reject(E::InvalidArgument, format!("params.{param}"), e.to_string())
            }
            _ => reject(E::InvalidArgument, "template_id", e.to_string()),
        });
    }

    if !req.affected_contact_ids.is_empty() && ctype != CommunicationType::DataBreach {
        return Err(reject(
            E::InvalidArgument,
            "affected_contact_ids",
            "only a data_breach names the contacts a breach affected",
        ));
    }
    if req.affected_contact_ids.len() > MAX_AFFECTED {
        return Err(reject(
            E::InvalidArgument,
            "affected_contact_ids",
            format!("at most {MAX_AFFECTED} contacts per breach notification"),
        ));
    }
    for (i, id) in req.affected_contact_ids.iter().enumerate() {
        if !herald_proto::subjects::is_subject_token(id) {
            return Err(reject(
                E::InvalidArgument,
                format!("affected_contact_ids[{i}]"),
                "must be a contact id: 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
            ));
        }
    }
    if req.recipients.is_empty() {
        return Err(reject(
            E::EmptyRecipients,
            "recipients",
            "at least one recipient is required",
        ));
    }
    if req.recipients.len() > limits.max_recipients {
        return Err(reject(
            E::InvalidArgument,
            "recipients",
            format!(
                "has {} recipients; at most {} per request",
                req.recipients.len(),
                limits.max_recipients
            ),
        ));
    }
    let mut looked_up = contacts.iter();
    let mut third_parties = Vec::new();
    for (i, r) in req.recipients.iter().enumerate() {
        let field = format!("recipients[{i}]");
        let decision = match &r.target {
            None => {
                return Err(reject(
                    E::InvalidArgument,
                    field,
                    "give either contact_id or inline",
                ));
            }
            Some(Target::ContactId(id)) => {
                let found = looked_up.next().cloned().flatten();
                let Some(contact) = found else {
                    return Err(reject(
                        E::UnknownContact,
                        format!("{field}.contact_id"),
                        format!("no contact with id {id:?} in the directory"),
                    ));
                };
                if contact.third_party {
                    third_parties.push((i, contact.clone()));
                }
                rules.decide(ctype, priority, confidentiality, &overrides, &contact)
            }
            Some(Target::Inline(inline)) => {
                let f = |s: &str| format!("{field}.inline.{s}");
                if inline.name.chars().count() > MAX_TEXT {
                    return Err(reject(
                        E::InvalidArgument,
                        f("name"),
                        format!("is longer than {MAX_TEXT} characters"),
                    ));
                }
                if inline.email.is_empty() && inline.phone.is_empty() {
                    return Err(reject(
                        E::InvalidArgument,
                        f("email"),
                        "an inline recipient needs an email or a phone number",
                    ));
                }
                if !inline.email.is_empty()
                    && let Err(why) = validate::email(&inline.email)
                {
                    return Err(reject(E::InvalidArgument, f("email"), why));
                }
                if !inline.phone.is_empty()
                    && let Err(why) = validate::e164(&inline.phone)
                {
                    return Err(reject(E::InvalidArgument, f("phone"), why));
                }
                if !inline.language.is_empty()
                    && let Err(why) = validate::language(&inline.language)
                {
                    return Err(reject(E::InvalidArgument, f("language"), why));
                }
                if Channel::try_from(inline.preferred_channel).is_err() {
                    return Err(reject(
                        E::InvalidArgument,
                        f("preferred_channel"),
                        "is not email, sms or voice",
                    ));
                }
                if inline.identity_verified {
                    return Err(reject(
                        E::InvalidArgument,
                        f("identity_verified"),
                        "an inline recipient's identity cannot be taken as verified: add the \
                         person to the directory and record who verified them, how and when \
                         (herald contacts verify), then address them by contact_id",
                    ));
                }
                rules.decide(ctype, priority, confidentiality, &overrides, inline)
            }
        };
        if decision.send.is_empty() {
            let wanted = if overrides.is_empty() {
                "any channel this notification may use".to_string()
            } else {
                overrides
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(reject(
                E::MissingConsent,
                field,
                format!("has no address and consent for {wanted}"),
            ));
        }
    }
    let about = looked_up.next().cloned().flatten();
    crate::sharing::check(&mut req, about.as_ref(), &third_parties)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::{InlineRecipient, Recipient};

    fn templates() -> TemplateStore {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        TemplateStore::load(&dir).expect("shipped templates load")
    }

    fn rules() -> RoutingRules {
        RoutingRules::load(None).unwrap()
    }

    fn inline(email: &str, phone: &str) -> Recipient {
        Recipient {
            target: Some(Target::Inline(InlineRecipient {
                name: "Ann".into(),
                email: email.into(),
                phone: phone.into(),
                consent_email: true,
                consent_sms: true,
                ..Default::default()
            })),
        }
    }

    fn good() -> NotificationRequest {
        NotificationRequest {
            idempotency_key: "k1".into(),
            communication_type: CommunicationType::InitialInquiry as i32,
            recipients: vec![inline("ann@example.org", "")],
            template_id: "inquiry_received".into(),
            params: [("reference".to_string(), "R-1".to_string())].into(),
            ..Default::default()
        }
    }

    fn run(req: NotificationRequest) -> Result<NotificationRequest, Rejected> {
        check(
            req,
            &[],
            &templates(),
            &rules(),
            &Limits { max_recipients: 10 },
        )
    }

    fn field_of(req: NotificationRequest) -> (ErrorCode, String) {
        let r = run(req).unwrap_err();
        (ErrorCode::try_from(r.code).unwrap(), r.field)
    }

    #[test]
    fn a_good_request_gets_its_defaults() {
        let r = run(good()).unwrap();
        assert_eq!(r.priority, Priority::Normal as i32);
        assert_eq!(r.confidentiality, Confidentiality::Standard as i32);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = good();
        r.recipients = vec![inline("ann@example.org", ""), inline("not-an-email", "")];
        assert_eq!(
            field_of(r),
            (
                ErrorCode::InvalidArgument,
                "recipients[1].inline.email".into()
            )
        );

        let mut r = good();
        r.recipients = vec![inline("", "07700 900123")];
        assert_eq!(
            field_of(r),
            (
                ErrorCode::InvalidArgument,
                "recipients[0].inline.phone".into()
            )
        );

        let mut r = good();
        r.template_id = "no_such_template".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::UnknownTemplate, "template_id".into())
        );

        let mut r = good();
        r.params.clear();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "params.reference".into())
        );

        let mut r = good();
        r.recipients.clear();
        assert_eq!(
            field_of(r),
            (ErrorCode::EmptyRecipients, "recipients".into())
        );

        let mut r = good();
        r.idempotency_key = " ".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "idempotency_key".into())
        );

        let mut r = good();
        r.communication_type = 0;
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "communication_type".into())
        );

        let mut r = good();
        r.case_id = "a.b".into();
        assert_eq!(field_of(r), (ErrorCode::InvalidArgument, "case_id".into()));

        for bad in ["ftp://h/k", "javascript:alert(1)", "https://h/k?a b"] {
            let mut r = good();
            r.key_press_url = bad.into();
            assert_eq!(
                field_of(r),
                (ErrorCode::InvalidArgument, "key_press_url".into()),
                "{bad}"
            );
        }
        let mut r = good();
        r.key_press_url = "https://h.example/v1/escalation/key?case=C-1".into();
        assert!(run(r).is_ok());
    }

    #[test]
    fn a_recipient_without_consent_is_refused() {
        let mut r = good();
        r.recipients = vec![Recipient {
            target: Some(Target::Inline(InlineRecipient {
                email: "ann@example.org".into(),
                consent_email: false,
                ..Default::default()
            })),
        }];
        assert_eq!(
            field_of(r),
            (ErrorCode::MissingConsent, "recipients[0]".into())
        );
    }

    #[test]
    fn an_unknown_contact_is_refused() {
        let mut r = good();
        r.recipients = vec![Recipient {
            target: Some(Target::ContactId("ghost".into())),
        }];
        let err = check(
            r,
            &[None],
            &templates(),
            &rules(),
            &Limits { max_recipients: 10 },
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownContact as i32);
        assert_eq!(err.field, "recipients[0].contact_id");
    }
}
