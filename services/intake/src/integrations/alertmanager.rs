//! Alertmanager's webhook, payload version 4, as its webhook notifier sends
//! it (`notify/webhook` in prometheus/alertmanager: the template data plus
//! `version`, `groupKey` and `truncatedAlerts`). An alert group is one
//! alert to Herald, known by its `groupKey`: `firing` triggers it,
//! `resolved` (every alert of the group resolved) resolves it.

use std::collections::BTreeMap;

use herald_config::Integration;
use herald_proto::v1::{ErrorCode, Rejected};
use serde::Deserialize;

use super::{Alert, clip};
use crate::validate::reject;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    group_key: String,
    status: String,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    alerts: Vec<GroupAlert>,
}

#[derive(Debug, Deserialize)]
struct GroupAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// What a webhook asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asked {
    Fire,
    Resolve,
}

/// Reads a webhook body for `g`: what it asks and the alert it is about.
/// A refusal names the field (by the payload's own names).
pub(crate) fn read(body: &[u8], g: &Integration) -> Result<(Asked, Alert), Rejected> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let hook: Webhook = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        reject(
            ErrorCode::Undecodable,
            if path == "." { String::new() } else { path },
            format!("not an Alertmanager webhook payload: {}", e.into_inner()),
        )
    })?;
    if hook.version != "4" {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "version",
            format!(
                "is {:?}; Herald reads version \"4\", which Alertmanager has sent since 0.9",
                hook.version
            ),
        ));
    }
    if hook.group_key.trim().is_empty() {
        return Err(reject(ErrorCode::InvalidArgument, "groupKey", "is empty"));
    }
    let asked = match hook.status.as_str() {
        "firing" => Asked::Fire,
        "resolved" => Asked::Resolve,
        other => {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "status",
                format!("is {other:?}; expected \"firing\" or \"resolved\""),
            ));
        }
    };
    for (i, a) in hook.alerts.iter().enumerate() {
        if a.status != "firing" && a.status != "resolved" {
            return Err(reject(
                ErrorCode::InvalidArgument,
                format!("alerts[{i}].status"),
                format!("is {:?}; expected \"firing\" or \"resolved\"", a.status),
            ));
        }
    }
    let firing: Vec<&GroupAlert> = hook
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .collect();
    let name = hook
        .common_labels
        .get("alertname")
        .or_else(|| hook.group_labels.get("alertname"))
        .or_else(|| hook.alerts.iter().find_map(|a| a.labels.get("alertname")))
        .cloned()
        .unwrap_or_else(|| "alert group".into());
    // The group's severity is that of its most urgent firing alert.
    let severity = firing
        .iter()
        .filter_map(|a| a.labels.get(&g.severity_label))
        .max_by_key(|s| rank(g.priority_of(Some(s))))
        .or_else(|| hook.common_labels.get(&g.severity_label))
        .cloned();
    let described = |m: &BTreeMap<String, String>| {
        m.get("summary")
            .or_else(|| m.get("description"))
            .filter(|s| !s.trim().is_empty())
            .cloned()
    };
    let mut summary = described(&hook.common_annotations)
        .or_else(|| firing.iter().find_map(|a| described(&a.annotations)))
        .or_else(|| hook.alerts.iter().find_map(|a| described(&a.annotations)))
        .unwrap_or_else(|| name.clone());
    if firing.len() > 1 {
        summary = format!("{summary} ({} alerts firing)", firing.len());
    }
    let actor = if hook.receiver.is_empty() {
        "alertmanager".to_string()
    } else {
        format!("alertmanager receiver {}", hook.receiver)
    };
    Ok((
        asked,
        Alert {
            key: hook.group_key,
            reference: clip(&name, 64),
            summary,
            severity,
            actor,
        },
    ))
}

fn rank(priority: &str) -> u8 {
    match priority {
        "critical" => 4,
        "high" => 3,
        "normal" => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use herald_config::IntegrationKind;

    use super::*;

    fn integration() -> Integration {
        toml::from_str::<Integration>(
            r#"
            name = "prod"
            kind = "alertmanager"
            key_sha256 = []
            responsible_staff = "oncall"
            client = "owner"
            "#,
        )
        .unwrap()
    }

    /// A payload as Alertmanager 0.25 sends it for a group of two alerts
    /// (the shape of `notify/webhook.Message`, `template.Data`).
    const FIRING: &str = r#"{
      "receiver": "herald",
      "status": "firing",
      "alerts": [
        {"status": "firing",
         "labels": {"alertname": "HighErrorRate", "instance": "web-1", "severity": "warning"},
         "annotations": {"summary": "5xx above 5% on web-1"},
         "startsAt": "2026-12-02T08:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus/graph?g0.expr=...", "fingerprint": "a1b2c3d4e5f60718"},
        {"status": "firing",
         "labels": {"alertname": "HighErrorRate", "instance": "web-2", "severity": "critical"},
         "annotations": {"summary": "5xx above 20% on web-2"},
         "startsAt": "2026-12-02T08:00:10.000Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus/graph?g0.expr=...", "fingerprint": "0718a1b2c3d4e5f6"}
      ],
      "groupLabels": {"alertname": "HighErrorRate"},
      "commonLabels": {"alertname": "HighErrorRate"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"HighErrorRate\"}",
      "truncatedAlerts": 0
    }"#;

    #[test]
    fn a_firing_group_is_one_alert_as_urgent_as_its_worst() {
        let g = integration();
        assert_eq!(g.kind, IntegrationKind::Alertmanager);
        let (asked, alert) = read(FIRING.as_bytes(), &g).unwrap();
        assert_eq!(asked, Asked::Fire);
        assert_eq!(alert.key, "{}:{alertname=\"HighErrorRate\"}");
        assert_eq!(alert.reference, "HighErrorRate");
        assert_eq!(alert.severity.as_deref(), Some("critical"));
        assert_eq!(alert.summary, "5xx above 5% on web-1 (2 alerts firing)");
        assert_eq!(alert.actor, "alertmanager receiver herald");
    }

    #[test]
    fn a_resolved_group_resolves() {
        let resolved = FIRING.replace("\"status\": \"firing\"", "\"status\": \"resolved\"");
        let (asked, alert) = read(resolved.as_bytes(), &integration()).unwrap();
        assert_eq!(asked, Asked::Resolve);
        assert_eq!(alert.key, "{}:{alertname=\"HighErrorRate\"}");
    }

    #[test]
    fn a_bad_payload_is_refused_naming_the_field() {
        let g = integration();
        let with = |field: &str, value: serde_json::Value| {
            let mut v: serde_json::Value = serde_json::from_str(FIRING).unwrap();
            v[field] = value;
            v.to_string()
        };
        let mut bad_alert: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        bad_alert["alerts"][1]["status"] = "pending".into();
        for (body, field, says) in [
            (with("version", "3".into()), "version", "\"3\""),
            (with("status", "burning".into()), "status", "burning"),
            (with("groupKey", "".into()), "groupKey", "empty"),
            (with("alerts", 7.into()), "alerts", "invalid type"),
            (bad_alert.to_string(), "alerts[1].status", "pending"),
            ("{}".to_string(), "", "missing field"),
        ] {
            let r = read(body.as_bytes(), &g).unwrap_err();
            assert_eq!(r.field, field, "{r:?}");
            assert!(r.message.contains(says), "{says}: {r:?}");
        }
    }
}
