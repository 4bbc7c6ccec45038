//! PagerDuty's Events API v2 (`POST /v2/enqueue`), as its published
//! OpenAPI document (PagerDuty/api-schema, `reference/events-v2`) and
//! developer guide describe it, so that a client written for PagerDuty
//! works pointed at Herald: `routing_key` names the integration and is its
//! credential; `event_action` is `trigger`, `acknowledge` or `resolve`;
//! `dedup_key` ties them together (made up and returned when a trigger has
//! none). Success is 202 `{"status":"success","message":"Event
//! processed","dedup_key":…}`; a bad event is 400 `{"status":"invalid
//! event","message":"Event object is invalid","errors":[…]}` listing every
//! problem, and a body that is not JSON 400 `{"status":"Unrecognized
//! object",…}`, neither to be retried.
//!
//! `payload.summary`, `source` and `severity` are required on a trigger,
//! as PagerDuty requires them; `component`, `group`, `class`,
//! `custom_details`, `links` and `images` are checked for shape and kept
//! out of messages, which only ever say what an approved template says.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Alert, clip};

/// The severities PagerDuty knows.
const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
/// PagerDuty's own limits.
const MAX_DEDUP_KEY: usize = 255;
const MAX_SUMMARY: usize = 1024;

/// What an event asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Trigger(Alert),
    Acknowledge { key: String, actor: String },
    Resolve(Alert),
}

/// An event as read: its routing key and what it asks.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) routing_key: String,
    pub(crate) action: Action,
    /// The dedup key Herald made up for a trigger that had none.
    pub(crate) made_key: bool,
}

/// Why an event is refused: PagerDuty's two 400 shapes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    NotJson,
    Fields(Vec<String>),
}

pub(crate) fn read(body: &[u8]) -> Result<Event, Invalid> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Invalid::NotJson)?;
    let Some(obj) = v.as_object() else {
        return Err(Invalid::NotJson);
    };
    let mut errors = Vec::new();
    let text = |name: &str, errors: &mut Vec<String>| -> Option<String> {
        match obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(format!("'{name}' must be a string"));
                None
            }
        }
    };
    let routing_key = text("routing_key", &mut errors);
    if routing_key.is_none() && !errors.iter().any(|e| e.contains("'routing_key'")) {
        errors.push("'routing_key' is missing or blank".into());
    }
    let action = text("event_action", &mut errors);
    let dedup = text("dedup_key", &mut errors);
    if let Some(k) = &dedup
        && k.chars().count() > MAX_DEDUP_KEY
    {
        errors.push(format!(
            "'dedup_key' is longer than {MAX_DEDUP_KEY} characters"
        ));
    }
    let client = text("client", &mut errors);
    check_list(obj.get("links"), "links", "href", &mut errors);
    check_list(obj.get("images"), "images", "src", &mut errors);
    let action = match action.as_deref() {
        None => {
            if !errors.iter().any(|e| e.contains("'event_action'")) {
                errors.push("'event_action' is missing or blank".into());
            }
            None
        }
        Some(a @ ("trigger" | "acknowledge" | "resolve")) => Some(a.to_string()),
        Some(other) => {
            errors.push(format!(
                "'event_action' is {other:?}; it must be trigger, acknowledge or resolve"
            ));
            None
        }
    };
    if matches!(action.as_deref(), Some("acknowledge" | "resolve")) && dedup.is_none() {
        errors.push("'dedup_key' is required to acknowledge or resolve".into());
    }
    let payload = if action.as_deref() == Some("trigger") {
        read_payload(obj.get("payload"), &mut errors)
    } else {
        None
    };
    let (Some(routing_key), Some(action), true) = (routing_key, action, errors.is_empty()) else {
        return Err(Invalid::Fields(errors));
    };
    let made_key = dedup.is_none();
    let key = dedup.unwrap_or_else(made_up_key);
    let actor = match &client {
        Some(c) => format!("{} (PagerDuty event)", clip(c, 150)),
        None => "PagerDuty event".into(),
    };
    let action = match action.as_str() {
        "trigger" => {
            let p = payload.unwrap_or_default();
            Action::Trigger(Alert {
                key,
                reference: p.reference,
                summary: p.summary,
                severity: Some(p.severity),
                actor,
            })
        }
        "acknowledge" => Action::Acknowledge { key, actor },
        _ => Action::Resolve(Alert {
            reference: String::new(),
            summary: String::new(),
            severity: None,
            key,
            actor,
        }),
    };
    Ok(Event {
        routing_key,
        action,
        made_key,
    })
}

#[derive(Debug, Default)]
struct Payload {
    summary: String,
    severity: String,
    reference: String,
}

fn read_payload(v: Option<&Value>, errors: &mut Vec<String>) -> Option<Payload> {
    let Some(Value::Object(p)) = v else {
        errors.push("'payload' is missing or is not an object".into());
        return None;
    };
    let mut field = |name: &str, required: bool| -> Option<String> {
        match p.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                if required {
                    errors.push(format!("'payload.{name}' is missing or blank"));
                }
                None
            }
            Some(_) => {
                errors.push(format!("'payload.{name}' must be a string"));
                None
            }
        }
    };
    let summary = field("summary", true);
    let source = field("source", true);
    let severity = field("severity", true);
    let component = field("component", false);
    for optional in ["group", "class", "timestamp"] {
        let _ = field(optional, false);
    }
    if let Some(details) = p.get("custom_details")
        && !(details.is_object() || details.is_string() || details.is_null())
    {
        errors.push("'payload.custom_details' must be an object".into());
    }
    if let Some(s) = &summary
        && s.chars().count() > MAX_SUMMARY
    {
        errors.push(format!(
            "'payload.summary' is longer than {MAX_SUMMARY} characters"
        ));
    }
    if let Some(s) = &severity
        && !SEVERITIES.contains(&s.as_str())
    {
        errors.push(format!(
            "'payload.severity' is {s:?}; it must be one of {}",
            SEVERITIES.join(", ")
        ));
    }
    let (summary, source, severity) = (summary?, source?, severity?);
    let reference = match component {
        Some(c) => format!("{source}/{c}"),
        None => source,
    };
    Some(Payload {
        summary,
        severity,
        reference: clip(&reference, 64),
    })
}

/// `links` and `images`: lists of objects each with `needed` a string.
fn check_list(v: Option<&Value>, name: &str, needed: &str, errors: &mut Vec<String>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.get(needed).is_some_and(Value::is_string) {
                    errors.push(format!("'{name}[{i}].{needed}' is missing or not a string"));
                }
            }
        }
        Some(_) => errors.push(format!("'{name}' must be a list")),
    }
}

/// A dedup key for a trigger that came without one: 32 hex digits, as
/// PagerDuty's own.
fn made_up_key() -> String {
    let seed = herald_proto::ids::record_id();
    hex::encode(&Sha256::digest(seed.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example event of PagerDuty's Events API v2 OpenAPI document.
    const TRIGGER: &str = r#"{
      "payload": {
        "summary": "DISK at 99% on machine prod-datapipe03.example.com",
        "timestamp": "2015-07-17T08:42:58.315+0000",
        "severity": "critical",
        "source": "prod-datapipe03.example.com",
        "component": "mysql",
        "group": "prod-datapipe",
        "class": "disk",
        "custom_details": {"free space": "1%", "ping time": "1500ms", "load avg": 0.75}
      },
      "routing_key": "e93facc04764012d7bfb002500d5d1a6",
      "dedup_key": "srv01/mysql",
      "event_action": "trigger",
      "client": "Sample Monitoring Service",
      "client_url": "https://monitoring.service.com",
      "links": [{"href": "http://pagerduty.example.com", "text": "An example link."}],
      "images": [{"src": "https://chart.googleapis.com/chart?chs=600x400", "href": "https://google.com", "alt": "An example link with an image"}]
    }"#;

    #[test]
    fn the_documented_example_is_a_trigger() {
        let e = read(TRIGGER.as_bytes()).unwrap();
        assert_eq!(e.routing_key, "e93facc04764012d7bfb002500d5d1a6");
        assert!(!e.made_key);
        let Action::Trigger(a) = e.action else {
            panic!("{:?}", e.action)
        };
        assert_eq!(a.key, "srv01/mysql");
        assert_eq!(a.severity.as_deref(), Some("critical"));
        assert_eq!(a.reference, "prod-datapipe03.example.com/mysql");
        assert_eq!(
            a.summary,
            "DISK at 99% on machine prod-datapipe03.example.com"
        );
        assert_eq!(a.actor, "Sample Monitoring Service (PagerDuty event)");
    }

    #[test]
    fn a_trigger_without_a_dedup_key_gets_one() {
        let mut v: Value = serde_json::from_str(TRIGGER).unwrap();
        v.as_object_mut().unwrap().remove("dedup_key");
        let e = read(v.to_string().as_bytes()).unwrap();
        assert!(e.made_key);
        let Action::Trigger(a) = e.action else {
            panic!()
        };
        assert_eq!(a.key.len(), 32);
        assert!(a.key.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn acknowledge_and_resolve_need_only_the_key() {
        for action in ["acknowledge", "resolve"] {
            let body = format!(
                r#"{{"routing_key":"k","event_action":"{action}","dedup_key":"srv01/mysql"}}"#
            );
            let e = read(body.as_bytes()).unwrap();
            match e.action {
                Action::Acknowledge { key, .. } => assert_eq!(key, "srv01/mysql"),
                Action::Resolve(a) => assert_eq!(a.key, "srv01/mysql"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn every_problem_of_a_bad_event_is_listed() {
        assert_eq!(read(b"not json").unwrap_err(), Invalid::NotJson);
        assert_eq!(read(b"[1, 2]").unwrap_err(), Invalid::NotJson);
        let Invalid::Fields(errors) = read(
            br#"{"event_action":"trigger","payload":{"summary":"","severity":"fatal","source":"db"},"links":[{"text":"x"}]}"#,
        )
        .unwrap_err() else {
            panic!()
        };
        assert_eq!(
            errors,
            [
                "'routing_key' is missing or blank",
                "'links[0].href' is missing or not a string",
                "'payload.summary' is missing or blank",
                "'payload.severity' is \"fatal\"; it must be one of critical, error, warning, info",
            ]
        );
        let Invalid::Fields(errors) =
            read(br#"{"routing_key":"k","event_action":"resolve"}"#).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            errors,
            ["'dedup_key' is required to acknowledge or resolve"]
        );
        let Invalid::Fields(errors) =
            read(br#"{"routing_key":"k","event_action":"snooze","dedup_key":"d"}"#).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            errors,
            ["'event_action' is \"snooze\"; it must be trigger, acknowledge or resolve"]
        );
        let Invalid::Fields(errors) =
            read(br#"{"routing_key":"k","event_action":"trigger"}"#).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(errors, ["'payload' is missing or is not an object"]);
    }
}
