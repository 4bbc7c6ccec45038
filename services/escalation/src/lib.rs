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

pub mod ack;
pub mod actions;
pub mod ics;
pub mod imip;
pub mod inbound;
pub mod machine;
pub mod meetings;
pub mod policy;
pub mod state;
pub mod survey;

mod decide;
mod effects;
mod events;
mod feedback;
mod firing;
mod invite;
mod metrics;
mod notify;
mod view;

use std::sync::Arc;

use herald_config::Config;
use herald_directory::contacts::Directory;
use herald_durable::timers::{self, RunOptions};
use herald_proto::subjects;
use std::time::Duration;

use herald_runtime::{
    audit::Auditor,
    bus::{Bus, ConsumerSpec, Gate},
    clock::{Clock, SystemClock},
    metrics::Queue,
};
use herald_runtime::{serve::ServeOptions, service::ServiceBuilder};
use metrics::EscalationMetrics;
use tokio_util::sync::CancellationToken;

use crate::{
    ack::{Acks, Links},
    policy::Policies,
    state::Store,
};

/// Templates the service sends (shipped in `config/templates`).
pub const STAFF_ALERT: &str = "escalation_alert";
pub const CLIENT_NOTICE: &str = "escalation_notice";
pub const SURVEY: &str = "follow_up_survey";
pub const SURVEY_REMINDER: &str = "survey_reminder";
pub const CLIENT_REPLY: &str = "client_reply";
pub const ACK_REPLY: &str = "acknowledgement_reply";
/// Reminds an action item's owner that it is due.
pub const ACTION_REMINDER: &str = "action_reminder";
/// A meeting's invitation (or its update), its cancellation, and the
/// reminder before it.
pub const MEETING_INVITATION: &str = "meeting_invitation";
pub const MEETING_CANCELLED: &str = "meeting_cancelled";
pub const MEETING_REMINDER: &str = "meeting_reminder";

/// The durable consumer of people's answers (`HERALD_INBOUND`).
const INBOUND: &str = "escalation-inbound";

/// Everything the consumers, the timer loop and the query handler share.
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
    /// Where meeting answer links point (`escalation.public_url`).
    public_url: String,
    /// Acknowledgement links, key presses and codes (`ack.rs`).
    acks: Acks,
    /// What the voice provider signs key presses with
    /// (`delivery.provider_token`, `delivery.provider_signing_key`).
    provider_keys: herald_content::signature::ProviderKeys,
    /// Every case's feedback, across cases.
    book: feedback::book::Book,
    /// The feedback trend's schedule.
    trend: feedback::trend::TrendTimer,
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
    let calendars = herald_config::built_in_or_file(
        cfg.sla.calendars_file.as_deref(),
        herald_calendar::DEFAULT_CALENDARS,
        "calendars",
    )
    .and_then(|(text, origin)| herald_calendar::Calendars::parse(&text, &origin))
    .map_err(|p| anyhow::anyhow!("calendars:\n  {}", p.join("\n  ")))?;
    let mut service = ServiceBuilder::connect("escalation", &cfg, &shutdown).await?;
    let redis = service.redis.clone();
    let esc = Escalator {
        bus: service.bus.clone(),
        store: Store::new(redis.clone(), &cfg.redis.prefix).keeping(cfg.retention.case_state),
        directory: Directory::new(redis.clone(), &cfg.redis.prefix),
        policies: Arc::new(policies),
        auditor: Auditor::new(service.bus.clone(), "escalation"),
        metrics: EscalationMetrics::register(&mut service.registry),
        clock,
        survey_url: cfg.escalation.survey_url.clone(),
        survey_secret: secret.expose_secret().into(),
        public_url: cfg.escalation.public_url.clone(),
        acks: Acks::new(
            redis.clone(),
            &cfg.redis.prefix,
            Links::new(secret.expose_secret(), &cfg.escalation.public_url),
            cfg.escalation.ack_code_ttl,
        ),
        provider_keys: herald_content::signature::ProviderKeys::from_config(&cfg.delivery),
        book: feedback::book::Book::new(redis.clone(), &cfg.redis.prefix, cfg.retention.case_state),
        trend: feedback::trend::TrendTimer::new(redis.clone(), &cfg.redis.prefix, calendars),
    };
    service.watch(
        (0..subjects::CASE_PARTITIONS)
            .map(|p| Queue::consumer(subjects::STREAM_CASES, format!("escalation-{p}"))),
    );
    service.watch([Queue::consumer(subjects::STREAM_INBOUND, INBOUND)]);
    service.public_routes(
        cfg.escalation.public(),
        ack::routes(esc.clone()).merge(invite::routes(esc.clone())),
    );
    // People's answers: acknowledgement codes and clients' replies.
    let inbound = ConsumerSpec {
        stream: subjects::STREAM_INBOUND.into(),
        durable: INBOUND.into(),
        filter: subjects::inbound_all().into(),
        concurrency: 16,
        ack_wait: cfg.nats.ack_wait.max(Duration::from_secs(30)),
        max_deliver: -1,
    };
    let e = esc.clone();
    service.consume(inbound, Gate::None, Duration::from_secs(10), move |msg| {
        let e = e.clone();
        async move { e.on_inbound(msg).await }
    });
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
    service.spawn(timers::run(timers, clock, opts, stop, move |batch| {
        let e = e.clone();
        async move { e.fire(batch).await }
    }));
    // The feedback trend: arranged, then fired when due.
    let e = esc.clone();
    let stop = shutdown.clone();
    let (lease, poll) = (cfg.escalation.lease, cfg.escalation.poll);
    service.spawn(async move {
        let mut backoff =
            herald_runtime::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        while let Err(err) = e.arrange_trend().await {
            tracing::warn!(error = %err, "feedback trend not arranged; retrying");
            if !backoff.wait(&stop).await {
                return Ok(());
            }
        }
        let (t, clock) = (e.trend.timers.clone(), e.clock.clone());
        let opts = RunOptions {
            batch: 1,
            lease,
            poll,
        };
        timers::run(t, clock, opts, stop, move |batch| {
            let e = e.clone();
            async move { e.fire_trend(batch).await }
        })
        .await
    });
    let e = esc.clone();
    service
        .serve(
            &[subjects::ESCALATION_FEEDBACK],
            subjects::QUEUE_ESCALATION,
            ServeOptions::new(4),
            move |msg| {
                let e = e.clone();
                async move { Some(e.answer_feedback_list(&msg.payload).await.into()) }
            },
        )
        .await?;
    let e = esc.clone();
    service
        .serve(
            &[subjects::ESCALATION_QUERY],
            subjects::QUEUE_ESCALATION,
            ServeOptions::new(16),
            move |msg| {
                let e = e.clone();
                async move { Some(e.answer_query(&msg.payload).await.into()) }
            },
        )
        .await?;
    // Its part of erasing a person (SOP 003 §6.5), asked by intake.
    service.serve_erasure(&cfg.redis.prefix, None).await?;
    service.start(&cfg.escalation.http_addr).await
}

/// The templates this service sends must exist and be approved, or every
/// escalation would be refused by intake.
fn check_templates(cfg: &Config) -> anyhow::Result<()> {
    let store = herald_content::templates::TemplateStore::load(&cfg.content.templates_dir)
        .map_err(|p| anyhow::anyhow!("templates:\n  {}", p.join("\n  ")))?;
    for id in [
        STAFF_ALERT,
        CLIENT_NOTICE,
        SURVEY,
        SURVEY_REMINDER,
        CLIENT_REPLY,
        ACK_REPLY,
        ACTION_REMINDER,
        MEETING_INVITATION,
        MEETING_CANCELLED,
        MEETING_REMINDER,
        feedback::trend::FEEDBACK_TREND,
    ] {
        store
            .resolve(id, 0)
            .map_err(|e| anyhow::anyhow!("the escalation service sends template {id}: {e}"))?;
    }
    Ok(())
}
