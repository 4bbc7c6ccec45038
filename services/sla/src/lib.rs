//! sla: response-time clocks per case, on business-hours calendars.
//!
//! It reads the case stream (`HERALD_CASES`, lifecycle events only), one
//! partition per durable consumer and in order within a partition, and
//! starts, stops, pauses and resumes each case's clocks (`clock.rs`) by the
//! SLA policies (`policy.rs`) on the calendar of the case's team. Clock
//! state and timers live in Redis (`store.rs`), so a restart loses nothing
//! and any number of instances share the work.
//!
//! Timer loops fire what is due: a warning at the policy's fraction of the
//! target, a breach at the deadline. Each becomes an `SlaEvent` on the
//! case's subject in the same stream, with a message id made of the case,
//! the clock, its generation and the stage, so the one firing a crash
//! repeats is dropped by JetStream; the state change that records it is a
//! compare-and-swap, so two instances never both count it. Every step is in
//! the case's trail.
//!
//! `herald.v1.sla.query` answers with a case's clocks for `herald case
//! show`.

pub mod clock;
pub mod policy;
pub mod store;

mod events;
mod firing;
mod metrics;
mod view;

use std::sync::Arc;

use herald_calendar::{Calendar, Calendars};
use herald_config::Config;
use herald_durable::timers::{self, RunOptions};
use herald_proto::subjects;
use herald_runtime::{
    audit::Auditor,
    bus::Bus,
    clock::{Clock as TimeSource, SystemClock, from_millis},
    metrics::Queue,
};
use herald_runtime::{serve::ServeOptions, service::ServiceBuilder};
use metrics::SlaMetrics;
use tokio_util::sync::CancellationToken;

use crate::{policy::Policies, store::ClockStore};

/// Everything the consumers, the timer loops and the query handler share.
#[derive(Clone)]
struct Sla {
    bus: Bus,
    store: ClockStore,
    policies: Arc<Policies>,
    calendars: Arc<Calendars>,
    auditor: Auditor,
    metrics: SlaMetrics,
    clock: Arc<dyn TimeSource>,
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
    clock: Arc<dyn TimeSource>,
) -> anyhow::Result<Running> {
    let policies = Policies::load(cfg.sla.policy_file.as_deref())
        .map_err(|p| anyhow::anyhow!("SLA policies:\n  {}", p.join("\n  ")))?;
    let calendars = herald_config::built_in_or_file(
        cfg.sla.calendars_file.as_deref(),
        herald_calendar::DEFAULT_CALENDARS,
        "calendars",
    )
    .and_then(|(text, origin)| Calendars::parse(&text, &origin))
    .map_err(|p| anyhow::anyhow!("calendars:\n  {}", p.join("\n  ")))?;
    let mut service = ServiceBuilder::connect("sla", &cfg, &shutdown).await?;
    let sla = Sla {
        bus: service.bus.clone(),
        store: ClockStore::new(service.redis.clone(), &cfg.redis.prefix)
            .keeping(cfg.retention.case_state),
        policies: Arc::new(policies),
        calendars: Arc::new(calendars),
        auditor: Auditor::new(service.bus.clone(), "sla"),
        metrics: SlaMetrics::register(&mut service.registry),
        clock,
    };
    service.watch([Queue::stream(subjects::STREAM_CASES)]);
    service.watch(
        (0..subjects::CASE_PARTITIONS)
            .map(|p| Queue::consumer(subjects::STREAM_CASES, format!("sla-{p}"))),
    );
    // In order: a case's events are applied as they were stored.
    let s = sla.clone();
    service.consume_case_partitions(
        "sla",
        subjects::case_events_in,
        cfg.nats.ack_wait,
        move |msg| {
            let s = s.clone();
            async move { s.on_case_event(msg).await }
        },
    );
    let opts = RunOptions {
        batch: cfg.sla.batch,
        lease: cfg.sla.lease,
        poll: cfg.sla.poll,
    };
    for _ in 0..cfg.sla.runners {
        let s = sla.clone();
        let (timers, clock, opts) = (sla.store.timers().clone(), sla.clock.clone(), opts.clone());
        let stop = shutdown.clone();
        service.spawn(timers::run(timers, clock, opts, stop, move |batch| {
            let s = s.clone();
            async move { s.fire(batch).await }
        }));
    }
    let s = sla.clone();
    service
        .serve(
            &[subjects::SLA_QUERY],
            subjects::QUEUE_SLA,
            ServeOptions::new(16),
            move |msg| {
                let s = s.clone();
                async move { Some(s.answer_query(&msg.payload).await.into()) }
            },
        )
        .await?;
    // Its part of erasing a person (SOP 003 §6.5), asked by intake.
    service.serve_erasure(&cfg.redis.prefix, None).await?;
    service.start(&cfg.sla.http_addr).await
}

/// A deadline in the calendar's local time, e.g. "Wed 18 Mar 2026 16:00
/// GMT".
pub fn local_time(ms: i64, cal: &Calendar) -> String {
    if ms == i64::MAX {
        return "never (no working time ahead)".into();
    }
    from_millis(ms)
        .with_timezone(&cal.tz)
        .format("%a %d %b %Y %H:%M %Z")
        .to_string()
}
