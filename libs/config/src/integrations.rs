//! `[[intake.integrations]]`: monitoring and incident tools that send
//! Herald what they already send elsewhere (an Alertmanager webhook, a
//! PagerDuty Events v2 event), each mapped to the case it opens: team,
//! responsible staff, the contact the case is for, who is told when it
//! fires, with which template, and at which priority for each severity.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// What an integration speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationKind {
    /// Alertmanager's webhook (payload version 4) at
    /// `POST /v1/integrations/alertmanager/<name>`, with the key as
    /// `Authorization: Bearer <key>` (`http_config.authorization`).
    Alertmanager,
    /// PagerDuty's Events API v2 at `POST /v2/enqueue`, the key being the
    /// event's `routing_key`.
    Pagerduty,
}

impl IntegrationKind {
    pub fn name(self) -> &'static str {
        match self {
            IntegrationKind::Alertmanager => "alertmanager",
            IntegrationKind::Pagerduty => "pagerduty",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// As a NATS identity's: the caller the trail records for its events.
    pub name: String,
    pub kind: IntegrationKind,
    /// SHA-256 (lower-case hex) of each key it may present; several while
    /// one is rotated.
    pub key_sha256: Vec<String>,
    /// The team handling its cases (calendar and escalation policy);
    /// empty: the organisation's default.
    #[serde(default)]
    pub team: String,
    /// Contact id of the staff member responsible, the first escalation
    /// level.
    pub responsible_staff: String,
    /// Contact id of the person the case is for, told who owns it at each
    /// escalation (e.g. the affected service's owner).
    pub client: String,
    /// Contact ids told when an alert fires (none: only escalation tells
    /// anyone).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The template of that message; it gets `reference` and `summary`.
    #[serde(default = "default_template")]
    pub template: String,
    /// The template of the message telling `recipients` it is resolved;
    /// unset, nothing is sent on resolution.
    #[serde(default)]
    pub resolved_template: Option<String>,
    /// The case's channel, for its SLA policy.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Alertmanager: the label whose value is the severity.
    #[serde(default = "default_severity_label")]
    pub severity_label: String,
    /// Severity → priority (low, normal, high, critical). Severities not
    /// listed take `default_priority`.
    #[serde(default = "default_priorities")]
    pub priorities: BTreeMap<String, String>,
    #[serde(default = "default_priority")]
    pub default_priority: String,
}

fn default_template() -> String {
    "incident_alert".into()
}

fn default_channel() -> String {
    "support_ticket".into()
}

fn default_severity_label() -> String {
    "severity".into()
}

fn default_priority() -> String {
    "normal".into()
}

/// PagerDuty's four severities, and Alertmanager's usual labels.
fn default_priorities() -> BTreeMap<String, String> {
    [
        ("critical", "critical"),
        ("error", "high"),
        ("high", "high"),
        ("warning", "normal"),
        ("info", "low"),
    ]
    .into_iter()
    .map(|(s, p)| (s.to_string(), p.to_string()))
    .collect()
}

const PRIORITIES: [&str; 4] = ["low", "normal", "high", "critical"];
const CHANNELS: [&str; 5] = ["email", "live_chat", "phone", "support_ticket", "portal"];

impl Integration {
    /// The priority an alert of `severity` gets (a name from
    /// `low`/`normal`/`high`/`critical`).
    pub fn priority_of(&self, severity: Option<&str>) -> &str {
        severity
            .and_then(|s| self.priorities.get(&s.to_ascii_lowercase()))
            .unwrap_or(&self.default_priority)
    }
}

pub(crate) fn validate(integrations: &[Integration], problems: &mut Vec<String>) {
    let mut names = HashMap::new();
    let mut hashes: HashMap<&str, String> = HashMap::new();
    for (i, g) in integrations.iter().enumerate() {
        let at = format!("intake.integrations[{i}]");
        if !herald_proto::access::is_identity_name(&g.name) {
            problems.push(format!(
                "`{at}.name` {:?} must be lowercase letters, digits and `-`, starting with a letter (at most 64)",
                g.name
            ));
        } else if let Some(first) = names.insert(g.name.as_str(), i) {
            problems.push(format!(
                "`{at}.name` {:?} is already `intake.integrations[{first}]`",
                g.name
            ));
        }
        if g.key_sha256.is_empty() {
            problems.push(format!(
                "`{at}.key_sha256` lists no key: add the SHA-256 of at least one"
            ));
        }
        for (j, hash) in g.key_sha256.iter().enumerate() {
            let key = format!("{at}.key_sha256[{j}]");
            if !crate::intake::is_sha256_hex(hash) {
                problems.push(format!(
                    "`{key}` must be the 64 lower-case hex digits of the key's SHA-256"
                ));
            } else if let Some(first) = hashes.insert(hash, key.clone()) {
                // A routing key names one integration: two would leave it
                // unclear which case an event is for.
                problems.push(format!("`{key}` is the same key as `{first}`"));
            }
        }
        for (field, value) in [
            ("responsible_staff", &g.responsible_staff),
            ("client", &g.client),
            ("template", &g.template),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("`{at}.{field}` must be set"));
            }
        }
        if !CHANNELS.contains(&g.channel.as_str()) {
            problems.push(format!(
                "`{at}.channel` {:?} must be one of {}",
                g.channel,
                CHANNELS.join(", ")
            ));
        }
        for (severity, priority) in &g.priorities {
            if !PRIORITIES.contains(&priority.as_str()) {
                problems.push(format!(
                    "`{at}.priorities.{severity}` {priority:?} must be one of {}",
                    PRIORITIES.join(", ")
                ));
            }
        }
        if !PRIORITIES.contains(&g.default_priority.as_str()) {
            problems.push(format!(
                "`{at}.default_priority` {:?} must be one of {}",
                g.default_priority,
                PRIORITIES.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration() -> Integration {
        Integration {
            name: "prod-alerts".into(),
            kind: IntegrationKind::Alertmanager,
            key_sha256: vec!["a".repeat(64)],
            team: "ops".into(),
            responsible_staff: "oncall".into(),
            client: "ops-desk".into(),
            recipients: vec!["oncall".into()],
            template: default_template(),
            resolved_template: None,
            channel: default_channel(),
            severity_label: default_severity_label(),
            priorities: default_priorities(),
            default_priority: default_priority(),
        }
    }

    #[test]
    fn a_severity_maps_to_its_priority_or_the_default() {
        let g = integration();
        assert_eq!(g.priority_of(Some("critical")), "critical");
        assert_eq!(g.priority_of(Some("Warning")), "normal");
        assert_eq!(g.priority_of(Some("page-me")), "normal");
        assert_eq!(g.priority_of(None), "normal");
    }

    #[test]
    fn each_bad_setting_is_named() {
        let mut bad = integration();
        bad.name = "Prod Alerts".into();
        bad.key_sha256 = vec!["nothex".into()];
        bad.client = " ".into();
        bad.channel = "fax".into();
        bad.priorities.insert("critical".into(), "asap".into());
        bad.default_priority = "meh".into();
        let mut twin = integration();
        twin.key_sha256 = vec!["a".repeat(64)];
        let mut problems = Vec::new();
        validate(&[integration(), bad, twin], &mut problems);
        let text = problems.join("\n");
        for needle in [
            "`intake.integrations[1].name`",
            "`intake.integrations[1].key_sha256[0]`",
            "`intake.integrations[1].client` must be set",
            "`intake.integrations[1].channel` \"fax\"",
            "`intake.integrations[1].priorities.critical` \"asap\"",
            "`intake.integrations[1].default_priority` \"meh\"",
            "`intake.integrations[2].name` \"prod-alerts\" is already `intake.integrations[0]`",
            "`intake.integrations[2].key_sha256[0]` is the same key as `intake.integrations[0].key_sha256[0]`",
        ] {
            assert!(text.contains(needle), "{needle}\n{text}");
        }
        let mut none = Vec::new();
        validate(&[integration()], &mut none);
        assert!(none.is_empty(), "{none:?}");
    }
}
