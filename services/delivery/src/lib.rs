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
//!    as sent before JetStream is acknowledged;
//! 4. a transient failure goes back to JetStream with a delay from the
//!    retry schedule (or the provider's `Retry-After`, whichever is
//!    longer); a permanent one, or one that outlives the schedule or
//!    `give_up_after`, is handed on: to the recipient's next channel, or,
//!    with nowhere left to go, to the dead-letter stream with its history.
//!
//! Provider status callbacks ([`status`]) arrive on the HTTP port and feed
//! the same ledger and the same hand-on. Every step is in the audit trail
//! and published as a `DeliveryStatus` event.
//!
//! On shutdown the consumers stop pulling; sends under way finish (each is
//! bounded by `attempt_timeout`, inside the grace period) and jobs still
//! waiting on a limit are returned to JetStream at once for another
//! instance.

pub mod cancel;
mod handoff;
pub mod ledger;
pub mod limits;
mod metrics;
mod report;
mod retry;
pub mod smtp;
pub mod status;
mod stop;
pub mod transport;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_nats::jetstream::{self, AckKind};
use herald_config::{Config, DeliveryConfig};
use herald_proto::{
    Message, subjects,
    v1::{AuditStep, Channel, DeliveryJob, DeliveryState, Lane},
};
use herald_runtime::retry::Backoff;
use herald_runtime::serve::ServeOptions;
use herald_runtime::service::ServiceBuilder;
use herald_runtime::{
    audit::Auditor,
    bus::{self, Bus, ConsumerSpec, Disposition, Gate},
    metrics::{ChannelOutcome, LaneLabel, Queue, ReasonLabel},
    priority::Precedence,
    telemetry::record_outcome,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::{
    cancel::Cancellations,
    ledger::{Claim, Ledger, Peek},
    limits::{Limits, Pace},
    metrics::Metrics,
    retry::history_line,
    transport::{SendError, Transports},
};

/// Everything a worker and the status endpoint share.
#[derive(Clone)]
struct Delivery {
    bus: Bus,
    ledger: Ledger,
    limits: Limits,
    cancellations: Cancellations,
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
    let delivery = Delivery {
        bus: service.bus.clone(),
        ledger: Ledger::new(
            redis.clone(),
            &cfg.redis.prefix,
            &owner,
            lease,
            cfg.delivery.sent_ttl,
        ),
        cancellations: Cancellations::new(redis.clone(), &cfg.redis.prefix),
        limits: Limits::new(redis, &cfg.redis.prefix, &cfg.delivery),
        transports: Arc::new(transports),
        auditor: Auditor::new(service.bus.clone(), "delivery"),
        cfg: Arc::new(cfg.delivery.clone()),
        metrics: Arc::new(Metrics::register(&mut service.registry)),
        shutdown: shutdown.clone(),
        keepalive: ack_wait / 3,
        priority,
    };
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
    service.routes(status::routes(delivery.clone()));
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
        service.consume(spec, gate, grace, move |msg| {
            let d = d.clone();
            async move { d.handle(msg).await }
        });
    }
    service.start(&cfg.delivery.http_addr).await
}

impl Delivery {
    async fn handle(&self, msg: jetstream::Message) -> Disposition {
        let span = bus::process_span("delivery send", &msg);
        async {
            let job = match DeliveryJob::decode(msg.payload.clone()) {
                Ok(j) => j,
                Err(e) => {
                    error!(error = %e, "undecodable delivery job dropped");
                    return Disposition::Reject;
                }
            };
            let span = tracing::Span::current();
            span.record("notification_id", job.notification_id.as_str());
            span.record("case_id", job.case_id.as_str());
            span.record("job_id", job.job_id.as_str());
            span.record("channel", channel_of(&job).name());
            self.process(&job, &msg).await
        }
        .instrument(span)
        .await
    }

    /// Runs `fut`, telling JetStream now and then that the message is still
    /// being worked on. `None` if shutdown came first. An emergency job
    /// steps aside meanwhile: waiting is not work the normal lane must
    /// yield to.
    async fn hold<F: Future>(
        &self,
        lane: Lane,
        msg: &jetstream::Message,
        fut: F,
    ) -> Option<F::Output> {
        let _parked = (lane == Lane::Emergency).then(|| self.priority.park());
        let mut fut = std::pin::pin!(fut);
        let mut tick = tokio::time::interval(self.keepalive.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = self.shutdown.cancelled() => return None,
                _ = tick.tick() => {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            }
        }
    }

    fn held(&self, lane: Lane, hold: limits::Hold) {
        self.metrics
            .held
            .get_or_create(&ReasonLabel {
                lane: lane.name().into(),
                reason: hold.name().into(),
            })
            .inc();
    }

    async fn process(&self, job: &DeliveryJob, msg: &jetstream::Message) -> Disposition {
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        let channel = channel_of(job);

        // 1. A redelivery of a finished job ends here, before any limit. A
        //    first delivery skips the question: the claim below answers it
        //    too, and a job is almost never finished before it is delivered.
        let peek = if bus::delivery_count(msg) > 1 {
            self.ledger.peek(&job.job_id).await
        } else {
            Ok(Peek::Open)
        };
        match peek {
            Ok(Peek::Sent {
                provider_id,
                attempts,
            }) => return self.already_sent(job, attempts, provider_id).await,
            Ok(Peek::Failed) => {
                record_outcome(&tracing::Span::current(), "already_failed", false);
                return Disposition::Ack;
            }
            Ok(Peek::Open | Peek::Sending) => {}
            Err(e) => {
                warn!(error = %e, "send ledger unavailable; will retry");
                return Disposition::Retry(Duration::from_secs(1));
            }
        }

        // 2. Limits: the person, then the provider.
        match self.limits.contact(job, channel).await {
            Ok(Pace::Go(_)) => {}
            Ok(Pace::Later(wait, hold)) => {
                self.held(lane, hold);
                info!(
                    wait_ms = wait.as_millis() as u64,
                    "contact's window is full; job returns when it has room"
                );
                return Disposition::Retry(wait);
            }
            Err(e) => {
                warn!(error = %e, "rate limits unavailable; will retry");
                return Disposition::Retry(Duration::from_secs(1));
            }
        }
        let Some(connection) = self
            .hold(lane, msg, self.limits.connection(channel, lane))
            .await
        else {
            return Disposition::Retry(Duration::ZERO);
        };
        match self.limits.provider(channel, lane).await {
            Ok(Pace::Go(wait)) => {
                if !wait.is_zero() {
                    self.held(lane, limits::Hold::Provider);
                    if self
                        .hold(lane, msg, tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return Disposition::Retry(Duration::ZERO);
                    }
                    if let Ok(pause) = self.limits.paused(channel).await
                        && !pause.is_zero()
                    {
                        self.held(lane, limits::Hold::Paused);
                        return Disposition::Retry(pause);
                    }
                }
            }
            Ok(Pace::Later(wait, hold)) => {
                self.held(lane, hold);
                if hold == limits::Hold::Paused && self.past_time_limit(job, wait) {
                    // A provider that keeps asking for quiet must not hold
                    // a job past its total time limit: hand it on instead.
                    drop(connection);
                    let attempts = self.ledger.attempts(&job.job_id).await.unwrap_or(0);
                    return self
                        .give_up(
                            job,
                            attempts,
                            format!(
                                "the {} provider asked for {:.0}s of quiet, beyond the job's time limit",
                                channel.name(),
                                wait.as_secs_f64()
                            ),
                        )
                        .await;
                }
                return Disposition::Retry(wait);
            }
            Err(e) => {
                warn!(error = %e, "rate limits unavailable; will retry");
                return Disposition::Retry(Duration::from_secs(1));
            }
        }

        // 3. Claim and send.
        let callbacks = self.cfg.status_callback_base.is_some()
            && self.cfg.provider_token.is_some()
            && channel != Channel::Email;
        let stored = callbacks.then(|| (job.encode_to_vec(), meta_of(job).encode_to_vec()));
        let claim = self
            .ledger
            .claim(
                &job.job_id,
                stored.as_ref().map(|(j, _)| j.as_slice()),
                stored.as_ref().map(|(_, m)| m.as_slice()),
            )
            .await;
        let attempt = match claim {
            Ok(Claim::Claimed {
                attempt,
                interrupted,
            }) => {
                if interrupted {
                    self.metrics
                        .interrupted
                        .get_or_create(&LaneLabel {
                            lane: lane.name().into(),
                        })
                        .inc();
                    warn!(
                        attempt,
                        "an earlier attempt was interrupted; sending again under the same idempotency key"
                    );
                }
                attempt
            }
            Ok(Claim::Busy(wait)) => {
                record_outcome(&tracing::Span::current(), "busy", false);
                return Disposition::Retry(wait.max(Duration::from_millis(200)));
            }
            Ok(Claim::Sent(provider_id)) => return self.already_sent(job, 0, provider_id).await,
            Ok(Claim::Failed) => {
                record_outcome(&tracing::Span::current(), "already_failed", false);
                return Disposition::Ack;
            }
            Err(e) => {
                record_outcome(&tracing::Span::current(), "ledger_unavailable", false);
                warn!(error = %e, "send ledger unavailable; will retry");
                return Disposition::Retry(Duration::from_secs(1));
            }
        };

        // The last moment a job can still be stopped: a cancel key that
        // was cancelled while it waited (an acknowledged escalation, a
        // cancelled broadcast, a confirmed recipient) ends it here. The
        // check also records the send as under way until the provider
        // answers, so a canceller can wait for it and know nothing carrying
        // the key goes out after that (`Cancellations::wait_idle`).
        if !job.cancel_keys.is_empty() {
            let hold = self.cfg.attempt_timeout + Duration::from_secs(5);
            match self
                .cancellations
                .enter(&job.job_id, &job.cancel_keys, hold)
                .await
            {
                Ok(None) => {}
                Ok(Some((key, reason))) => {
                    return self.cancelled(job, attempt, &key, &reason).await;
                }
                Err(e) => {
                    let _ = self.ledger.release(&job.job_id).await;
                    warn!(error = %e, "cancel keys unreadable; will retry");
                    return Disposition::Retry(Duration::from_secs(1));
                }
            }
        }

        let started = std::time::Instant::now();
        let provider = herald_runtime::telemetry::provider_span(channel.name());
        let result = self
            .transports
            .send(job, self.cfg.attempt_timeout)
            .instrument(provider.clone())
            .await;
        if !job.cancel_keys.is_empty()
            && let Err(e) = self
                .cancellations
                .leave(&job.job_id, &job.cancel_keys)
                .await
        {
            // The hold runs out by itself; a canceller waits that long.
            warn!(error = %e, "could not record the end of a send under cancel keys");
        }
        match &result {
            Ok(_) => record_outcome(&provider, "sent", false),
            Err(e) => record_outcome(&provider, error_kind(e), true),
        }
        // The provider has answered: the slot goes back now, not after the
        // ledger write and the acks below. Kept only through a provider's
        // request for quiet until every worker can see it: the slot cannot
        // pass to one that has not.
        let connection = match &result {
            Err(SendError::Transient {
                retry_after: Some(_),
                ..
            }) => Some(connection),
            _ => {
                drop(connection);
                None
            }
        };
        let label = |outcome: &str| ChannelOutcome {
            lane: lane.name().into(),
            channel: channel.name().into(),
            outcome: outcome.into(),
        };
        self.metrics
            .attempt
            .get_or_create(&label(if result.is_ok() { "sent" } else { "failed" }))
            .observe(started.elapsed().as_secs_f64());

        // 4. Record, retry or hand on.
        match result {
            Ok(sent) => {
                let line = history_line(attempt, "sent", &sent.via);
                if !self
                    .record_sent(&job.job_id, &sent.provider_id, &line)
                    .await
                {
                    // Redis stayed away for half the lease. The claim
                    // stands; once its lease runs out a later delivery
                    // takes the job over and, unable to know better, sends
                    // it again under the same idempotency key: the same
                    // window as a crash after the provider answered.
                    return Disposition::Retry(self.ledger.lease());
                }
                self.document_sent(job, attempt, &sent).await;
                self.metrics.deliveries.get_or_create(&label("sent")).inc();
                record_outcome(&tracing::Span::current(), "sent", false);
                if let Some(accepted) = &job.accepted_at {
                    let e2e = SystemTime::now()
                        .duration_since(herald_proto::system_time(Some(accepted)))
                        .unwrap_or_default();
                    self.metrics
                        .end_to_end
                        .get_or_create(&LaneLabel {
                            lane: lane.name().into(),
                        })
                        .observe(e2e.as_secs_f64());
                }
                Disposition::Ack
            }
            Err(SendError::Transient {
                reason,
                retry_after,
            }) => {
                if let Some(pause) = retry_after.filter(|d| !d.is_zero()) {
                    // The provider asked everyone to hold off, not just this
                    // job: tell the other workers before anything else.
                    if let Err(e) = self.limits.pause(channel, pause).await {
                        warn!(error = %e, "could not record the provider's Retry-After");
                    }
                }
                drop(connection);
                let _ = self
                    .ledger
                    .note_attempt(&job.job_id, history_line(attempt, "transient", &reason))
                    .await;
                match self.next_delay(job, attempt, retry_after) {
                    Some(delay) => {
                        let _ = self.ledger.release(&job.job_id).await;
                        self.metrics
                            .retries
                            .get_or_create(&label("transient"))
                            .inc();
                        record_outcome(&tracing::Span::current(), "retry", false);
                        info!(attempt, delay_ms = delay.as_millis() as u64, %reason, "transient failure; retrying");
                        self.audit(
                            self.entry(
                                job,
                                AuditStep::RetryScheduled,
                                format!(
                                    "attempt {attempt} failed ({reason}); next attempt in {:.1}s",
                                    delay.as_secs_f64()
                                ),
                                format!("{}-a{attempt}-retry", job.job_id),
                            )
                            .attr("attempt", attempt)
                            .attr("delay_ms", delay.as_millis()),
                        )
                        .await;
                        self.status(
                            job,
                            DeliveryState::Retrying,
                            &reason,
                            attempt,
                            &format!("a{attempt}"),
                        )
                        .await;
                        Disposition::Retry(delay)
                    }
                    None => {
                        self.give_up(
                            job,
                            attempt,
                            format!("gave up after {attempt} attempt(s); last: {reason}"),
                        )
                        .await
                    }
                }
            }
            Err(SendError::Permanent { reason }) => {
                let _ = self
                    .ledger
                    .note_attempt(&job.job_id, history_line(attempt, "permanent", &reason))
                    .await;
                self.give_up(job, attempt, reason).await
            }
        }
    }

    /// Writes `sent` to the ledger, trying again for as long as half the
    /// lease (a Redis restart), because until it is written a redelivery
    /// would send the job again.
    async fn record_sent(&self, job_id: &str, provider_id: &str, line: &str) -> bool {
        let deadline = tokio::time::Instant::now() + self.ledger.lease() / 2;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let e = match self.ledger.sent(job_id, provider_id, line).await {
                Ok(()) => return true,
                Err(e) => e,
            };
            let pause = backoff.next_delay();
            if tokio::time::Instant::now() + pause >= deadline {
                error!(error = %e, "sent but not recorded; holding the job under its lease");
                return false;
            }
            warn!(error = %e, "sent but not yet recorded; trying again");
            tokio::time::sleep(pause).await;
        }
    }
}

/// The identifiers of a job without its address or content: what the
/// ledger keeps to document status callbacks.
fn meta_of(job: &DeliveryJob) -> DeliveryJob {
    DeliveryJob {
        job_id: job.job_id.clone(),
        notification_id: job.notification_id.clone(),
        case_id: job.case_id.clone(),
        channel: job.channel,
        lane: job.lane,
        priority: job.priority,
        contact_id: job.contact_id.clone(),
        fallback_of: job.fallback_of.clone(),
        communication_type: job.communication_type,
        broadcast_id: job.broadcast_id.clone(),
        ..Default::default()
    }
}

fn error_kind(e: &SendError) -> &'static str {
    match e {
        SendError::Transient { .. } => "transient_failure",
        SendError::Permanent { .. } => "permanent_failure",
    }
}

fn channel_of(job: &DeliveryJob) -> Channel {
    Channel::try_from(job.channel).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_identifiers_carry_no_address_or_content() {
        let job = DeliveryJob {
            job_id: "j".into(),
            notification_id: "n".into(),
            address: "+447700900123".into(),
            body: "secret".into(),
            subject: "s".into(),
            ..Default::default()
        };
        let meta = meta_of(&job);
        assert_eq!(meta.job_id, "j");
        assert!(meta.address.is_empty() && meta.body.is_empty() && meta.subject.is_empty());
    }
}
