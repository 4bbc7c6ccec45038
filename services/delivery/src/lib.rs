//! delivery: sends each job over its channel, exactly as far as Herald can
//! make it so.
//!
//! For each job, in this order:
//!
//! 1. the send ledger ([`ledger`]) is asked whether the job was already
//!    sent or handed on (a redelivery): if so it is acknowledged, no more;
//! 2. the rate limits ([`limits`]) are honoured: the person's window on the
//!    channel, a connection to the provider, the provider's pace and any
//!    pause it asked for. Waiting is never dropping: a short wait is slept,
//!    a long one returns the job to JetStream with that delay;
//! 3. the job is claimed in the ledger, sent within `attempt_timeout`
//!    ([`transport`] classifies every failure, in one place), and recorded
//!    as sent, in the ledger and in the trail (one record that carries the
//!    job's `Sent` status), before JetStream is acknowledged;
//! 4. a transient failure goes back to JetStream with a delay from the
//!    retry schedule (or the provider's `Retry-After`, whichever is
//!    longer); a permanent one, or one that outlives the schedule or
//!    `give_up_after`, is handed on: to the recipient's next channel, or,
//!    with nowhere left to go, to the dead-letter stream with its history.
//!
//! Provider status callbacks ([`status`]) arrive on the HTTP port and feed
//! the same ledger and the same hand-on. Every step is in the audit trail,
//! each change of a job's state as the `DeliveryStatus` its record carries;
//! a broadcast job's statuses are also published for the broadcast service.
//!
//! On shutdown the consumers stop pulling; sends under way finish (each is
//! bounded by `attempt_timeout`, inside the grace period) and jobs still
//! waiting on a limit are returned to JetStream at once for another
//! instance.

pub mod cancel;
mod handoff;
pub mod holds;
pub mod inbound;
pub mod ledger;
pub mod limits;
mod metrics;
mod report;
mod retry;
pub mod smtp;
pub mod status;
mod stop;
pub mod transport;
mod worker;

use std::{sync::Arc, time::Duration};

use herald_config::{Config, DeliveryConfig};
use herald_proto::{
    Message, subjects,
    v1::{Channel, DeliveryJob, Lane},
};
use herald_runtime::{
    audit::Auditor,
    bus::{Bus, ConsumerSpec, Gate},
    metrics::Queue,
    priority::Precedence,
    serve::ServeOptions,
    service::ServiceBuilder,
};
use tokio_util::sync::CancellationToken;

use crate::{
    cancel::Cancellations, ledger::Ledger, limits::Limits, metrics::Metrics, transport::Transports,
};

/// Everything a worker and the status endpoint share: a handle, so that
/// each job's task takes a reference, not a copy of the ledger's and the
/// limits' scripts.
#[derive(Clone)]
struct Delivery(Arc<Shared>);

impl std::ops::Deref for Delivery {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

struct Shared {
    bus: Bus,
    ledger: Ledger,
    limits: Limits,
    cancellations: Cancellations,
    /// What replies may answer (`inbound.rs`).
    replies: inbound::Replies,
    transports: Arc<Transports>,
    auditor: Auditor,
    cfg: Arc<DeliveryConfig>,
    metrics: Arc<Metrics>,
    /// Waits on limits end early on shutdown, returning the job.
    shutdown: CancellationToken,
    /// How often a job waiting on a limit tells JetStream it is still being
    /// worked on, so it is not redelivered meanwhile.
    keepalive: Duration,
    /// The normal lane yields to emergency jobs; an emergency job waiting on
    /// a limit steps aside.
    priority: Precedence,
}

pub use handoff::fallback_job_id;
pub use herald_runtime::service::Running;

/// Jobs taken from the stream at once, at most (never waited for).
const BATCH: usize = 64;

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    herald_runtime::install_crypto();
    let transports = Transports::new(&cfg.delivery)?;
    let mut service = ServiceBuilder::connect("delivery", &cfg, &shutdown).await?;
    let priority = service.precedence();
    let owner = herald_proto::ids::owner_id();
    // The lease outlives the longest attempt, so a live worker is never
    // mistaken for a dead one.
    let lease = cfg.delivery.attempt_timeout * 2 + Duration::from_secs(5);
    let ack_wait = cfg.nats.ack_wait.max(lease);
    let redis = service.redis.clone();
    let delivery = Delivery(Arc::new(Shared {
        bus: service.bus.clone(),
        ledger: Ledger::new(
            redis.clone(),
            &cfg.redis.prefix,
            &owner,
            lease,
            cfg.delivery.sent_ttl,
        ),
        cancellations: Cancellations::new(redis.clone(), &cfg.redis.prefix),
        replies: inbound::Replies::new(redis.clone(), &cfg.redis.prefix, cfg.delivery.sent_ttl),
        limits: Limits::new(redis, &cfg.redis.prefix, &cfg.delivery),
        transports: Arc::new(transports),
        auditor: Auditor::new(service.bus.clone(), "delivery"),
        cfg: Arc::new(cfg.delivery.clone()),
        metrics: Arc::new(Metrics::register(&mut service.registry)),
        shutdown: shutdown.clone(),
        keepalive: ack_wait / 3,
        priority,
    }));
    service.watch([
        Queue::stream(subjects::STREAM_DLQ),
        Queue::consumer(subjects::STREAM_STOPS, "delivery-stops"),
    ]);
    // Stops first. The desk answers before the stream is caught up with,
    // so a stop whose asker heard nobody answer is in the stream by then;
    // and every stop in the stream is in force before any job is taken.
    let cancellations = delivery.cancellations.clone();
    service
        .serve(
            &[subjects::DELIVERY_STOP],
            subjects::QUEUE_DELIVERY,
            ServeOptions::new(64),
            move |msg| {
                let cancellations = cancellations.clone();
                async move {
                    Some(
                        stop::answer(&cancellations, &msg.payload)
                            .await
                            .encode_to_vec()
                            .into(),
                    )
                }
            },
        )
        .await?;
    service.bus.client.flush().await?;
    let stops = stop::stream_consumer(cfg.nats.ack_wait);
    stop::catch_up(&service.bus, &delivery.cancellations, &stops).await?;
    let cancellations = delivery.cancellations.clone();
    service.consume(stops, Gate::None, Duration::from_secs(5), move |msg| {
        let cancellations = cancellations.clone();
        async move { stop::from_stream(&cancellations, msg).await }
    });
    service.public_routes(
        cfg.delivery.public(),
        status::routes(delivery.clone()).merge(inbound::routes(delivery.clone())),
    );
    for lane in Lane::ALL {
        let durable = format!("delivery-{}", lane.name());
        service.watch([Queue::consumer(subjects::delivery_stream(lane), &durable)]);
        let spec = ConsumerSpec {
            stream: subjects::delivery_stream(lane).to_string(),
            durable,
            filter: subjects::delivery_jobs(lane),
            concurrency: cfg.delivery.concurrency,
            // Longer than one attempt, so a slow provider does not cause a
            // redelivery while the first try is still running.
            ack_wait,
            max_deliver: -1,
        };
        // Every send under way ends within attempt_timeout.
        let grace = cfg.delivery.attempt_timeout + Duration::from_secs(2);
        let gate = service.lane_gate(lane);
        let d = delivery.clone();
        // The jobs that are ready together are worked in one task: their
        // claims, ledger writes and trail records reach Redis and NATS
        // together, and each job is still settled on its own answer.
        service.consume_batches(spec, gate, BATCH, grace, move |msgs| {
            let d = d.clone();
            async move { futures::future::join_all(msgs.into_iter().map(|m| d.handle(m))).await }
        });
    }
    // Its part of erasing a person (SOP 003 §6.5), asked by intake.
    service.serve_erasure(&cfg.redis.prefix, None).await?;
    service.start(&cfg.delivery.http_addr).await
}

fn channel_of(job: &DeliveryJob) -> Channel {
    Channel::try_from(job.channel).unwrap_or_default()
}
