//! escalation: walks escalation policies when a case's clock runs out or
//! someone asks, tells the client, stops the moment the case is answered,
//! and follows up after resolution.
//!
//! It reads the whole case stream (`HERALD_CASES`: lifecycle events and the
//! sla service's breaches), one partition per durable consumer and in
//! stream order, so it sees a breach and an acknowledgement in the order
//! they were stored. State per case and its timers are in Redis
//! (`state.rs`); the rules are pure: what an escalation and a follow-up do
//! next (`machine.rs`), and what each event and timer does to a case
//! (`decide.rs`).
//!
//! * A breach, an escalate-now request or a critical case opening starts
//!   the case's policy (`policy.rs`). Each level sends through the normal
//!   pipeline: one `NotificationRequest` per target to intake, with an
//!   idempotency key made of case, escalation, level, round and target (a
//!   step repeated after a crash sends nothing twice) and the cancel key
//!   `esc-<case>@<position of what started it>`.
//! * On every new level the client gets an escalation notice on their
//!   preferred channel, naming the new point of contact and the expected
//!   timeframe.
//! * An acknowledgement, response or resolution stops the escalation: its
//!   cancel family is stopped at the event's stream position (intake has
//!   already done so before answering the caller; this repeats it for
//!   events that reached the stream by other means), its timer cancelled,
//!   and the trail says who stopped it. Messages of the escalation already
//!   queued in delivery are dropped there.
//! * A resolution schedules the follow-up: after `follow_up.delay` a survey
//!   with a signed link (`survey.rs`), and one reminder if no feedback
//!   arrives within `follow_up.reminder_after`. Feedback is recorded and
//!   ends it; reopening calls it off.
//!
//! `herald.v1.escalation.query` answers with a case's escalation state for
//! `herald case show`.

pub mod machine;
pub mod policy;
pub mod state;
pub mod survey;

mod decide;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::jetstream;
use futures::StreamExt;
use herald_config::Config;
use herald_directory::contacts::{Contact, Directory, MemberOf};
use herald_durable::{
    stop::{Stop, first_stopped},
    timers::{self, Due, RunOptions},
};
use herald_proto::cancel_keys::{escalation_family, family_key, follow_up_family};
use herald_proto::v1::CaseQuery;
use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedCaseEvent, AuditStep, CaseEvent, CommunicationType, ErrorCode,
        EscalationQueryReply, EscalationView, IntakeReply, Lane, NotificationRequest, Priority,
        Recipient, Rejected, SlaEvent, escalation_query_reply, intake_reply,
        recipient::Target as RecipientTarget,
    },
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::{self, Bus, Disposition},
    clock::{Clock, SystemClock, from_millis, millis},
    metrics::{EscalationLabel, EscalationMetrics, Queue},
    telemetry::record_outcome,
};
use herald_runtime::{query::lookup, serve::ServeOptions, service::ServiceBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::{
    decide::Effect,
    machine::{Escalation, FollowUp, Status, Step},
    policy::{Level, Policies, Target},
    state::{CaseState, Store, parse_timer},
};

/// Templates the service sends (shipped in `config/templates`).
pub const STAFF_ALERT: &str = "escalation_alert";
pub const CLIENT_NOTICE: &str = "escalation_notice";
pub const SURVEY: &str = "follow_up_survey";
pub const SURVEY_REMINDER: &str = "survey_reminder";

/// How long to wait for intake to answer a notification request.
const INTAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Escalator {
    bus: Bus,
    store: Store,
    directory: Directory,
    policies: Arc<Policies>,
    auditor: Auditor,
    metrics: EscalationMetrics,
    clock: Arc<dyn Clock>,
    survey_url: String,
    survey_secret: Arc<str>,
}

pub use herald_runtime::service::Running;

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    start_with_clock(cfg, shutdown, Arc::new(SystemClock)).await
}

/// As [`start`], with the time taken from `clock`.
pub async fn start_with_clock(
    cfg: Config,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let policies = Policies::load(cfg.escalation.policy_file.as_deref())
        .map_err(|p| anyhow::anyhow!("escalation policies:\n  {}", p.join("\n  ")))?;
    let Some(secret) = cfg.escalation.survey_secret.clone() else {
        anyhow::bail!(
            "`escalation.survey_secret` is not set: follow-up survey links are signed with it (set HERALD_ESCALATION_SURVEY_SECRET)"
        );
    };
    check_templates(&cfg)?;
    let mut service = ServiceBuilder::connect("escalation", &cfg, &shutdown).await?;
    let redis = service.redis.clone();
    let esc = Escalator {
        bus: service.bus.clone(),
        store: Store::new(redis.clone(), &cfg.redis.prefix),
        directory: Directory::new(redis.clone(), &cfg.redis.prefix),
        policies: Arc::new(policies),
        auditor: Auditor::new(service.bus.clone(), "escalation"),
        metrics: EscalationMetrics::register(&mut service.registry),
        clock,
        survey_url: cfg.escalation.survey_url.clone(),
        survey_secret: secret.expose_secret().into(),
    };
    service.watch(
        (0..subjects::CASE_PARTITIONS)
            .map(|p| Queue::consumer(subjects::STREAM_CASES, format!("escalation-{p}"))),
    );
    // Lifecycle events and breaches of a partition, in stream order.
    let e = esc.clone();
    service.consume_case_partitions(
        "escalation",
        subjects::case_all_in,
        cfg.nats.ack_wait,
        move |msg| {
            let e = e.clone();
            async move { e.on_message(msg).await }
        },
    );
    let e = esc.clone();
    let (timers, clock) = (esc.store.timers().clone(), esc.clock.clone());
    let opts = RunOptions {
        batch: 200,
        lease: cfg.escalation.lease,
        poll: cfg.escalation.poll,
    };
    let stop = shutdown.clone();
    service.spawn(async move {
        timers::run(timers, clock, opts, stop, move |batch| {
            let e = e.clone();
            async move { e.fire(batch).await }
        })
        .await;
        Ok(())
    });
    let e = esc.clone();
    service
        .serve(
            &[subjects::ESCALATION_QUERY],
            subjects::QUEUE_ESCALATION,
            ServeOptions::new(16),
            move |msg| {
                let e = e.clone();
                async move {
                    let looked = match CaseQuery::case_of(&msg.payload) {
                        Ok(id) => {
                            lookup("case_id", id, "escalation state", |id| async move {
                                e.view(&id).await
                            })
                            .await
                        }
                        Err(r) => Err(r),
                    };
                    let reply = EscalationQueryReply {
                        result: Some(match looked {
                            Ok(v) => escalation_query_reply::Result::View(v),
                            Err(r) => escalation_query_reply::Result::Rejected(r),
                        }),
                    };
                    Some(reply.encode_to_vec().into())
                }
            },
        )
        .await?;
    service.start(&cfg.escalation.http_addr).await
}

/// The templates this service sends must exist and be approved, or every
/// escalation would be refused by intake.
fn check_templates(cfg: &Config) -> anyhow::Result<()> {
    let store = herald_content::templates::TemplateStore::load(&cfg.content.templates_dir)
        .map_err(|p| anyhow::anyhow!("templates:\n  {}", p.join("\n  ")))?;
    for id in [STAFF_ALERT, CLIENT_NOTICE, SURVEY, SURVEY_REMINDER] {
        store
            .resolve(id, 0)
            .map_err(|e| anyhow::anyhow!("the escalation service sends template {id}: {e}"))?;
    }
    Ok(())
}

/// What happened, counted once the state that records it is written.
struct Counted {
    level: usize,
    trigger: String,
}

impl Escalator {
    /// One message of the case stream: a lifecycle event or a clock event.
    /// An error is retried in place (see `bus::consume_case_partitions`).
    async fn on_message(&self, msg: jetstream::Message) -> anyhow::Result<Disposition> {
        let span = bus::process_span("escalation case message", &msg);
        async {
            let span = tracing::Span::current();
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            let input = match subjects::parse_case_subject(&msg.subject) {
                Some(subjects::CaseSubject::Event(_)) => {
                    AcceptedCaseEvent::decode(msg.payload.clone())
                        .ok()
                        .and_then(|a| a.event)
                        .map(Input::Event)
                }
                Some(subjects::CaseSubject::Sla(_)) => {
                    SlaEvent::decode(msg.payload.clone()).ok().map(Input::Sla)
                }
                None => None,
            };
            let Some(input) = input else {
                record_outcome(&span, "undecodable", true);
                error!(subject = %msg.subject, "undecodable case message dropped");
                return Ok(Disposition::Reject);
            };
            span.record("case_id", input.case_id());
            self.apply(&input, seq).await?;
            record_outcome(&span, "applied", false);
            Ok(Disposition::Ack)
        }
        .instrument(span)
        .await
    }

    async fn apply(&self, input: &Input, seq: u64) -> anyhow::Result<()> {
        let case_id = input.case_id();
        loop {
            let stored = self.store.get(case_id).await?;
            if stored.as_ref().is_some_and(|s| s.state.last_seq >= seq) {
                return Ok(());
            }
            let now = millis(self.clock.now());
            let state = stored.as_ref().map(|s| &s.state);
            let decided = match input {
                Input::Event(ev) => decide::on_event(&self.policies, ev, seq, state, now),
                Input::Sla(ev) => decide::on_sla(&self.policies, ev, seq, state, now),
            };
            let Some((mut next, effects)) = decided else {
                return Ok(());
            };
            next.last_seq = seq;
            let counted = self.perform(case_id, &mut next, effects).await?;
            if self.store.swap(case_id, stored.as_ref(), &next).await? {
                self.count(&counted);
                return Ok(());
            }
        }
    }

    /// Fires due escalation and follow-up timers.
    async fn fire(&self, batch: Vec<Due>) -> Vec<String> {
        let results = futures::stream::iter(batch)
            .map(|d| async move {
                let Some((escalation, case_id)) = parse_timer(&d.id) else {
                    warn!(timer = %d.id, "not an escalation timer; dropped");
                    return Some(d.id);
                };
                match self.on_timer(case_id, escalation).await {
                    Ok(()) => Some(d.id),
                    Err(e) => {
                        warn!(case_id, error = %e, "escalation timer failed; it fires again after its lease");
                        None
                    }
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        results.into_iter().flatten().collect()
    }

    async fn on_timer(&self, case_id: &str, escalation: bool) -> anyhow::Result<()> {
        loop {
            let Some(stored) = self.store.get(case_id).await? else {
                return Ok(());
            };
            let now = millis(self.clock.now());
            let (mut st, effects) =
                decide::on_timer(&self.policies, &stored.state, escalation, now)?;
            let counted = self.perform(case_id, &mut st, effects).await?;
            // Written even when nothing was due: the swap also puts the
            // timers back where the state says they belong.
            if self.store.swap(case_id, Some(&stored), &st).await? {
                self.count(&counted);
                return Ok(());
            }
        }
    }

    fn count(&self, counted: &[Counted]) {
        for c in counted {
            self.metrics
                .escalations
                .get_or_create(&EscalationLabel {
                    lane: "normal".into(),
                    level: (c.level + 1).to_string(),
                    trigger: c.trigger.split(':').next().unwrap_or("").to_string(),
                })
                .inc();
        }
    }

    /// Carries out effects in order; fills in who was notified.
    async fn perform(
        &self,
        case_id: &str,
        st: &mut CaseState,
        effects: Vec<Effect>,
    ) -> anyhow::Result<Vec<Counted>> {
        let mut counted = Vec::new();
        for effect in effects {
            match effect {
                Effect::StopFamily {
                    family,
                    position,
                    reason,
                } => {
                    Stop::family(family, position, reason)
                        .send(&self.bus)
                        .await?;
                }
                Effect::Notify { esc, step } => {
                    if let Step::Notify {
                        level,
                        round,
                        client,
                    } = step
                    {
                        let notified = self
                            .notify_level(case_id, st, &esc, level, round, client)
                            .await?;
                        if let Some(cur) = st.current.as_mut() {
                            cur.notified = notified;
                        }
                        if round == 0 {
                            counted.push(Counted {
                                level,
                                trigger: esc.trigger.clone(),
                            });
                        }
                    }
                }
                Effect::Exhausted { esc } => {
                    self.audit(
                        Entry {
                            case_id: case_id.to_string(),
                            record_id: Some(format!("esc-{case_id}-{}-exhausted", esc.seq)),
                            ..Entry::new(
                                AuditStep::Escalated,
                                "every escalation level was notified and nobody acknowledged",
                            )
                        }
                        .attr("escalation", esc.seq),
                    )
                    .await?;
                }
                Effect::Stopped { esc } => {
                    self.audit(
                        Entry {
                            case_id: case_id.to_string(),
                            record_id: Some(format!("esc-{case_id}-{}-stopped", esc.seq)),
                            ..Entry::new(
                                AuditStep::EscalationStopped,
                                format!(
                                    "escalation stopped at level {} ({}): {}",
                                    esc.level + 1,
                                    self.level_of(&esc).map(Level::title).unwrap_or_default(),
                                    esc.stopped_by
                                ),
                            )
                        }
                        .attr("escalation", esc.seq)
                        .attr("level", esc.level + 1),
                    )
                    .await?;
                }
                Effect::Survey { seq, reminder } => {
                    self.send_survey(case_id, st, seq, reminder).await?;
                }
                Effect::FollowUpNote { id, summary } => {
                    self.audit(Entry {
                        case_id: case_id.to_string(),
                        record_id: Some(id),
                        ..Entry::new(AuditStep::FollowUp, summary)
                    })
                    .await?;
                }
            }
        }
        Ok(counted)
    }

    fn level_of(&self, esc: &Escalation) -> Option<&Level> {
        self.policies.named(&esc.policy)?.levels.get(esc.level)
    }

    async fn audit(&self, entry: Entry) -> anyhow::Result<()> {
        self.auditor.record_durable(entry).await?;
        Ok(())
    }

    /// The contacts a level's targets name, each once. Roles are looked
    /// up in the case's team first, then among staff with no team.
    async fn resolve(&self, targets: &[Target], st: &CaseState) -> anyhow::Result<Vec<Contact>> {
        let mut out: Vec<Contact> = Vec::new();
        for t in targets {
            let found = match t {
                Target::Responsible if st.staff.is_empty() => Vec::new(),
                Target::Responsible => self.directory.get(&st.staff).await?.into_iter().collect(),
                Target::Contact(id) => self.directory.get(id).await?.into_iter().collect(),
                Target::Role(role) => {
                    let all = self.directory.in_group(MemberOf::Role, role).await?;
                    let in_team: Vec<Contact> = all
                        .iter()
                        .filter(|c| !st.team.is_empty() && c.team.as_deref() == Some(&st.team))
                        .cloned()
                        .collect();
                    if in_team.is_empty() {
                        all.into_iter().filter(|c| c.team.is_none()).collect()
                    } else {
                        in_team
                    }
                }
            };
            for c in found {
                if !out.iter().any(|o| o.id == c.id) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// Notifies one level: each target, and the client on a new level.
    /// Returns the contacts reached.
    async fn notify_level(
        &self,
        case_id: &str,
        st: &CaseState,
        esc: &Escalation,
        level_index: usize,
        round: u32,
        client: bool,
    ) -> anyhow::Result<Vec<String>> {
        let policy = self
            .policies
            .named(&esc.policy)
            .ok_or_else(|| anyhow::anyhow!("no escalation policy {}", esc.policy))?;
        let level = &policy.levels[level_index];
        let key = family_key(&escalation_family(case_id), esc.seq);
        // Stopped already (an acknowledgement stored meanwhile): sending
        // would only be cancelled in delivery.
        if first_stopped(&self.bus, std::slice::from_ref(&key))
            .await?
            .is_some()
        {
            info!(case_id, "escalation already stopped; level not notified");
            return Ok(Vec::new());
        }
        let staff = self.resolve(&level.targets, st).await?;
        let reference = st.reference(case_id);
        let mut notified = Vec::new();
        let mut problems = Vec::new();
        for c in &staff {
            let req = NotificationRequest {
                idempotency_key: format!(
                    "esc:{case_id}:{}:{level_index}:{round}:{}",
                    esc.seq, c.id
                ),
                communication_type: CommunicationType::EscalationNotice as i32,
                priority: st.priority,
                recipients: vec![to(&c.id)],
                template_id: STAFF_ALERT.into(),
                params: BTreeMap::from([
                    ("reference".to_string(), reference.clone()),
                    ("level".to_string(), level.title()),
                    ("reason".to_string(), trigger_words(&esc.trigger)),
                    ("round".to_string(), (round + 1).to_string()),
                ]),
                case_id: case_id.to_string(),
                requester: "escalation".into(),
                responsible_staff: st.staff.clone(),
                cancel_keys: vec![key.clone()],
                ..Default::default()
            };
            match self.submit(&req).await? {
                Ok(_) => notified.push(c.id.clone()),
                Err(r) => problems.push(format!("{}: {} {}", c.id, r.field, r.message)),
            }
        }
        let mut client_told = String::new();
        if client && !st.client.is_empty() {
            let point = staff.first();
            let language = self
                .directory
                .get(&st.client)
                .await?
                .map(|c| c.language)
                .unwrap_or_else(|| "en".into());
            let mut params = BTreeMap::from([
                ("reference".to_string(), reference.clone()),
                (
                    "contact_name".to_string(),
                    point
                        .map(|p| p.name.clone())
                        .unwrap_or_else(|| format!("our {}", level.title())),
                ),
                (
                    "timeframe".to_string(),
                    survey::timeframe(level.expected_within, &language),
                ),
            ]);
            if let Some(email) = point.and_then(|p| p.email.clone()) {
                params.insert("contact_email".into(), email);
            }
            let req = NotificationRequest {
                idempotency_key: format!("esc:{case_id}:{}:{level_index}:client", esc.seq),
                communication_type: CommunicationType::EscalationNotice as i32,
                priority: st.priority,
                recipients: vec![to(&st.client)],
                template_id: CLIENT_NOTICE.into(),
                params,
                case_id: case_id.to_string(),
                requester: "escalation".into(),
                responsible_staff: st.staff.clone(),
                cancel_keys: vec![key.clone()],
                ..Default::default()
            };
            client_told = match self.submit(&req).await? {
                Ok(_) => format!(
                    "; client {} told: new point of contact {}, expected within {}",
                    st.client,
                    point.map(|p| p.id.as_str()).unwrap_or("(none)"),
                    survey::timeframe(level.expected_within, "en")
                ),
                Err(r) => format!("; client notice refused: {} {}", r.field, r.message),
            };
        }
        let who = if notified.is_empty() {
            "nobody reachable".to_string()
        } else {
            notified.join(", ")
        };
        let mut summary = format!(
            "escalated to {} (level {} of {}){}: notified {who}{client_told}",
            level.title(),
            level_index + 1,
            policy.levels.len(),
            if round > 0 {
                format!(", notice {}", round + 1)
            } else {
                String::new()
            },
        );
        if !problems.is_empty() {
            summary.push_str(&format!("; not notified: {}", problems.join("; ")));
        }
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                responsible_staff: st.staff.clone(),
                record_id: Some(format!("esc-{case_id}-{}-{level_index}-{round}", esc.seq)),
                ..Entry::new(AuditStep::Escalated, summary)
            }
            .attr("escalation", esc.seq)
            .attr("level", level_index + 1)
            .attr("level_name", &level.name)
            .attr("round", round + 1)
            .attr("trigger", &esc.trigger)
            .attr("cancel_key", &key),
        )
        .await?;
        Ok(notified)
    }

    /// The follow-up survey (or its reminder) to the client.
    async fn send_survey(
        &self,
        case_id: &str,
        st: &CaseState,
        seq: u64,
        reminder: bool,
    ) -> anyhow::Result<()> {
        let what = if reminder { "reminder" } else { "survey" };
        let link = survey::link(&self.survey_url, &self.survey_secret, case_id, seq);
        let req = NotificationRequest {
            idempotency_key: format!("fu:{case_id}:{seq}:{what}"),
            communication_type: CommunicationType::FollowUp as i32,
            priority: Priority::Normal as i32,
            recipients: vec![to(&st.client)],
            template_id: if reminder { SURVEY_REMINDER } else { SURVEY }.into(),
            params: BTreeMap::from([
                ("reference".to_string(), st.reference(case_id)),
                ("survey_link".to_string(), link),
            ]),
            case_id: case_id.to_string(),
            requester: "escalation".into(),
            responsible_staff: st.staff.clone(),
            cancel_keys: vec![family_key(&follow_up_family(case_id), seq)],
            ..Default::default()
        };
        let summary = match self.submit(&req).await? {
            Ok(_) if reminder => "follow-up survey reminder sent to the client".to_string(),
            Ok(_) => "follow-up survey sent to the client".to_string(),
            Err(r) => format!("follow-up {what} refused: {} {}", r.field, r.message),
        };
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: st.client.clone(),
                record_id: Some(format!("fu-{case_id}-{seq}-{what}")),
                ..Entry::new(AuditStep::FollowUp, summary)
            }
            .attr("round", seq),
        )
        .await
    }

    /// Sends a request to intake. The outer error is "try again" (intake
    /// unreachable or unavailable); the inner one a refusal that will not
    /// change.
    async fn submit(&self, req: &NotificationRequest) -> anyhow::Result<Result<String, Rejected>> {
        let reply = tokio::time::timeout(
            INTAKE_TIMEOUT,
            self.bus.client.request(
                subjects::intake_notify(Lane::Normal),
                req.encode_to_vec().into(),
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("intake did not answer in time"))?
        .map_err(|e| anyhow::anyhow!("intake unreachable: {e}"))?;
        match IntakeReply::decode(reply.payload)?.result {
            Some(intake_reply::Result::Accepted(a)) => Ok(Ok(a.notification_id)),
            Some(intake_reply::Result::Rejected(r)) if r.code == ErrorCode::Unavailable as i32 => {
                anyhow::bail!("intake unavailable: {}", r.message)
            }
            Some(intake_reply::Result::Rejected(r)) => {
                warn!(field = %r.field, code = r.code, "intake refused an escalation notice");
                Ok(Err(r))
            }
            None => anyhow::bail!("intake sent an empty reply"),
        }
    }

    async fn view(&self, case_id: &str) -> anyhow::Result<Option<EscalationView>> {
        let Some(s) = self.store.get(case_id).await? else {
            return Ok(None);
        };
        let st = s.state;
        let ts = |ms: i64| Some(herald_proto::timestamp(from_millis(ms).into()));
        let mut view = EscalationView {
            case_id: case_id.to_string(),
            state: "none".into(),
            follow_up: st.follow_up.name().into(),
            follow_up_at: st.follow_up.next_due().and_then(ts),
            rating: match st.follow_up {
                FollowUp::Answered { rating, .. } => rating,
                _ => 0,
            },
            escalations: st.escalations,
            ..Default::default()
        };
        if let Some(e) = &st.current {
            view.state = match e.status {
                Status::Active => "active",
                Status::Stopped => "stopped",
                Status::Exhausted => "exhausted",
            }
            .into();
            view.policy = e.policy.clone();
            view.trigger = e.trigger.clone();
            view.level = e.level as u32 + 1;
            view.level_name = self.level_of(e).map(|l| l.name.clone()).unwrap_or_default();
            view.round = e.round + 1;
            view.started_at = ts(e.started_ms);
            view.next_at = e.next_ms.and_then(ts);
            view.notified = e.notified.clone();
            view.stopped_at = e.stopped_ms.and_then(ts);
            view.stopped_by = e.stopped_by.clone();
        }
        Ok(Some(view))
    }
}

/// A lifecycle event or a clock event, as read from the stream.
enum Input {
    Event(CaseEvent),
    Sla(SlaEvent),
}

impl Input {
    fn case_id(&self) -> &str {
        match self {
            Input::Event(e) => &e.case_id,
            Input::Sla(e) => &e.case_id,
        }
    }
}

fn to(contact_id: &str) -> Recipient {
    Recipient {
        target: Some(RecipientTarget::ContactId(contact_id.to_string())),
    }
}

/// Why the case is escalated, in words for the staff alert.
fn trigger_words(trigger: &str) -> String {
    match trigger.split_once(':') {
        Some(("breach", clock)) => format!("its {clock} time ran out"),
        _ if trigger == "critical" => "it is critical".into(),
        _ => "an escalation was requested".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_content::templates::TemplateStore;
    use herald_proto::v1::Channel;

    #[test]
    fn the_templates_it_sends_render_with_the_parameters_it_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        let store = TemplateStore::load(&dir).unwrap();
        let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .chain(&[("recipient_name", "Alice Martin"), ("case_id", "C-1")])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let staff = vars(&[
            ("reference", "INQ-7"),
            ("level", "team lead"),
            ("reason", trigger_words("breach:response").as_str()),
            ("round", "2"),
        ]);
        let notice = vars(&[
            ("reference", "INQ-7"),
            ("contact_name", "Kim Lee"),
            ("contact_email", "kim.lee@example.org"),
            ("timeframe", "2 hours"),
        ]);
        let link = survey::link("https://f.example/s", "0123456789abcdef", "C-1", 9);
        let survey = vars(&[("reference", "INQ-7"), ("survey_link", link.as_str())]);
        for (id, v, langs, wants) in [
            (
                STAFF_ALERT,
                &staff,
                &["en"][..],
                &["INQ-7", "team lead", "response time ran out", "notice 2"][..],
            ),
            (
                CLIENT_NOTICE,
                &notice,
                &["en", "fr", "es"][..],
                &["INQ-7", "Kim Lee"][..],
            ),
            (
                SURVEY,
                &survey,
                &["en", "fr", "es"][..],
                &["INQ-7", link.as_str()][..],
            ),
            (
                SURVEY_REMINDER,
                &survey,
                &["en", "fr", "es"][..],
                &["INQ-7", link.as_str()][..],
            ),
        ] {
            for lang in langs {
                let r = store.render(id, 0, lang, Channel::Email, v).unwrap();
                assert_eq!(&r.language, lang, "{id} has {lang}");
                for want in wants {
                    assert!(
                        r.body.contains(want),
                        "{id}/{lang}: {want} not in {}",
                        r.body
                    );
                }
                let sms = store.render(id, 0, lang, Channel::Sms, v).unwrap();
                assert!(sms.body.contains("INQ-7"), "{id}/{lang} sms");
            }
        }
        let en = store
            .render(CLIENT_NOTICE, 0, "en", Channel::Email, &notice)
            .unwrap();
        assert!(en.body.contains("within 2 hours"), "{}", en.body);
        assert!(en.body.contains("(kim.lee@example.org)"), "{}", en.body);
    }
}
