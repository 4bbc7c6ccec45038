//! A coordinator's start, update and cancel decoded and checked field by
//! field, before anything is looked up: pure, so every refusal (and the
//! field it names) is tested here without a directory or a bus.

use std::{collections::BTreeSet, time::Duration};

use herald_config::{BroadcastConfig, MAX_CYCLES};
use herald_content::templates::TemplateStore;
use herald_directory::validate;
use herald_proto::v1::{
    BroadcastMessage, CancelBroadcast, Cycles, ErrorCode, Rejected, Severity, StartBroadcast,
    UpdateBroadcast, broadcast_command::Command,
};
use herald_proto::{Message, broadcasts, subjects};

use crate::validate::reject;

const MAX_REASON: usize = 200;
const MAX_LANGUAGES: usize = 20;
const MAX_AUDIENCE_ENTRIES: usize = 1000;
const MAX_SUBJECT: usize = 200;
const MAX_BODY: usize = 8000;
const MAX_SPEAK: usize = 1000;
const MAX_SMS: usize = 1600;
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reads a command as it arrives on its subject: a start, an update, or
/// (on the cancel subject, the only other one served) a cancel. A payload
/// that does not decode is refused as a whole, naming no field.
pub fn decode(subject: &str, payload: &[u8]) -> Result<Command, Rejected> {
    let undecodable = |what: &str, e: prost::DecodeError| {
        reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.{what}: {e}"),
        )
    };
    match subject {
        subjects::BROADCAST_START => StartBroadcast::decode(payload)
            .map(Command::Start)
            .map_err(|e| undecodable("StartBroadcast", e)),
        subjects::BROADCAST_UPDATE => UpdateBroadcast::decode(payload)
            .map(Command::Update)
            .map_err(|e| undecodable("UpdateBroadcast", e)),
        _ => CancelBroadcast::decode(payload)
            .map(Command::Cancel)
            .map_err(|e| undecodable("CancelBroadcast", e)),
    }
}

/// Checks a start request field by field and fills in its defaults
/// (default language, cycle settings).
pub fn check_start(
    mut req: StartBroadcast,
    cfg: &BroadcastConfig,
    templates: &TemplateStore,
) -> Result<StartBroadcast, Rejected> {
    use ErrorCode as E;
    broadcast_id_ok(&req.broadcast_id)?;
    match Severity::try_from(req.severity) {
        Ok(Severity::Unspecified) | Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "severity",
                "is required: minor, moderate, severe or extreme",
            ));
        }
        Ok(_) => {}
    }
    if !req.case_id.is_empty() && !herald_proto::subjects::is_subject_token(&req.case_id) {
        return Err(reject(
            E::InvalidArgument,
            "case_id",
            "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
        ));
    }
    let a = req.audience.clone().unwrap_or_default();
    if a.contact_ids.is_empty()
        && a.group_ids.is_empty()
        && a.organisations.is_empty()
        && a.roles.is_empty()
    {
        return Err(reject(
            E::EmptyRecipients,
            "audience",
            "name at least one contact, group, organisation or role",
        ));
    }
    for (field, values) in [
        ("contact_ids", &a.contact_ids),
        ("group_ids", &a.group_ids),
        ("organisations", &a.organisations),
        ("roles", &a.roles),
    ] {
        if values.len() > MAX_AUDIENCE_ENTRIES {
            return Err(reject(
                E::InvalidArgument,
                format!("audience.{field}"),
                format!("has more than {MAX_AUDIENCE_ENTRIES} entries; use a group"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            if !herald_proto::subjects::is_subject_token(v) {
                return Err(reject(
                    E::InvalidArgument,
                    format!("audience.{field}[{i}]"),
                    "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
                ));
            }
            if !seen.insert(v) {
                return Err(reject(
                    E::InvalidArgument,
                    format!("audience.{field}[{i}]"),
                    format!("{v} is named twice"),
                ));
            }
        }
    }
    match (req.messages.is_empty(), req.template_id.is_empty()) {
        (true, true) => {
            return Err(reject(
                E::InvalidArgument,
                "messages",
                "give the message in at least one language (or a template_id)",
            ));
        }
        (false, false) => {
            return Err(reject(
                E::InvalidArgument,
                "template_id",
                "give either messages or a template, not both",
            ));
        }
        (false, true) => {
            req.default_language =
                check_messages(&req.messages, &req.default_language, "messages")?;
        }
        (true, false) => {
            let params = req.params.clone();
            if let Err(e) = templates.check(&req.template_id, 0, &params) {
                let field = match &e {
                    herald_content::templates::TemplateError::MissingParam { param, .. } => {
                        format!("params.{param}")
                    }
                    _ => "template_id".into(),
                };
                return Err(reject(E::UnknownTemplate, field, e.to_string()));
            }
        }
    }
    req.cycles = Some(check_cycles(req.cycles.unwrap_or_default(), cfg)?);
    Ok(req)
}

/// Checks an update's messages (filling in its default language) and the
/// broadcast it names; whether that broadcast exists is asked afterwards.
pub fn check_update(mut req: UpdateBroadcast) -> Result<UpdateBroadcast, Rejected> {
    req.default_language = check_messages(&req.messages, &req.default_language, "messages")?;
    broadcast_id_ok(&req.broadcast_id)?;
    Ok(req)
}

/// Checks a cancel's reason and the broadcast it names; whether that
/// broadcast exists is asked afterwards.
pub fn check_cancel(req: CancelBroadcast) -> Result<CancelBroadcast, Rejected> {
    if req.reason.chars().count() > MAX_REASON || req.reason.chars().any(char::is_control) {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "reason",
            format!("must be at most {MAX_REASON} printable characters"),
        ));
    }
    broadcast_id_ok(&req.broadcast_id)?;
    Ok(req)
}

/// A CAP alert sent along with a start or update must read, and be of the
/// broadcast it comes with: it is what the broadcast later exports as.
pub fn check_cap(cap: &str, broadcast_id: &str) -> Result<(), Rejected> {
    if cap.is_empty() {
        return Ok(());
    }
    let alert = herald_cap::parse(cap.as_bytes())
        .map_err(|e| reject(ErrorCode::InvalidArgument, "cap", e.to_string()))?;
    if alert.broadcast_id() != broadcast_id {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "cap",
            format!(
                "is the alert of broadcast {}, not of {broadcast_id}",
                alert.broadcast_id()
            ),
        ));
    }
    Ok(())
}

fn broadcast_id_ok(id: &str) -> Result<(), Rejected> {
    broadcasts::check_id(id).map_err(|why| reject(ErrorCode::InvalidArgument, "broadcast_id", why))
}

/// Checks the messages; returns the default language (the given one, or the
/// first message's).
fn check_messages(
    messages: &[BroadcastMessage],
    default_language: &str,
    field: &str,
) -> Result<String, Rejected> {
    use ErrorCode as E;
    if messages.is_empty() {
        return Err(reject(
            E::InvalidArgument,
            field,
            "give the message in at least one language",
        ));
    }
    if messages.len() > MAX_LANGUAGES {
        return Err(reject(
            E::InvalidArgument,
            field,
            format!("has more than {MAX_LANGUAGES} languages"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, m) in messages.iter().enumerate() {
        let f = |name: &str| format!("{field}[{i}].{name}");
        validate::language(&m.language)
            .map_err(|why| reject(E::InvalidArgument, f("language"), why))?;
        if !seen.insert(m.language.to_ascii_lowercase()) {
            return Err(reject(
                E::InvalidArgument,
                f("language"),
                format!("{} is given twice", m.language),
            ));
        }
        for (name, text, max, required) in [
            ("subject", &m.subject, MAX_SUBJECT, true),
            ("body", &m.body, MAX_BODY, true),
            ("speak", &m.speak, MAX_SPEAK, true),
            ("sms", &m.sms, MAX_SMS, false),
        ] {
            if required && text.trim().is_empty() {
                return Err(reject(E::InvalidArgument, f(name), "is required"));
            }
            if text.chars().count() > max {
                return Err(reject(
                    E::InvalidArgument,
                    f(name),
                    format!("is longer than {max} characters"),
                ));
            }
        }
        if m.subject.chars().any(char::is_control) {
            return Err(reject(E::InvalidArgument, f("subject"), "must be one line"));
        }
    }
    if default_language.is_empty() {
        return Ok(messages[0].language.clone());
    }
    if !messages
        .iter()
        .any(|m| m.language.eq_ignore_ascii_case(default_language))
    {
        return Err(reject(
            E::InvalidArgument,
            "default_language",
            format!("{default_language:?} is not one of the messages' languages"),
        ));
    }
    Ok(default_language.to_string())
}

/// Fills zero cycle settings from the configuration and checks the rest.
fn check_cycles(c: Cycles, cfg: &BroadcastConfig) -> Result<Cycles, Rejected> {
    use ErrorCode as E;
    let c = Cycles {
        interval_seconds: if c.interval_seconds == 0 {
            cfg.interval.as_secs().max(1) as u32
        } else {
            c.interval_seconds
        },
        cycles: if c.cycles == 0 { cfg.cycles } else { c.cycles },
        duration_seconds: c.duration_seconds,
    };
    if c.cycles > MAX_CYCLES {
        return Err(reject(
            E::InvalidArgument,
            "cycles.cycles",
            format!("must be at most {MAX_CYCLES}"),
        ));
    }
    let needed = c.interval_seconds as u64 * (c.cycles as u64 - 1);
    let duration = if c.duration_seconds == 0 {
        (cfg.duration.as_secs()).max(needed + c.interval_seconds as u64)
    } else {
        c.duration_seconds as u64
    };
    if duration < needed {
        return Err(reject(
            E::InvalidArgument,
            "cycles.duration_seconds",
            format!(
                "is {duration}s, shorter than the {needed}s the {} call cycles {}s apart need",
                c.cycles, c.interval_seconds
            ),
        ));
    }
    if duration > MAX_DURATION.as_secs() {
        return Err(reject(
            E::InvalidArgument,
            "cycles.duration_seconds",
            "must be at most 7 days",
        ));
    }
    Ok(Cycles {
        duration_seconds: duration as u32,
        ..c
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::Audience;

    fn templates() -> TemplateStore {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        TemplateStore::load(&dir).expect("shipped templates load")
    }

    fn message(lang: &str) -> BroadcastMessage {
        BroadcastMessage {
            language: lang.into(),
            subject: "Evacuate building B".into(),
            body: "Leave building B by the nearest exit now.".into(),
            speak: "Leave building B now.".into(),
            sms: String::new(),
        }
    }

    fn good() -> StartBroadcast {
        StartBroadcast {
            broadcast_id: "fire-b".into(),
            severity: Severity::Extreme as i32,
            audience: Some(Audience {
                group_ids: vec!["wardens".into()],
                ..Default::default()
            }),
            messages: vec![message("en"), message("fr")],
            ..Default::default()
        }
    }

    fn field_of(req: StartBroadcast) -> (ErrorCode, String) {
        let r = check_start(req, &BroadcastConfig::default(), &templates()).unwrap_err();
        (ErrorCode::try_from(r.code).unwrap(), r.field)
    }

    #[test]
    fn a_good_start_gets_its_defaults() {
        let r = check_start(good(), &BroadcastConfig::default(), &templates()).unwrap();
        assert_eq!(r.default_language, "en");
        let c = r.cycles.unwrap();
        assert_eq!(
            (c.interval_seconds, c.cycles, c.duration_seconds),
            (300, 3, 3600)
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = good();
        r.broadcast_id = "a b".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "broadcast_id".into())
        );

        let mut r = good();
        r.severity = 0;
        assert_eq!(field_of(r), (ErrorCode::InvalidArgument, "severity".into()));

        let mut r = good();
        r.audience = None;
        assert_eq!(field_of(r), (ErrorCode::EmptyRecipients, "audience".into()));

        let mut r = good();
        r.audience
            .as_mut()
            .unwrap()
            .group_ids
            .push("wardens".into());
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "audience.group_ids[1]".into())
        );

        let mut r = good();
        r.messages[1].speak = " ".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "messages[1].speak".into())
        );

        let mut r = good();
        r.messages[1].language = "EN".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "messages[1].language".into())
        );

        let mut r = good();
        r.default_language = "de".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "default_language".into())
        );

        let mut r = good();
        r.messages.clear();
        assert_eq!(field_of(r), (ErrorCode::InvalidArgument, "messages".into()));

        let mut r = good();
        r.cycles = Some(Cycles {
            interval_seconds: 60,
            cycles: 5,
            duration_seconds: 120,
        });
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "cycles.duration_seconds".into())
        );

        let mut r = good();
        r.cycles = Some(Cycles {
            cycles: 99,
            ..Default::default()
        });
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "cycles.cycles".into())
        );
    }

    #[test]
    fn a_template_broadcast_needs_its_parameters() {
        let mut r = good();
        r.messages.clear();
        r.template_id = broadcasts::BREACH_TEMPLATE.into();
        assert_eq!(
            field_of(r.clone()),
            (ErrorCode::UnknownTemplate, "params.reference".into())
        );
        r.params.insert("reference".into(), "CASE-1".into());
        assert!(check_start(r, &BroadcastConfig::default(), &templates()).is_ok());
    }

    #[test]
    fn short_cycles_stretch_the_default_duration_to_fit() {
        let cfg = BroadcastConfig::default();
        let c = check_cycles(
            Cycles {
                interval_seconds: 1800,
                cycles: 4,
                duration_seconds: 0,
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(c.duration_seconds, 1800 * 4);
        let c = check_cycles(
            Cycles {
                interval_seconds: 2,
                cycles: 3,
                duration_seconds: 0,
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(c.duration_seconds, 3600);
    }
}
