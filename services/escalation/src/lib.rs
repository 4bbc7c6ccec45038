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
mod effects;
mod notify;

use std::sync::Arc;

use async_nats::jetstream;
use futures::StreamExt;
use herald_config::Config;
use herald_directory::contacts::Directory;
use herald_durable::timers::{self, Due, RunOptions};
use herald_proto::v1::CaseQuery;
use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedCaseEvent, CaseEvent, EscalationQueryReply, EscalationView, SlaEvent,
        escalation_query_reply,
    },
};
use herald_runtime::{
    audit::Auditor,
    bus::{self, Bus, Disposition},
    clock::{Clock, SystemClock, from_millis, millis},
    metrics::{EscalationMetrics, Queue},
    telemetry::record_outcome,
};
use herald_runtime::{query::lookup, serve::ServeOptions, service::ServiceBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, warn};

use crate::{
    machine::{FollowUp, Status},
    policy::Policies,
    state::{Store, parse_timer},
};

/// Templates the service sends (shipped in `config/templates`).
pub const STAFF_ALERT: &str = "escalation_alert";
pub const CLIENT_NOTICE: &str = "escalation_notice";
pub const SURVEY: &str = "follow_up_survey";
pub const SURVEY_REMINDER: &str = "survey_reminder";

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
