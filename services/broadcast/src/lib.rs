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

mod commands;
mod confirm;
mod cycles;
pub mod link;
mod metrics;
pub mod plan;
mod progress;
pub mod state;
pub mod view;

pub use cycles::schedule;
pub use progress::progress_of;

use std::{sync::Arc, time::Duration};

use herald_config::{BroadcastConfig, Config};
use herald_content::templates::TemplateStore;
use herald_directory::{contacts::Directory, groups::Groups};
use herald_durable::timers::{self, RunOptions, Timers};
use herald_proto::broadcasts;
use herald_proto::{
    Message, subjects,
    v1::{AuditStep, Channel, Lane},
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::{Bus, ConsumerSpec},
    clock::{Clock, SystemClock},
    metrics::Queue,
    priority::Precedence,
};
use herald_runtime::{bus::Gate, serve::ServeOptions, service::ServiceBuilder};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{link::Signer, metrics::Metrics, state::Store};

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
    /// (`delivery.provider_token`, or `delivery.provider_signing_key` for
    /// those signed with a shared key).
    provider_keys: herald_content::signature::ProviderKeys,
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
        provider_keys: herald_content::signature::ProviderKeys::from_config(&cfg.delivery),
        precedence: precedence.clone(),
    };
    service.watch([
        Queue::consumer(subjects::STREAM_BROADCAST, COMMANDS),
        Queue::consumer(subjects::STREAM_STATUS, STATUSES),
        Queue::consumer(subjects::STREAM_INBOUND, INBOUND),
    ]);
    service.public_routes(cfg.broadcast.public(), confirm::routes(broadcasts.clone()));
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
    let inbound = ConsumerSpec {
        stream: subjects::STREAM_INBOUND.into(),
        durable: INBOUND.into(),
        filter: subjects::inbound(Channel::Sms),
        concurrency: cfg.broadcast.concurrency,
        ack_wait: cfg.nats.ack_wait,
        max_deliver: -1,
    };
    let b = broadcasts.clone();
    // Confirmations are what stops the calls: they do not wait behind
    // the broadcast's own sends.
    service.consume(inbound, Gate::None, Duration::from_secs(10), move |msg| {
        let b = b.clone();
        async move { b.inbound(msg).await }
    });
    let b = broadcasts.clone();
    let timer_options = RunOptions {
        batch: 100,
        lease: cfg.broadcast.lease,
        poll: Duration::from_millis(200),
    };
    let stop = shutdown.clone();
    service.spawn(timers::run(
        broadcasts.timers.clone(),
        broadcasts.clock.clone(),
        timer_options,
        stop,
        move |batch| {
            let b = b.clone();
            async move { b.fire(batch).await }
        },
    ));
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
    // Its part of erasing a person (SOP 003 §6.5), asked by intake.
    service
        .serve_erasure(&cfg.redis.prefix, Some(state::phone_hashes))
        .await?;
    service.start(&cfg.broadcast.http_addr).await
}

/// The durable consumers of broadcast commands, of the status events of
/// broadcast jobs and of people's SMS replies.
const COMMANDS: &str = "broadcast-commands";
const STATUSES: &str = "broadcast-statuses";
const INBOUND: &str = "broadcast-inbound";

/// The trail of a broadcast: every record is under its id, on the
/// emergency lane.
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
}
