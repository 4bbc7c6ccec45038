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

use std::sync::Arc;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_calendar::{Calendar, Calendars};
use herald_config::Config;
use herald_durable::timers::{self, Due, RunOptions};
use herald_proto::v1::CaseQuery;
use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedCaseEvent, AuditStep, CaseChannel, CaseEvent, CaseEventKind, ClockKind, ClockState,
        ClockView, Priority, SlaEvent, SlaEventKind, SlaQueryReply, SlaView, sla_query_reply,
    },
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::{self, Bus, Disposition},
    clock::{Clock as TimeSource, SystemClock, from_millis},
    metrics::{Queue, SlaLabel, SlaMetrics},
    telemetry::record_outcome,
};
use herald_runtime::{query::lookup, serve::ServeOptions, service::ServiceBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, warn};

use crate::{
    clock::{CaseClocks, Change, Fired, Opening, clock_letter, parse_timer_id},
    policy::Policies,
    store::{ClockStore, Stored},
};

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
        store: ClockStore::new(service.redis.clone(), &cfg.redis.prefix),
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
        service.spawn(async move {
            timers::run(timers, clock, opts, stop, move |batch| {
                let s = s.clone();
                async move { s.fire(batch).await }
            })
            .await;
            Ok(())
        });
    }
    let s = sla.clone();
    service
        .serve(
            &[subjects::SLA_QUERY],
            subjects::QUEUE_SLA,
            ServeOptions::new(16),
            move |msg| {
                let s = s.clone();
                async move {
                    let looked = match CaseQuery::case_of(&msg.payload) {
                        Ok(id) => {
                            lookup(
                                "case_id",
                                id,
                                "clocks",
                                |id| async move { s.view(&id).await },
                            )
                            .await
                        }
                        Err(r) => Err(r),
                    };
                    let reply = SlaQueryReply {
                        result: Some(match looked {
                            Ok(v) => sla_query_reply::Result::View(v),
                            Err(r) => sla_query_reply::Result::Rejected(r),
                        }),
                    };
                    Some(reply.encode_to_vec().into())
                }
            },
        )
        .await?;
    service.start(&cfg.sla.http_addr).await
}

impl Sla {
    /// One lifecycle event; an error is retried in place (see
    /// `bus::consume_case_partitions`).
    async fn on_case_event(&self, msg: jetstream::Message) -> anyhow::Result<Disposition> {
        let span = bus::process_span("sla case event", &msg);
        async {
            let span = tracing::Span::current();
            let Some(ev) = AcceptedCaseEvent::decode(msg.payload.clone())
                .ok()
                .and_then(|a| a.event)
            else {
                record_outcome(&span, "undecodable", true);
                error!("undecodable case event dropped");
                return Ok(Disposition::Reject);
            };
            span.record("case_id", ev.case_id.as_str());
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            self.apply(&ev, seq).await?;
            record_outcome(&span, "applied", false);
            Ok(Disposition::Ack)
        }
        .instrument(span)
        .await
    }

    /// Applies one event to the case's clocks: the trail first (record ids
    /// are fixed, so a retry writes nothing new), then state and timers in
    /// one swap.
    async fn apply(&self, ev: &CaseEvent, seq: u64) -> anyhow::Result<()> {
        let kind = ev.kind();
        let at: DateTime<Utc> = match &ev.occurred_at {
            Some(t) => herald_proto::system_time(Some(t)).into(),
            None => self.clock.now(),
        };
        let mut documented = false;
        loop {
            let stored = self.store.get(&ev.case_id).await?;
            if stored.as_ref().is_some_and(|s| s.clocks.last_seq >= seq) {
                return Ok(());
            }
            let (mut next, changes) = match (kind, &stored) {
                (CaseEventKind::Opened, None) => {
                    let d = ev.details.clone().unwrap_or_default();
                    let channel = d.channel();
                    let priority = d.priority();
                    let specs = self.policies.clocks_for(channel, priority, &d.team);
                    let cal = self.calendars.for_team(&d.team);
                    CaseClocks::open(
                        Opening {
                            team: &d.team,
                            channel,
                            priority,
                            specs: &specs,
                        },
                        at,
                        cal,
                    )
                }
                // Opened twice, or an event for a case this service never
                // saw open: nothing to time.
                (CaseEventKind::Opened, Some(_)) | (_, None) => return Ok(()),
                (CaseEventKind::Updated, Some(s)) => {
                    let mut c = s.clocks.clone();
                    if let Some(d) = &ev.details {
                        if !d.team.is_empty() {
                            c.team = d.team.clone();
                        }
                        if d.priority != 0 {
                            c.priority = d.priority;
                        }
                    }
                    (c, Vec::new())
                }
                (_, Some(s)) => {
                    let mut c = s.clocks.clone();
                    let specs = self.policies.clocks_for(
                        CaseChannel::try_from(c.channel).unwrap_or_default(),
                        Priority::try_from(c.priority).unwrap_or_default(),
                        &c.team,
                    );
                    let cal = self.calendars.for_team(&c.team);
                    let changes = c.apply(kind, at, cal, &specs);
                    (c, changes)
                }
            };
            if changes.is_empty() && kind != CaseEventKind::Opened && kind != CaseEventKind::Updated
            {
                return Ok(());
            }
            if !documented && !changes.is_empty() {
                self.document(&ev.case_id, seq, &next, &changes).await?;
                documented = true;
            }
            next.last_seq = seq;
            if self.store.swap(&ev.case_id, stored.as_ref(), &next).await? {
                return Ok(());
            }
        }
    }

    async fn document(
        &self,
        case_id: &str,
        seq: u64,
        clocks: &CaseClocks,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        let cal = self.calendars.for_team(&clocks.team);
        let entries: Vec<Entry> = changes
            .iter()
            .map(|ch| {
                let kind = ch.kind();
                let clock = clocks.clocks.iter().find(|c| c.kind() == kind);
                let step = match ch {
                    Change::Started { .. } | Change::Resumed { .. } => AuditStep::ClockStarted,
                    Change::Paused { .. } => AuditStep::ClockPaused,
                    Change::Stopped { .. } => AuditStep::ClockStopped,
                };
                let mut summary = ch.describe();
                if let (
                    Change::Started { deadline_ms, .. } | Change::Resumed { deadline_ms, .. },
                    Some(c),
                ) = (ch, clock)
                {
                    summary = format!(
                        "{summary}: {} (policy {}), due {}",
                        self.policies
                            .written(&c.policy, kind, c.target_s, c.business),
                        c.policy,
                        local_time(*deadline_ms, cal)
                    );
                }
                let mut e = Entry {
                    case_id: case_id.to_string(),
                    record_id: Some(format!("sla-{case_id}-{seq}-{}", clock_letter(kind))),
                    ..Entry::new(step, summary)
                }
                .attr("clock", kind.name());
                if let Some(c) = clock {
                    e = e
                        .attr("policy", &c.policy)
                        .attr("generation", c.generation)
                        .attr("deadline", from_millis(c.deadline_ms).to_rfc3339());
                }
                e
            })
            .collect();
        let ack = self.auditor.record_all(entries).await?;
        bus::confirm(subjects::audit_all().to_string(), ack).await?;
        Ok(())
    }

    /// Fires a batch of due timers; returns the ids finished with. Ids of
    /// cases that failed are left claimed and fire again once their lease
    /// runs out (their events carry fixed ids, so nothing is doubled).
    async fn fire(&self, batch: Vec<Due>) -> Vec<String> {
        let mut by_case: std::collections::BTreeMap<String, Vec<(ClockKind, String)>> =
            Default::default();
        let mut done = Vec::new();
        for d in batch {
            match parse_timer_id(&d.id) {
                Some((case, kind)) => by_case
                    .entry(case.to_string())
                    .or_default()
                    .push((kind, d.id.clone())),
                None => {
                    warn!(timer = %d.id, "not a clock timer; dropped");
                    done.push(d.id);
                }
            }
        }
        let cases: Vec<String> = by_case.keys().cloned().collect();
        let stored = match self.store.get_many(&cases).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "clock states unreadable; the timers fire again after their lease");
                return done;
            }
        };
        let results = futures::stream::iter(by_case.into_iter().zip(stored))
            .map(|((case, timers), stored)| async move {
                let kinds: Vec<ClockKind> = timers.iter().map(|(k, _)| *k).collect();
                match self.fire_case(&case, &kinds, stored).await {
                    Ok(()) => timers.into_iter().map(|(_, id)| id).collect(),
                    Err(e) => {
                        warn!(case_id = %case, error = %e, "firing a clock failed; it fires again after its lease");
                        Vec::new()
                    }
                }
            })
            .buffer_unordered(256)
            .collect::<Vec<Vec<String>>>()
            .await;
        done.extend(results.into_iter().flatten());
        done
    }

    /// Fires whatever is due on one case's clocks, publishes it, and
    /// records it together with the clocks' next timers.
    async fn fire_case(
        &self,
        case_id: &str,
        kinds: &[ClockKind],
        mut stored: Option<Stored>,
    ) -> anyhow::Result<()> {
        loop {
            // The case is gone (expired long after its clocks stopped):
            // the timer is stale.
            let Some(s) = stored else { return Ok(()) };
            let now = self.clock.now();
            let mut next = s.clocks.clone();
            let mut fired = Vec::new();
            for kind in kinds {
                if let Some(c) = next.clock_mut(*kind)
                    && let Some(f) = c.fire(now)
                {
                    fired.push((f, c.clone()));
                }
            }
            if !fired.is_empty() {
                self.publish_fired(case_id, &next, &fired, now).await?;
            }
            if self.store.swap(case_id, Some(&s), &next).await? {
                for (f, c) in &fired {
                    let label = SlaLabel {
                        lane: "normal".into(),
                        channel: CaseChannel::try_from(next.channel)
                            .unwrap_or_default()
                            .name()
                            .into(),
                        clock: c.kind().name().into(),
                    };
                    match f {
                        Fired::Warning => self.metrics.warnings.get_or_create(&label).inc(),
                        Fired::Breach => self.metrics.breaches.get_or_create(&label).inc(),
                    };
                }
                return Ok(());
            }
            stored = self.store.get(case_id).await?;
        }
    }

    async fn publish_fired(
        &self,
        case_id: &str,
        case: &CaseClocks,
        fired: &[(Fired, clock::Clock)],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let cal = self.calendars.for_team(&case.team);
        let mut acks = Vec::new();
        let mut entries = Vec::new();
        for (f, c) in fired {
            let (kind, stage, step) = match f {
                Fired::Warning => (SlaEventKind::Warning, 'w', AuditStep::SlaWarning),
                Fired::Breach => (SlaEventKind::Breach, 'b', AuditStep::SlaBreach),
            };
            let event_id = format!(
                "{case_id}:{}:{}:{stage}",
                clock_letter(c.kind()),
                c.generation
            );
            let event = SlaEvent {
                event_id: event_id.clone(),
                case_id: case_id.to_string(),
                kind: kind as i32,
                clock: c.kind,
                deadline: Some(herald_proto::timestamp(from_millis(c.deadline_ms).into())),
                fired_at: Some(herald_proto::timestamp(now.into())),
                policy: c.policy.clone(),
                team: case.team.clone(),
                priority: case.priority,
                channel: case.channel,
                generation: c.generation,
            };
            let subject = subjects::sla_event(case_id);
            acks.push((
                subject.clone(),
                self.bus.publish(subject, &event, Some(&event_id)).await?,
            ));
            let summary = match f {
                Fired::Warning => format!(
                    "{} clock warning: {} left, due {}",
                    c.kind().name(),
                    herald_calendar::duration_words(c.seconds_left(now, cal), c.business),
                    local_time(c.deadline_ms, cal)
                ),
                Fired::Breach => format!(
                    "{} clock breached: {} (policy {}) ran out at {}",
                    c.kind().name(),
                    self.policies
                        .written(&c.policy, c.kind(), c.target_s, c.business),
                    c.policy,
                    local_time(c.deadline_ms, cal)
                ),
            };
            entries.push(
                Entry {
                    case_id: case_id.to_string(),
                    record_id: Some(format!("sla-{event_id}")),
                    ..Entry::new(step, summary)
                }
                .attr("clock", c.kind().name())
                .attr("policy", &c.policy)
                .attr("generation", c.generation)
                .attr("deadline", from_millis(c.deadline_ms).to_rfc3339()),
            );
        }
        // One batch per record: the duplicate window drops a batch by its
        // first id, and a retry may fire fewer clocks than this attempt.
        for e in entries {
            acks.push((
                subjects::audit_all().to_string(),
                self.auditor.record(e).await?,
            ));
        }
        for (subject, ack) in acks {
            bus::confirm(subject, ack).await?;
        }
        Ok(())
    }

    /// The view of a case's clocks for `herald case show`.
    async fn view(&self, case_id: &str) -> anyhow::Result<Option<SlaView>> {
        let Some(s) = self.store.get(case_id).await? else {
            return Ok(None);
        };
        let c = &s.clocks;
        let cal = self.calendars.for_team(&c.team);
        let now = self.clock.now();
        Ok(Some(SlaView {
            case_id: case_id.to_string(),
            team: c.team.clone(),
            calendar: cal.name.clone(),
            time_zone: cal.tz.name().to_string(),
            channel: c.channel,
            priority: c.priority,
            clocks: c
                .clocks
                .iter()
                .map(|k| {
                    let deadline = k.projected_deadline(now, cal);
                    ClockView {
                        clock: k.kind,
                        state: k.state,
                        policy: k.policy.clone(),
                        target: self
                            .policies
                            .written(&k.policy, k.kind(), k.target_s, k.business),
                        started_at: Some(herald_proto::timestamp(
                            from_millis(k.started_s * 1000).into(),
                        )),
                        deadline: (deadline != i64::MAX)
                            .then(|| herald_proto::timestamp(from_millis(deadline).into())),
                        seconds_left: k.seconds_left(now, cal),
                        business_hours: k.business,
                        warned: k.warned,
                        breached: k.breached,
                        stopped_at: (k.state() == ClockState::Stopped).then(|| {
                            herald_proto::timestamp(from_millis(k.stopped_s * 1000).into())
                        }),
                    }
                })
                .collect(),
        }))
    }
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
