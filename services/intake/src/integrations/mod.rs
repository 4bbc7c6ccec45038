//! Alerts from monitoring and incident tools, as cases. Each integration
//! (`[[intake.integrations]]`) names the team, the responsible staff member
//! and the contact its cases are for, and who is told when an alert fires.
//! An alert is known by its key within the integration (Alertmanager's
//! `groupKey`, PagerDuty's `dedup_key`):
//!
//! - the first trigger opens a case for it and tells the recipients; a
//!   critical one escalates at once, as the escalation policy says;
//! - triggers while that case is open change nothing (the tools repeat
//!   themselves) and send nothing again;
//! - an acknowledgement acknowledges the case (its escalation stops);
//! - a resolution resolves it, tells the recipients if the integration has
//!   a `resolved_template`, and forgets the key, so that the next trigger
//!   opens a new case, as a new incident.
//!
//! Which case an alert has is kept in intake's keyspace. Every step is
//! safe to repeat: the case is named before it is opened, its events carry
//! fixed ids and the messages fixed idempotency keys, so a tool's retry or
//! a crash between steps completes the work and never doubles it.

pub(crate) mod alertmanager;
pub(crate) mod pagerduty;

use std::{sync::Arc, time::Duration};

use herald_config::{IntakeConfig, Integration, IntegrationKind};
use herald_content::templates::TemplateStore;
use herald_proto::v1::{
    CaseChannel, CaseDetails, CaseEvent, CaseEventKind, CommunicationType, ErrorCode, Lane,
    NotificationRequest, Priority, Recipient, Rejected, case_reply, intake_reply, recipient,
};
use redis::{AsyncCommands, aio::ConnectionManager};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::{Intake, cases::Status, validate::reject};

/// How long an alert's case is remembered without a trigger: longer than
/// any tool's repeat interval (Alertmanager's default is 4 h).
const REMEMBERED: Duration = Duration::from_secs(30 * 24 * 3600);

/// The configured integrations and where their alerts' cases are kept.
#[derive(Clone)]
pub(crate) struct Integrations {
    all: Arc<[Integration]>,
    redis: ConnectionManager,
    prefix: String,
}

/// One alert as a tool reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alert {
    /// Its key within the integration.
    pub(crate) key: String,
    /// A short reference people know it by (an alert name, a host).
    pub(crate) reference: String,
    pub(crate) summary: String,
    pub(crate) severity: Option<String>,
    /// Who reported it, for the trail.
    pub(crate) actor: String,
}

/// What an alert event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Opened(String),
    AlreadyOpen(String),
    Acknowledged(String),
    Resolved(String),
    /// No case has that key (never triggered, or resolved already).
    NoCase,
}

impl Outcome {
    pub(crate) fn case_id(&self) -> Option<&str> {
        match self {
            Outcome::Opened(c)
            | Outcome::AlreadyOpen(c)
            | Outcome::Acknowledged(c)
            | Outcome::Resolved(c) => Some(c),
            Outcome::NoCase => None,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outcome::Opened(_) => "opened",
            Outcome::AlreadyOpen(_) => "already_open",
            Outcome::Acknowledged(_) => "acknowledged",
            Outcome::Resolved(_) => "resolved",
            Outcome::NoCase => "no_case",
        }
    }
}

/// Replaces the key's case only if it still is `old`: of two triggers
/// that both found the old case resolved, one names the new case.
const REPLACE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0";

/// Forgets the key (and what the alert was about) only if it still names
/// `case`.
const FORGET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0";

impl Integrations {
    pub(crate) fn new(cfg: &IntakeConfig, redis: ConnectionManager, prefix: &str) -> Integrations {
        Integrations {
            all: cfg.integrations.clone().into(),
            redis,
            prefix: format!("{}incident:", herald_proto::keyspace::INTAKE.prefix(prefix)),
        }
    }

    /// Every template an integration names must exist: a missing one is
    /// found when intake starts, not when the first alert fires.
    pub(crate) fn check_templates(&self, templates: &TemplateStore) -> anyhow::Result<()> {
        for (i, g) in self.all.iter().enumerate() {
            let named = std::iter::once(("template", &g.template))
                .chain(g.resolved_template.iter().map(|t| ("resolved_template", t)));
            for (field, t) in named {
                if templates.resolve(t, 0).is_err() {
                    anyhow::bail!(
                        "`intake.integrations[{i}].{field}` names {t:?}, which is not among the templates"
                    );
                }
            }
        }
        Ok(())
    }

    /// The integration of `kind` whose key `presented` is, if any; which
    /// one, when `name` is given, must be that one.
    pub(crate) fn holding(
        &self,
        kind: IntegrationKind,
        name: Option<&str>,
        presented: &str,
    ) -> Option<&Integration> {
        let candidates = self
            .all
            .iter()
            .filter(|g| g.kind == kind && name.is_none_or(|n| n == g.name));
        let hashes =
            candidates.flat_map(|g| g.key_sha256.iter().map(|h| (g.name.as_str(), h.as_str())));
        let holder = herald_directory::credentials::holder_of(hashes, presented)?;
        self.all.iter().find(|g| g.name == holder && g.kind == kind)
    }

    fn key(&self, g: &Integration, alert_key: &str) -> String {
        // Hashed: a tool's keys may be long and hold anything.
        let digest = Sha256::digest(alert_key.as_bytes());
        format!("{}{}:{}", self.prefix, g.name, hex::encode(&digest[..16]))
    }

    /// Remembers what the alert is about (its reference and summary), for
    /// a resolution that does not say (PagerDuty's carries only the key).
    async fn note_about(&self, g: &Integration, alert: &Alert) -> redis::RedisResult<()> {
        let about = format!("{}\n{}", alert.reference, alert.summary);
        self.redis
            .clone()
            .set_ex(
                format!("{}:about", self.key(g, &alert.key)),
                about,
                REMEMBERED.as_secs(),
            )
            .await
    }

    /// The reference and summary noted when the alert fired.
    async fn about(
        &self,
        g: &Integration,
        alert_key: &str,
    ) -> redis::RedisResult<Option<(String, String)>> {
        let v: Option<String> = self
            .redis
            .clone()
            .get(format!("{}:about", self.key(g, alert_key)))
            .await?;
        Ok(v.map(|v| match v.split_once('\n') {
            Some((r, s)) => (r.to_string(), s.to_string()),
            None => (v, String::new()),
        }))
    }

    async fn case_of(
        &self,
        g: &Integration,
        alert_key: &str,
    ) -> redis::RedisResult<Option<String>> {
        self.redis.clone().get(self.key(g, alert_key)).await
    }

    /// The key's case, naming a new one if it has none.
    async fn name_case(&self, g: &Integration, alert_key: &str) -> redis::RedisResult<String> {
        let key = self.key(g, alert_key);
        let mut r = self.redis.clone();
        let fresh = new_case_id(g);
        let set: bool = redis::cmd("SET")
            .arg(&key)
            .arg(&fresh)
            .arg("NX")
            .arg("EX")
            .arg(REMEMBERED.as_secs())
            .query_async::<Option<String>>(&mut r)
            .await?
            .is_some();
        if set {
            return Ok(fresh);
        }
        let current: Option<String> = r.get(&key).await?;
        let Some(current) = current else {
            // Forgotten in between: name it again.
            let _: () = r.set_ex(&key, &fresh, REMEMBERED.as_secs()).await?;
            return Ok(fresh);
        };
        let _: bool = r.expire(&key, REMEMBERED.as_secs() as i64).await?;
        Ok(current)
    }

    async fn replace(&self, g: &Integration, alert_key: &str, old: &str) -> redis::RedisResult<()> {
        let _: i64 = redis::Script::new(REPLACE)
            .key(self.key(g, alert_key))
            .arg(old)
            .arg(new_case_id(g))
            .arg(REMEMBERED.as_secs())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    async fn forget(&self, g: &Integration, alert_key: &str, case: &str) -> redis::RedisResult<()> {
        let key = self.key(g, alert_key);
        let _: i64 = redis::Script::new(FORGET)
            .key(&key)
            .key(format!("{key}:about"))
            .arg(case)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}

/// A case id of `g`'s own: `inc-<integration>-<ulid>`, within the
/// 100 characters and the characters a case id may have.
fn new_case_id(g: &Integration) -> String {
    herald_proto::ids::incident_case_id(&g.name)
}

fn priority(name: &str) -> Priority {
    match name {
        "low" => Priority::Low,
        "high" => Priority::High,
        "critical" => Priority::Critical,
        _ => Priority::Normal,
    }
}

fn channel(name: &str) -> CaseChannel {
    match name {
        "email" => CaseChannel::Email,
        "live_chat" => CaseChannel::LiveChat,
        "phone" => CaseChannel::Phone,
        "portal" => CaseChannel::Portal,
        _ => CaseChannel::SupportTicket,
    }
}

/// At most `max` characters of `text`, on one line.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn storage(e: redis::RedisError) -> Rejected {
    warn!(error = %e, "alert case state unreadable");
    crate::unavailable()
}

impl Intake {
    /// A trigger: opens the alert's case unless one is open, and tells the
    /// recipients (once, however often the tool repeats itself).
    pub(crate) async fn alert_fired(
        &self,
        g: &Integration,
        alert: &Alert,
    ) -> Result<Outcome, Rejected> {
        let mut case = self
            .integrations
            .name_case(g, &alert.key)
            .await
            .map_err(storage)?;
        let priority = priority(g.priority_of(alert.severity.as_deref()));
        // Twice at most: a case resolved behind the key is replaced once.
        for _ in 0..2 {
            match self.cases.status(&case).await.map_err(storage)? {
                Status::Resolved => {
                    self.integrations
                        .replace(g, &alert.key, &case)
                        .await
                        .map_err(storage)?;
                    case = self
                        .integrations
                        .name_case(g, &alert.key)
                        .await
                        .map_err(storage)?;
                }
                Status::Open => {
                    self.integrations
                        .note_about(g, alert)
                        .await
                        .map_err(storage)?;
                    self.tell(g, &g.template, &case, "fired", alert, priority)
                        .await?;
                    return Ok(Outcome::AlreadyOpen(case));
                }
                Status::Unknown => {
                    self.integrations
                        .note_about(g, alert)
                        .await
                        .map_err(storage)?;
                    let ev = CaseEvent {
                        event_id: "opened".into(),
                        case_id: case.clone(),
                        kind: CaseEventKind::Opened as i32,
                        actor: clip(&alert.actor, 200),
                        details: Some(CaseDetails {
                            channel: channel(&g.channel) as i32,
                            priority: priority as i32,
                            client_contact_id: g.client.clone(),
                            responsible_staff: g.responsible_staff.clone(),
                            team: g.team.clone(),
                            reference: clip(&alert.reference, 64),
                        }),
                        ..Default::default()
                    };
                    self.case_step(ev, g).await?;
                    info!(integration = %g.name, case_id = %case, "alert opened a case");
                    self.tell(g, &g.template, &case, "fired", alert, priority)
                        .await?;
                    return Ok(Outcome::Opened(case));
                }
            }
        }
        Err(reject(
            ErrorCode::Unavailable,
            "",
            "the alert's case changed while it was being opened; send it again",
        ))
    }

    /// An acknowledgement of the alert's open case.
    pub(crate) async fn alert_acknowledged(
        &self,
        g: &Integration,
        alert_key: &str,
        actor: &str,
    ) -> Result<Outcome, Rejected> {
        let Some(case) = self
            .integrations
            .case_of(g, alert_key)
            .await
            .map_err(storage)?
        else {
            return Ok(Outcome::NoCase);
        };
        if self.cases.status(&case).await.map_err(storage)? != Status::Open {
            return Ok(Outcome::NoCase);
        }
        let ev = CaseEvent {
            event_id: "acknowledged".into(),
            case_id: case.clone(),
            kind: CaseEventKind::Acknowledged as i32,
            actor: clip(actor, 200),
            ..Default::default()
        };
        self.case_step(ev, g).await?;
        Ok(Outcome::Acknowledged(case))
    }

    /// A resolution: resolves the alert's case, tells the recipients if the
    /// integration says so, and forgets the key.
    pub(crate) async fn alert_resolved(
        &self,
        g: &Integration,
        alert: &Alert,
    ) -> Result<Outcome, Rejected> {
        let Some(case) = self
            .integrations
            .case_of(g, &alert.key)
            .await
            .map_err(storage)?
        else {
            return Ok(Outcome::NoCase);
        };
        match self.cases.status(&case).await.map_err(storage)? {
            Status::Unknown => {}
            Status::Open => {
                let ev = CaseEvent {
                    event_id: "resolved".into(),
                    case_id: case.clone(),
                    kind: CaseEventKind::Resolved as i32,
                    actor: clip(&alert.actor, 200),
                    ..Default::default()
                };
                self.case_step(ev, g).await?;
            }
            // Resolved in Herald already (by staff): still tell and forget.
            Status::Resolved => {}
        }
        if let Some(t) = &g.resolved_template {
            let mut told = alert.clone();
            if told.reference.is_empty()
                && let Some((reference, summary)) = self
                    .integrations
                    .about(g, &alert.key)
                    .await
                    .map_err(storage)?
            {
                told.reference = reference;
                told.summary = summary;
            }
            let p = priority(g.priority_of(told.severity.as_deref()));
            self.tell(g, t, &case, "resolved", &told, p).await?;
        }
        self.integrations
            .forget(g, &alert.key, &case)
            .await
            .map_err(storage)?;
        Ok(Outcome::Resolved(case))
    }

    /// Submits a case event as the integration.
    async fn case_step(&self, ev: CaseEvent, g: &Integration) -> Result<(), Rejected> {
        match self.submit_case(ev, &g.name).await.result {
            Some(case_reply::Result::Accepted(_)) => Ok(()),
            Some(case_reply::Result::Rejected(r)) => Err(r),
            None => Err(reject(ErrorCode::Internal, "", "no answer to a case event")),
        }
    }

    /// Tells the integration's recipients with `template`; `what` makes the
    /// idempotency key, so each message goes once per case.
    async fn tell(
        &self,
        g: &Integration,
        template: &str,
        case: &str,
        what: &str,
        alert: &Alert,
        priority: Priority,
    ) -> Result<(), Rejected> {
        if g.recipients.is_empty() {
            return Ok(());
        }
        let req = NotificationRequest {
            idempotency_key: format!("{case}:{what}"),
            communication_type: CommunicationType::Incident as i32,
            priority: priority as i32,
            recipients: g
                .recipients
                .iter()
                .map(|id| Recipient {
                    target: Some(recipient::Target::ContactId(id.clone())),
                })
                .collect(),
            template_id: template.to_string(),
            params: [
                ("reference".to_string(), clip(&alert.reference, 64)),
                ("summary".to_string(), clip(&alert.summary, 300)),
            ]
            .into(),
            case_id: case.to_string(),
            requester: g.name.clone(),
            responsible_staff: g.responsible_staff.clone(),
            ..Default::default()
        };
        match self.submit(req, Lane::Normal, &g.name).await.result {
            Some(intake_reply::Result::Accepted(_)) => Ok(()),
            Some(intake_reply::Result::Rejected(r)) => Err(r),
            None => Err(reject(
                ErrorCode::Internal,
                "",
                "no answer to a notification",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_multi_line_text_is_clipped_to_one_line() {
        assert_eq!(clip("disk\n  full", 64), "disk full");
        let long = "x".repeat(100);
        let c = clip(&long, 10);
        assert_eq!(c.chars().count(), 10);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn a_case_id_fits_what_a_case_id_may_be() {
        let g = Integration {
            name: "a".repeat(64),
            kind: IntegrationKind::Pagerduty,
            key_sha256: vec![],
            team: String::new(),
            responsible_staff: "r".into(),
            client: "c".into(),
            recipients: vec![],
            template: "t".into(),
            resolved_template: None,
            channel: "support_ticket".into(),
            severity_label: "severity".into(),
            priorities: Default::default(),
            default_priority: "normal".into(),
        };
        let id = new_case_id(&g);
        assert!(id.len() <= 100, "{id}");
        assert!(herald_proto::subjects::is_subject_token(&id), "{id}");
        assert_ne!(id, new_case_id(&g));
    }
}
