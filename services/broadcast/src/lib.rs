//! broadcast: emergency broadcasts, on the emergency lane only.
//!
//! It works through the commands intake accepted
//! (`HERALD_EMERGENCY_BROADCAST`):
//!
//! * **start**: resolves the audience into people (each once), numbers them,
//!   and puts an email AND a call (and an SMS when asked) for each straight
//!   onto the emergency delivery stream, in their language; schedules the
//!   call cycles and the end in durable timers;
//! * **update**: emails (and texts) the new message to everyone at once;
//!   later calls speak it;
//! * **cancel**: ends the broadcast (intake has already stopped delivery
//!   through the broadcast's cancel key).
//!
//! Every `interval`, the recipients who have not confirmed are called
//! again, up to `cycles` calls; when `duration` is over (or everyone has
//! confirmed) the broadcast ends and each recipient is documented as
//! confirmed, not confirmed (reached, no confirmation) or unreachable.
//!
//! Confirmations come in on the HTTP port ([`confirm`]): the signed link in
//! the email, the voice provider's key-press callback, the SMS provider's
//! inbound-message callback. Each stops that person's further calls (their
//! cancel key) and is documented with who and how. Status events of the
//! broadcast's jobs (`herald.v1.delivery.status.broadcast.*`) keep its
//! progress, which `herald.v1.emergency.broadcast.status` answers.
//!
//! The broadcast service never sends anything itself and imports no other
//! service: delivery sends its jobs like any others.

mod confirm;
pub mod link;
pub mod plan;
pub mod state;
pub mod view;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use chrono::{DateTime, TimeDelta, Utc};
use herald_config::{BroadcastConfig, Config};
use herald_content::templates::TemplateStore;
use herald_directory::{
    contacts::{Contact, Directory},
    coordinators,
    groups::Groups,
};
use herald_durable::{
    stop::Stop,
    timers::{self, Due, RunOptions, Timers},
};
use herald_proto::broadcasts;
use herald_proto::{
    Message, subjects,
    v1::{
        AuditStep, BroadcastCommand, BroadcastState, BroadcastStatusReply, BroadcastStatusRequest,
        CancelBroadcast, Channel, DeliveryJob, DeliveryState, DeliveryStatus, ErrorCode, Lane,
        Rejected, StartBroadcast, UpdateBroadcast, broadcast_command::Command,
        broadcast_status_reply,
    },
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::{self, Bus, ConsumerSpec, Disposition},
    clock::{Clock, SystemClock},
    metrics::Queue,
    priority::Precedence,
    telemetry::record_outcome,
};
use herald_runtime::{bus::Gate, serve::ServeOptions, service::ServiceBuilder};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::{
    link::Signer,
    plan::{Broadcast, Content, Planner, Wave},
    state::{Begun, Confirmed, Meta, Store},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

struct Metrics {
    broadcasts: Family<EventLabel, Counter>,
    jobs: Family<ChannelLabel, Counter>,
    confirmations: Family<ChannelLabel, Counter>,
    refused: Family<EventLabel, Counter>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            broadcasts: Family::default(),
            jobs: Family::default(),
            confirmations: Family::default(),
            refused: Family::default(),
        };
        registry.register(
            "broadcasts",
            "Broadcasts started, recalled (a call cycle), updated, finished and cancelled",
            m.broadcasts.clone(),
        );
        registry.register(
            "broadcast_jobs",
            "Delivery jobs a broadcast put on the emergency lane, by channel",
            m.jobs.clone(),
        );
        registry.register(
            "broadcast_confirmations",
            "Recipients who confirmed receipt, by how (email link, voice key press, SMS reply)",
            m.confirmations.clone(),
        );
        registry.register(
            "broadcast_webhooks_refused",
            "Confirmation requests refused for a bad signature, by endpoint",
            m.refused.clone(),
        );
        m
    }

    fn event(&self, event: &str) {
        self.broadcasts
            .get_or_create(&EventLabel {
                event: event.into(),
            })
            .inc();
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub(crate) struct Broadcasts {
    bus: Bus,
    store: Store,
    directory: Directory,
    groups: Groups,
    timers: Timers,
    templates: Arc<TemplateStore>,
    signer: Signer,
    auditor: Auditor,
    cfg: Arc<BroadcastConfig>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Verifies the providers' key-press and SMS-reply callbacks
    /// (`delivery.provider_token`, the secret the providers sign with).
    provider_token: Option<String>,
    /// Recall cycles are emergency work too.
    precedence: Precedence,
}

pub use herald_runtime::service::Running;

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    start_with_clock(cfg, shutdown, Arc::new(SystemClock)).await
}

/// As [`start`], with the clock the cycles and the end are timed by.
pub async fn start_with_clock(
    cfg: Config,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let Some(secret) = cfg.broadcast.link_secret.clone() else {
        anyhow::bail!(
            "broadcast.link_secret is not set: confirmation links cannot be signed (set HERALD_BROADCAST_LINK_SECRET to a long random string)"
        );
    };
    let templates = TemplateStore::load(&cfg.content.templates_dir)
        .map_err(|p| anyhow::anyhow!("templates:\n  {}", p.join("\n  ")))?;
    templates
        .resolve(broadcasts::CONFIRMATION_TEMPLATE, 0)
        .map_err(|e| anyhow::anyhow!("the broadcast confirmation template is required: {e}"))?;
    let mut service = ServiceBuilder::connect("broadcast", &cfg, &shutdown).await?;
    let precedence = service.precedence();
    let redis = service.redis.clone();
    let broadcasts = Broadcasts {
        bus: service.bus.clone(),
        store: Store::new(redis.clone(), &cfg.redis.prefix),
        directory: Directory::new(redis.clone(), &cfg.redis.prefix),
        groups: Groups::new(redis.clone(), &cfg.redis.prefix),
        timers: Timers::new(
            redis,
            &herald_proto::keyspace::BROADCAST.prefix(&cfg.redis.prefix),
            "cycles",
        ),
        templates: Arc::new(templates),
        signer: Signer::new(secret.expose_secret(), &cfg.broadcast.public_url),
        auditor: Auditor::new(service.bus.clone(), "broadcast"),
        cfg: Arc::new(cfg.broadcast.clone()),
        clock: clock.clone(),
        metrics: Arc::new(Metrics::register(&mut service.registry)),
        provider_token: cfg
            .delivery
            .provider_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        precedence: precedence.clone(),
    };
    service.watch([
        Queue::consumer(subjects::STREAM_BROADCAST, COMMANDS),
        Queue::consumer(subjects::STREAM_STATUS, STATUSES),
    ]);
    service.routes(confirm::routes(broadcasts.clone()));
    let commands = ConsumerSpec {
        stream: subjects::STREAM_BROADCAST.into(),
        durable: COMMANDS.into(),
        filter: subjects::BROADCAST_COMMANDS.into(),
        concurrency: cfg.broadcast.concurrency,
        ack_wait: cfg.nats.ack_wait.max(Duration::from_secs(60)),
        max_deliver: -1,
    };
    let b = broadcasts.clone();
    service.consume(
        commands,
        Gate::Busy(precedence.clone()),
        Duration::from_secs(10),
        move |msg| {
            let b = b.clone();
            async move { b.command(msg).await }
        },
    );
    let statuses = ConsumerSpec {
        stream: subjects::STREAM_STATUS.into(),
        durable: STATUSES.into(),
        filter: subjects::broadcast_delivery_statuses(),
        concurrency: cfg.broadcast.concurrency * 4,
        ack_wait: cfg.nats.ack_wait,
        max_deliver: -1,
    };
    let b = broadcasts.clone();
    // Bookkeeping: it waits while jobs are being sent.
    service.consume(
        statuses,
        Gate::Yield(precedence.clone()),
        Duration::from_secs(10),
        move |msg| {
            let b = b.clone();
            async move { b.status_event(msg).await }
        },
    );
    let b = broadcasts.clone();
    let timer_options = RunOptions {
        batch: 100,
        lease: Duration::from_secs(120),
        poll: Duration::from_millis(200),
    };
    let stop = shutdown.clone();
    service.spawn(async move {
        timers::run(
            b.timers.clone(),
            b.clock.clone(),
            timer_options,
            stop,
            |batch| {
                let b = b.clone();
                async move { b.fire(batch).await }
            },
        )
        .await;
        Ok(())
    });
    let b = broadcasts.clone();
    service
        .serve(
            &[subjects::BROADCAST_STATUS],
            subjects::QUEUE_BROADCAST,
            ServeOptions::new(cfg.broadcast.concurrency),
            move |msg| {
                let b = b.clone();
                async move { Some(b.status_reply(&msg.payload).await.encode_to_vec().into()) }
            },
        )
        .await?;
    service.start(&cfg.broadcast.http_addr).await
}

/// The durable consumers of broadcast commands and of the status events
/// of broadcast jobs.
const COMMANDS: &str = "broadcast-commands";
const STATUSES: &str = "broadcast-statuses";

/// The timers of a broadcast: call cycles 2.. at `interval` steps from the
/// start (the first cycle is the start), and the end after `duration`.
pub fn schedule(
    broadcast_id: &str,
    started: DateTime<Utc>,
    interval: Duration,
    cycles: u32,
    duration: Duration,
) -> Vec<(String, DateTime<Utc>)> {
    let step = TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX);
    let mut out: Vec<(String, DateTime<Utc>)> = (2..=cycles)
        .map(|k| {
            (
                format!("{broadcast_id}|c{k}"),
                started + step * (k as i32 - 1),
            )
        })
        .collect();
    out.push((
        format!("{broadcast_id}|end"),
        started + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX),
    ));
    out
}

/// What a timer id asks for.
#[derive(Debug, PartialEq, Eq)]
enum TimerKind<'a> {
    Cycle(&'a str, u32),
    End(&'a str),
}

fn parse_timer(id: &str) -> Option<TimerKind<'_>> {
    let (b, what) = id.rsplit_once('|')?;
    if what == "end" {
        return Some(TimerKind::End(b));
    }
    Some(TimerKind::Cycle(b, what.strip_prefix('c')?.parse().ok()?))
}

/// What a delivery status means for a broadcast job's progress.
pub fn progress_of(channel: Channel, state: DeliveryState) -> Option<&'static str> {
    use DeliveryState as S;
    Some(match state {
        // Email has no delivery receipts: a mail server that took the
        // message is as delivered as email gets.
        S::Sent if channel == Channel::Email => "delivered",
        S::Sent | S::Queued | S::Initiated | S::Ringing => "sent",
        S::Delivered | S::Answered | S::Completed => "delivered",
        S::Undelivered | S::Busy | S::NoAnswer => "undelivered",
        S::Failed | S::DeadLettered => "failed",
        S::Cancelled => "cancelled",
        S::Retrying | S::Unspecified => return None,
    })
}

impl Broadcasts {
    fn entry(&self, broadcast_id: &str, case_id: &str, step: AuditStep, summary: String) -> Entry {
        Entry {
            notification_id: broadcast_id.to_string(),
            case_id: case_id.to_string(),
            lane: Lane::Emergency,
            ..Entry::new(step, summary)
        }
    }

    async fn audit(&self, entry: Entry) {
        if let Err(e) = self.auditor.record_durable(entry).await {
            warn!(error = %e, "audit record not written");
        }
    }

    async fn command(&self, msg: jetstream::Message) -> Disposition {
        let span = bus::process_span("broadcast command", &msg);
        async {
            let cmd = match BroadcastCommand::decode(msg.payload.clone()) {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, "undecodable broadcast command dropped");
                    return Disposition::Reject;
                }
            };
            let result = match cmd.command.clone() {
                Some(Command::Start(s)) => self.start(&cmd, s).await,
                Some(Command::Update(u)) => self.update(&cmd, u).await,
                Some(Command::Cancel(c)) => self.cancel(&cmd, c).await,
                None => Ok(Disposition::Reject),
            };
            match result {
                Ok(d) => {
                    record_outcome(&tracing::Span::current(), "done", false);
                    d
                }
                Err(e) => {
                    record_outcome(&tracing::Span::current(), "retry", false);
                    warn!(command = %cmd.command_id, error = %e, "broadcast command failed; will retry");
                    Disposition::Retry(Duration::from_secs(1))
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn start(
        &self,
        cmd: &BroadcastCommand,
        s: StartBroadcast,
    ) -> anyhow::Result<Disposition> {
        let id = s.broadcast_id.as_str();
        tracing::Span::current().record("notification_id", id);
        if let Some(m) = self.store.meta(id).await?
            && m.published
        {
            info!(broadcast_id = id, "start already done");
            return Ok(Disposition::Ack);
        }
        let began = std::time::Instant::now();
        let audience = s.audience.clone().unwrap_or_default();
        let (found, missing) = plan::expand(&self.directory, &self.groups, &audience).await?;
        let expanded = began.elapsed();
        let cycles = s.cycles.unwrap_or_default();
        let now = self.clock.now();
        let interval = Duration::from_secs(cycles.interval_seconds.max(1) as u64);
        let duration = Duration::from_secs(cycles.duration_seconds as u64);
        let meta = Meta {
            state: BroadcastState::Starting,
            actor: cmd.actor.clone(),
            severity: s.severity,
            started_at: now,
            ends_at: now + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX),
            interval_s: interval.as_secs(),
            cycles_total: cycles.cycles.max(1),
            cycles_done: 0,
            sms: s.sms,
            recipients: found.len(),
            case_id: s.case_id.clone(),
            notification_id: cmd.notification_id.clone(),
            communication_type: plan::communication_type(&s.template_id) as i32,
            ..Default::default()
        };
        let ids: Vec<String> = found.iter().map(|c| c.id.clone()).collect();
        let people: Vec<Option<Contact>> = match self
            .store
            .begin(id, &meta, &ids, &s.encode_to_vec())
            .await?
        {
            Begun::New => found.into_iter().map(Some).collect(),
            Begun::Again(ids) => plan::lookup(&self.directory, &ids).await?,
            Begun::Cancelled => {
                self.audit(self.entry(
                    id,
                    &s.case_id,
                    AuditStep::Broadcast,
                    "cancelled before it started: nothing was sent".into(),
                ))
                .await;
                return Ok(Disposition::Ack);
            }
        };
        let meta = self.store.meta(id).await?.unwrap_or(meta);
        if people.is_empty() || people.len() > self.cfg.max_recipients {
            let why = if people.is_empty() {
                "no one to reach: the audience names nobody in the directory".to_string()
            } else {
                format!(
                    "not started: the audience is {} people, more than broadcast.max_recipients ({})",
                    people.len(),
                    self.cfg.max_recipients
                )
            };
            let state = if people.is_empty() {
                BroadcastState::Finished
            } else {
                BroadcastState::Cancelled
            };
            self.store.finish(id, state, now, &why).await?;
            self.audit(self.entry(id, &s.case_id, AuditStep::Skipped, why))
                .await;
            return Ok(Disposition::Ack);
        }

        let content = Content::of_start(&s);
        let b = Broadcast {
            id,
            case_id: &s.case_id,
            communication_type: meta.communication_type,
            accepted_at: cmd.accepted_at,
            content: &content,
        };
        let (jobs, problems) = self.plan(&b, &people, |_| true, Wave::Start { sms: s.sms });
        let planned = began.elapsed();
        let phones: Vec<(String, usize)> = if s.sms {
            people
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((state::phone_hash(p.as_ref()?.phone.as_deref()?), i)))
                .collect()
        } else {
            Vec::new()
        };
        self.store.queued(id, &fields(id, &jobs), &phones).await?;
        self.timers
            .schedule_many(&schedule(
                id,
                meta.started_at,
                Duration::from_secs(meta.interval_s.max(1)),
                meta.cycles_total,
                (meta.ends_at - meta.started_at)
                    .to_std()
                    .unwrap_or_default(),
            ))
            .await?;
        if !self.store.activate(id).await? && meta.state != BroadcastState::Active {
            info!(
                broadcast_id = id,
                "cancelled while starting; nothing published"
            );
            return Ok(Disposition::Ack);
        }
        let recorded = began.elapsed();
        self.publish(&jobs).await?;
        let published = began.elapsed();
        self.store.cycle_begun(id, 1).await?;
        self.store.set_field(id, "published", "1").await?;
        self.metrics.event("started");

        let count = |ch: Channel| jobs.iter().filter(|j| j.channel == ch as i32).count();
        let without = |ch: Channel| {
            people
                .iter()
                .flatten()
                .filter(|p| p.address(ch).is_none())
                .count()
        };
        let gone = missing.len() + people.iter().filter(|p| p.is_none()).count();
        let mut summary = format!(
            "started by {}: {} recipient(s); {} email(s), {} call(s), {} SMS; {} call cycle(s) {}s apart, running {}s",
            cmd.actor,
            people.len(),
            count(Channel::Email),
            count(Channel::Voice),
            count(Channel::Sms),
            meta.cycles_total,
            meta.interval_s,
            (meta.ends_at - meta.started_at).num_seconds(),
        );
        for (n, what) in [
            (without(Channel::Voice), "without a phone number"),
            (without(Channel::Email), "without an email address"),
            (gone, "no longer in the directory"),
        ] {
            if n > 0 {
                summary.push_str(&format!("; {n} {what}"));
            }
        }
        let mut entries = vec![
            Entry {
                actor: Some(cmd.actor.clone()),
                record_id: Some(format!("{id}-started")),
                ..self.entry(id, &s.case_id, AuditStep::Broadcast, summary)
            }
            .attr("severity", s.severity)
            .attr("recipients", people.len()),
        ];
        for why in problems {
            entries.push(self.entry(id, &s.case_id, AuditStep::Skipped, why));
        }
        for m in &missing {
            entries.push(Entry {
                contact_id: m.clone(),
                ..self.entry(
                    id,
                    &s.case_id,
                    AuditStep::Skipped,
                    format!("contact {m} is no longer in the directory"),
                )
            });
        }
        for chunk in entries.chunks(500) {
            if let Err(e) = async {
                let ack = self.auditor.record_all(chunk.to_vec()).await?;
                bus::confirm(subjects::audit_all().into(), ack).await
            }
            .await
            {
                warn!(error = %e, "broadcast start not fully documented");
            }
        }
        info!(
            broadcast_id = id,
            recipients = people.len(),
            jobs = jobs.len(),
            expand_ms = expanded.as_millis() as u64,
            plan_ms = (planned - expanded).as_millis() as u64,
            record_ms = (recorded - planned).as_millis() as u64,
            publish_ms = (published - recorded).as_millis() as u64,
            "broadcast started"
        );
        Ok(Disposition::Ack)
    }

    /// The jobs of `wave` for the people `pick` selects, and the reasons
    /// any could not be built.
    fn plan(
        &self,
        b: &Broadcast<'_>,
        people: &[Option<Contact>],
        pick: impl Fn(usize) -> bool,
        wave: Wave,
    ) -> (Vec<DeliveryJob>, Vec<String>) {
        let planner = Planner {
            signer: &self.signer,
            templates: &self.templates,
        };
        let mut jobs = Vec::new();
        let mut problems = Vec::new();
        for (i, p) in people.iter().enumerate() {
            let Some(p) = p.as_ref().filter(|_| pick(i)) else {
                continue;
            };
            for j in planner.jobs(b, i, p, wave) {
                match j {
                    Ok(j) => jobs.push(j),
                    Err(why) => problems.push(format!("not sent: {why}")),
                }
            }
        }
        (jobs, problems)
    }

    /// Publishes jobs to the emergency delivery stream and waits until
    /// JetStream has them all.
    async fn publish(&self, jobs: &[DeliveryJob]) -> anyhow::Result<()> {
        let mut pending = Vec::with_capacity(jobs.len());
        for job in jobs {
            let channel = Channel::try_from(job.channel).unwrap_or_default();
            let subject = subjects::delivery_job(Lane::Emergency, channel);
            pending.push((
                subject.clone(),
                self.bus.publish(subject, job, Some(&job.job_id)).await?,
            ));
            self.metrics
                .jobs
                .get_or_create(&ChannelLabel {
                    channel: channel.name().into(),
                })
                .inc();
        }
        for (subject, ack) in pending {
            bus::confirm(subject, ack).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        cmd: &BroadcastCommand,
        u: UpdateBroadcast,
    ) -> anyhow::Result<Disposition> {
        let id = u.broadcast_id.as_str();
        let Some(meta) = self.store.meta(id).await? else {
            // The start is still on its way.
            return Ok(Disposition::Retry(Duration::from_secs(1)));
        };
        match meta.state {
            BroadcastState::Active => {}
            BroadcastState::Starting | BroadcastState::Unspecified => {
                return Ok(Disposition::Retry(Duration::from_secs(1)));
            }
            other => {
                self.audit(self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Broadcast,
                    format!(
                        "update from {} not sent: the broadcast is {}",
                        cmd.actor,
                        other.name()
                    ),
                ))
                .await;
                return Ok(Disposition::Ack);
            }
        }
        let (_, n) = self
            .store
            .update(id, &cmd.command_id, &u.encode_to_vec())
            .await?;
        let people = plan::lookup(&self.directory, &self.store.people(id).await?).await?;
        let content = Content::of_update(&u);
        let b = Broadcast {
            id,
            case_id: &meta.case_id,
            communication_type: meta.communication_type,
            accepted_at: cmd.accepted_at,
            content: &content,
        };
        let (jobs, problems) = self.plan(&b, &people, |_| true, Wave::Update { n, sms: meta.sms });
        self.store.queued(id, &fields(id, &jobs), &[]).await?;
        self.publish(&jobs).await?;
        self.metrics.event("updated");
        self.audit(Entry {
            actor: Some(cmd.actor.clone()),
            record_id: Some(format!("{id}-u{n}")),
            ..self.entry(
                id,
                &meta.case_id,
                AuditStep::Broadcast,
                format!(
                    "update {n} from {} sent to {} recipient(s) ({} job(s)){}",
                    cmd.actor,
                    people.iter().flatten().count(),
                    jobs.len(),
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", problems.join("; "))
                    }
                ),
            )
        })
        .await;
        Ok(Disposition::Ack)
    }

    async fn cancel(
        &self,
        cmd: &BroadcastCommand,
        c: CancelBroadcast,
    ) -> anyhow::Result<Disposition> {
        let id = c.broadcast_id.as_str();
        let why = if c.reason.trim().is_empty() {
            format!("cancelled by {}", cmd.actor)
        } else {
            format!("cancelled by {}: {}", cmd.actor, c.reason.trim())
        };
        Stop::key(broadcasts::cancel_key(id), &why)
            .send(&self.bus)
            .await?;
        self.end(id, BroadcastState::Cancelled, &why, Some(&cmd.actor))
            .await?;
        Ok(Disposition::Ack)
    }

    /// Ends a broadcast once: stops its timers, stops what is still waiting
    /// in delivery (unless it ended because everyone confirmed), forgets
    /// its phone numbers, and documents every recipient's outcome.
    async fn end(
        &self,
        id: &str,
        state: BroadcastState,
        why: &str,
        actor: Option<&str>,
    ) -> anyhow::Result<()> {
        let now = self.clock.now();
        let reason = if state == BroadcastState::Cancelled {
            why
        } else {
            ""
        };
        if !self.store.finish(id, state, now, reason).await? {
            return Ok(());
        }
        let meta = self.store.meta(id).await?.unwrap_or_default();
        for (timer, _) in schedule(
            id,
            now,
            Duration::from_secs(1),
            meta.cycles_total,
            Duration::ZERO,
        ) {
            self.timers.cancel(&timer).await?;
        }
        let everyone_confirmed = why == EVERYONE_CONFIRMED;
        if !everyone_confirmed {
            Stop::key(broadcasts::cancel_key(id), why)
                .send(&self.bus)
                .await?;
        }
        self.store.retire(id).await?;
        self.metrics.event(state.name());
        let status = self.view(id, true).await?;
        let mut entries = vec![
            Entry {
                actor: actor.map(str::to_string),
                record_id: Some(format!("{id}-ended")),
                ..self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Broadcast,
                    format!(
                        "{} ({why}): {} of {} confirmed, {} not confirmed, {} unreachable",
                        state.name(),
                        status.confirmed,
                        status.recipients,
                        status.not_confirmed,
                        status.unreachable
                    ),
                )
            }
            .attr("confirmed", status.confirmed)
            .attr("not_confirmed", status.not_confirmed)
            .attr("unreachable", status.unreachable),
        ];
        for (i, r) in status.recipient_rows.iter().enumerate() {
            if r.confirmed {
                continue;
            }
            entries.push(Entry {
                contact_id: r.contact_id.clone(),
                record_id: Some(format!("{id}-r{i}-outcome")),
                ..self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Broadcast,
                    format!(
                        "recipient r{i}: {} (email {}, calls {} ({}), sms {})",
                        r.outcome.replace('_', " "),
                        r.email,
                        r.calls,
                        r.voice,
                        r.sms
                    ),
                )
            });
        }
        for chunk in entries.chunks(500) {
            let ack = self.auditor.record_all(chunk.to_vec()).await?;
            bus::confirm(subjects::audit_all().into(), ack).await?;
        }
        info!(broadcast_id = id, state = state.name(), "broadcast ended");
        Ok(())
    }

    /// Fires due timers: call cycles and ends. Returns the ids handled.
    async fn fire(&self, batch: Vec<Due>) -> Vec<String> {
        let _busy = self.precedence.busy();
        let mut done = Vec::new();
        for due in batch {
            let result = match parse_timer(&due.id) {
                Some(TimerKind::Cycle(id, k)) => self.recall(id, k).await,
                Some(TimerKind::End(id)) => {
                    self.end(id, BroadcastState::Finished, "its duration is over", None)
                        .await
                }
                None => Ok(()),
            };
            match result {
                Ok(()) => done.push(due.id),
                Err(e) => {
                    warn!(timer = %due.id, error = %e, "broadcast timer failed; it fires again")
                }
            }
        }
        done
    }

    /// Call cycle `k`: everyone who has not confirmed is called again.
    async fn recall(&self, id: &str, k: u32) -> anyhow::Result<()> {
        let Some(meta) = self.store.meta(id).await? else {
            return Ok(());
        };
        if meta.state != BroadcastState::Active {
            return Ok(());
        }
        let confirmed = self.store.confirmed(id).await?;
        let people = plan::lookup(&self.directory, &self.store.people(id).await?).await?;
        let (start, update) = self.store.content(id).await?;
        let content = match update {
            Some(u) => Content::of_update(&UpdateBroadcast::decode(u.as_slice())?),
            None => Content::of_start(&StartBroadcast::decode(start.as_slice())?),
        };
        let b = Broadcast {
            id,
            case_id: &meta.case_id,
            communication_type: meta.communication_type,
            accepted_at: None,
            content: &content,
        };
        let (jobs, problems) = self.plan(
            &b,
            &people,
            |i| !confirmed.contains_key(&i),
            Wave::Recall(k),
        );
        self.store.queued(id, &fields(id, &jobs), &[]).await?;
        self.publish(&jobs).await?;
        self.store.cycle_begun(id, k).await?;
        self.metrics.event("recalled");
        self.audit(Entry {
            record_id: Some(format!("{id}-c{k}")),
            ..self.entry(
                id,
                &meta.case_id,
                AuditStep::Broadcast,
                format!(
                    "call cycle {k} of {}: {} unconfirmed recipient(s) called again, {} confirmed{}",
                    meta.cycles_total,
                    jobs.len(),
                    confirmed.len(),
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", problems.join("; "))
                    }
                ),
            )
        })
        .await;
        Ok(())
    }

    /// A delivery status of one of the broadcast's jobs.
    async fn status_event(&self, msg: jetstream::Message) -> Disposition {
        let Ok(status) = DeliveryStatus::decode(msg.payload.clone()) else {
            return Disposition::Reject;
        };
        let channel = Channel::try_from(status.channel).unwrap_or_default();
        let (Some(field), Some(progress)) = (
            plan::progress_field(&status.broadcast_id, &status.job_id),
            progress_of(
                channel,
                DeliveryState::try_from(status.state).unwrap_or_default(),
            ),
        ) else {
            return Disposition::Ack;
        };
        match self
            .store
            .progress(&status.broadcast_id, &field, progress)
            .await
        {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                warn!(error = %e, "broadcast progress not recorded; will retry");
                Disposition::Retry(Duration::from_secs(1))
            }
        }
    }

    /// Records a confirmation, stops the person's further calls and SMS,
    /// documents it, and ends the broadcast if everyone has confirmed.
    pub(crate) async fn confirm(
        &self,
        id: &str,
        recipient: usize,
        via: Channel,
        how: &str,
    ) -> anyhow::Result<Confirmed> {
        let outcome = self
            .store
            .confirm(id, recipient, via, self.clock.now())
            .await?;
        if matches!(outcome, Confirmed::New { .. } | Confirmed::Already) {
            // Again on a repeat: the first time may have stopped short.
            Stop::key(
                broadcasts::recipient_cancel_key(id, recipient),
                format!("recipient confirmed receipt by {how}"),
            )
            .send(&self.bus)
            .await?;
        }
        if let Confirmed::New {
            confirmed,
            recipients,
        } = outcome
        {
            let contact = self.store.person(id, recipient).await?.unwrap_or_default();
            let meta = self.store.meta(id).await?.unwrap_or_default();
            self.metrics
                .confirmations
                .get_or_create(&ChannelLabel {
                    channel: via.name().into(),
                })
                .inc();
            self.audit(Entry {
                contact_id: contact.clone(),
                channel: via,
                actor: Some(format!("contact:{contact}")),
                record_id: Some(format!("{id}-r{recipient}-confirmed")),
                ..self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Confirmed,
                    format!(
                        "recipient r{recipient} confirmed receipt by {how} ({confirmed} of {recipients})"
                    ),
                )
            })
            .await;
            info!(broadcast_id = id, recipient, via = via.name(), "confirmed");
            if confirmed >= recipients {
                self.end(id, BroadcastState::Finished, EVERYONE_CONFIRMED, None)
                    .await?;
            }
        }
        Ok(outcome)
    }

    /// The status of a broadcast; `None` if there is none by that id.
    async fn view(
        &self,
        id: &str,
        rows: bool,
    ) -> anyhow::Result<herald_proto::v1::BroadcastStatus> {
        let meta = self.store.meta(id).await?.unwrap_or_default();
        let people = self.store.people(id).await?;
        let jobs = self.store.jobs(id).await?;
        let confirmed = self.store.confirmed(id).await?;
        Ok(view::build(id, &meta, &people, &jobs, &confirmed, rows))
    }

    async fn status_reply(&self, payload: &[u8]) -> BroadcastStatusReply {
        let refuse = |code: ErrorCode, field: &str, message: &str| BroadcastStatusReply {
            result: Some(broadcast_status_reply::Result::Rejected(Rejected {
                code: code as i32,
                field: field.into(),
                message: message.into(),
            })),
        };
        let req = match BroadcastStatusRequest::decode(payload) {
            Ok(r) => r,
            Err(_) => {
                return refuse(
                    ErrorCode::Undecodable,
                    "",
                    "not a herald.v1.BroadcastStatusRequest",
                );
            }
        };
        if coordinators::authenticate(&self.cfg.coordinators, &req.credential).is_none() {
            return refuse(
                ErrorCode::Unauthorized,
                "credential",
                "is not a coordinator credential: a broadcast's status is shown to coordinators only",
            );
        }
        if broadcasts::check_id(&req.broadcast_id).is_err() {
            return refuse(
                ErrorCode::InvalidArgument,
                "broadcast_id",
                "is not a broadcast id",
            );
        }
        match self.store.meta(&req.broadcast_id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return refuse(
                    ErrorCode::NotFound,
                    "broadcast_id",
                    "no such broadcast (not started yet, or ended more than 30 days ago)",
                );
            }
            Err(e) => {
                error!(error = %e, "broadcast state unreadable");
                return refuse(
                    ErrorCode::Unavailable,
                    "",
                    "Herald cannot read the broadcast just now; ask again",
                );
            }
        }
        match self.view(&req.broadcast_id, req.recipients).await {
            Ok(status) => BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Status(status)),
            },
            Err(e) => {
                error!(error = %e, "broadcast state unreadable");
                refuse(
                    ErrorCode::Unavailable,
                    "",
                    "Herald cannot read the broadcast just now; ask again",
                )
            }
        }
    }
}

/// Why a broadcast ended early, with nothing left to stop.
const EVERYONE_CONFIRMED: &str = "everyone confirmed";

/// The progress fields of jobs.
fn fields(broadcast_id: &str, jobs: &[DeliveryJob]) -> Vec<String> {
    jobs.iter()
        .filter_map(|j| plan::progress_field(broadcast_id, &j.job_id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cycles_follow_the_start_at_each_interval_and_the_end_follows_the_duration() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 6, 17, 0, 0).unwrap();
        let s = schedule(
            "fire",
            t0,
            Duration::from_secs(300),
            3,
            Duration::from_secs(3600),
        );
        let want = vec![
            ("fire|c2".to_string(), t0 + TimeDelta::minutes(5)),
            ("fire|c3".to_string(), t0 + TimeDelta::minutes(10)),
            ("fire|end".to_string(), t0 + TimeDelta::hours(1)),
        ];
        assert_eq!(s, want);
        assert_eq!(
            schedule("x", t0, Duration::from_secs(60), 1, Duration::from_secs(60)).len(),
            1
        );
        assert_eq!(parse_timer("fire|c3"), Some(TimerKind::Cycle("fire", 3)));
        assert_eq!(parse_timer("a|b|end"), Some(TimerKind::End("a|b")));
        assert_eq!(parse_timer("fire|x"), None);
    }

    #[test]
    fn statuses_map_onto_progress() {
        assert_eq!(
            progress_of(Channel::Email, DeliveryState::Sent),
            Some("delivered")
        );
        assert_eq!(
            progress_of(Channel::Voice, DeliveryState::Sent),
            Some("sent")
        );
        assert_eq!(
            progress_of(Channel::Voice, DeliveryState::NoAnswer),
            Some("undelivered")
        );
        assert_eq!(
            progress_of(Channel::Voice, DeliveryState::Completed),
            Some("delivered")
        );
        assert_eq!(progress_of(Channel::Sms, DeliveryState::Retrying), None);
    }
}
