//! A CAP alert as the coordinator command it stands for: an `Alert` starts
//! a broadcast, an `Update` gives the running one its new message, a
//! `Cancel` stops it. Each `info` block is the message in its language:
//! the headline (or the event) is the subject, the description and the
//! instruction are the text, and the headline with the instruction is
//! what the call says. The audience is Herald's to know, not the alert's:
//! the caller names it.

use herald_proto::v1::{
    Audience, BroadcastMessage, CancelBroadcast, Severity, StartBroadcast, UpdateBroadcast,
};

use crate::{Alert, Info, Invalid};

/// The command an alert stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Start(StartBroadcast),
    Update(UpdateBroadcast),
    Cancel(CancelBroadcast),
}

impl Command {
    /// The action, as intake's desk and the trail name it.
    pub fn action(&self) -> &'static str {
        match self {
            Command::Start(_) => "start",
            Command::Update(_) => "update",
            Command::Cancel(_) => "cancel",
        }
    }
}

fn invalid(element: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        element: element.into(),
        message: message.into(),
    }
}

/// The command `alert` (read from `xml`) stands for, from the coordinator
/// whose `credential` is given, to `audience` (for a start).
pub fn command(
    alert: &Alert,
    xml: &str,
    credential: &str,
    audience: Audience,
    sms: bool,
) -> Result<Command, Invalid> {
    let exercise = match alert.status.as_str() {
        "Actual" => false,
        "Exercise" => true,
        other => {
            return Err(invalid(
                "alert/status",
                format!("is {other:?}: only Actual and Exercise alerts are broadcast to people"),
            ));
        }
    };
    let broadcast_id = alert.broadcast_id();
    match alert.msg_type.as_str() {
        "Alert" => {
            let messages = messages(alert, exercise)?;
            let empty = audience.contact_ids.is_empty()
                && audience.group_ids.is_empty()
                && audience.organisations.is_empty()
                && audience.roles.is_empty();
            if empty {
                return Err(invalid(
                    "",
                    "a CAP alert does not say who in the organisation to reach: name the audience (groups, contacts, organisations or roles)",
                ));
            }
            Ok(Command::Start(StartBroadcast {
                broadcast_id,
                credential: credential.to_string(),
                severity: severity(alert) as i32,
                audience: Some(audience),
                default_language: messages[0].language.clone(),
                messages,
                sms,
                cap: xml.to_string(),
                ..Default::default()
            }))
        }
        "Update" => {
            needs_reference(alert)?;
            let messages = messages(alert, exercise)?;
            Ok(Command::Update(UpdateBroadcast {
                broadcast_id,
                credential: credential.to_string(),
                default_language: messages[0].language.clone(),
                messages,
                cap: xml.to_string(),
            }))
        }
        "Cancel" => {
            needs_reference(alert)?;
            let reason = if alert.note.is_empty() {
                format!("CAP Cancel {} from {}", alert.identifier, alert.sender)
            } else {
                clip(&alert.note, 200)
            };
            Ok(Command::Cancel(CancelBroadcast {
                broadcast_id,
                credential: credential.to_string(),
                reason,
            }))
        }
        other => Err(invalid(
            "alert/msgType",
            format!("is {other:?}: Alert, Update and Cancel are what Herald broadcasts"),
        )),
    }
}

fn needs_reference(alert: &Alert) -> Result<(), Invalid> {
    if alert.references.is_empty() {
        return Err(invalid(
            "alert/references",
            format!(
                "is required for {}: it names the alert being {}",
                alert.msg_type,
                if alert.msg_type == "Cancel" {
                    "cancelled"
                } else {
                    "updated"
                }
            ),
        ));
    }
    Ok(())
}

/// The most severe of the alert's `info` blocks; `Unknown` counts as
/// Moderate, which every broadcast setting treats as an ordinary
/// emergency.
fn severity(alert: &Alert) -> Severity {
    alert
        .info
        .iter()
        .map(|i| match i.severity.as_str() {
            "Extreme" => Severity::Extreme,
            "Severe" => Severity::Severe,
            "Minor" => Severity::Minor,
            _ => Severity::Moderate,
        })
        .max_by_key(|s| *s as i32)
        .unwrap_or(Severity::Moderate)
}

fn messages(alert: &Alert, exercise: bool) -> Result<Vec<BroadcastMessage>, Invalid> {
    if alert.info.is_empty() {
        return Err(invalid(
            "alert/info",
            format!(
                "at least one is required to broadcast a CAP {}",
                alert.msg_type
            ),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for info in &alert.info {
        // One message per language; CAP may split one language over
        // several blocks (by category), the first of which is taken.
        if seen.insert(info.language.to_ascii_lowercase()) {
            out.push(message(info, exercise));
        }
    }
    Ok(out)
}

fn message(info: &Info, exercise: bool) -> BroadcastMessage {
    let headline = if info.headline.is_empty() {
        info.event.clone()
    } else {
        info.headline.clone()
    };
    let mut body = Vec::new();
    for part in [&info.description, &info.instruction] {
        if !part.is_empty() {
            body.push(part.clone());
        }
    }
    if !info.areas.is_empty() {
        body.push(format!("Area: {}", info.areas.join("; ")));
    }
    if !info.web.is_empty() {
        body.push(info.web.clone());
    }
    if body.is_empty() {
        body.push(headline.clone());
    }
    let mut speak = headline.clone();
    if !info.instruction.is_empty() {
        speak = format!("{speak}. {}", info.instruction);
    }
    let (subject, speak) = if exercise {
        (
            format!("EXERCISE: {headline}"),
            format!("This is an exercise. {speak}"),
        )
    } else {
        (headline, speak)
    };
    BroadcastMessage {
        language: info.language.clone(),
        subject: clip(&subject, 200),
        body: body.join("\n\n"),
        speak: clip(&speak, 1000),
        sms: String::new(),
    }
}

/// At most `max` characters of `text`, on one line.
fn clip(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A broadcast as a CAP 1.2 alert: the alert it was started from as it
/// stands now (its latest update's message), or, for a broadcast started
/// otherwise, one made from its state. The note says where it stands.
pub fn export(status: &herald_proto::v1::BroadcastStatus, kept: Option<&str>) -> String {
    use herald_proto::v1::BroadcastState;
    let state = BroadcastState::try_from(status.state).unwrap_or_default();
    let mut note = format!(
        "Herald broadcast {}: {}; {} of {} recipients confirmed",
        status.broadcast_id,
        match state {
            BroadcastState::Starting => "starting",
            BroadcastState::Active => "active",
            BroadcastState::Finished => "finished",
            BroadcastState::Cancelled => "cancelled",
            BroadcastState::Unspecified => "unknown",
        },
        status.confirmed,
        status.recipients
    );
    if !status.cancelled.is_empty() {
        note.push_str(&format!(" ({})", status.cancelled));
    }
    let mut alert = match kept.and_then(|xml| crate::parse(xml.as_bytes()).ok()) {
        Some(a) => a,
        None => made_up(status),
    };
    alert.note = note;
    crate::write(&alert)
}

fn made_up(status: &herald_proto::v1::BroadcastStatus) -> Alert {
    let severity = match Severity::try_from(status.severity).unwrap_or_default() {
        Severity::Extreme => "Extreme",
        Severity::Severe => "Severe",
        Severity::Minor => "Minor",
        Severity::Moderate => "Moderate",
        Severity::Unspecified => "Unknown",
    };
    let sent = status
        .started_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .unwrap_or_else(chrono::Utc::now)
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    Alert {
        identifier: status.broadcast_id.clone(),
        sender: "herald".into(),
        sent,
        status: "Actual".into(),
        msg_type: "Alert".into(),
        // It reached the people a coordinator named, not the public.
        scope: "Private".into(),
        info: vec![Info {
            language: "en".into(),
            categories: vec!["Safety".into()],
            event: "Emergency broadcast".into(),
            urgency: "Immediate".into(),
            severity: severity.into(),
            certainty: "Observed".into(),
            sender_name: status.started_by.clone(),
            headline: format!("Emergency broadcast {}", status.broadcast_id),
            ..Info::default()
        }],
        ..Alert::default()
    }
}
