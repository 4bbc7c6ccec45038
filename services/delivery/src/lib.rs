//! delivery: sends each job over its channel, exactly as far as Herald can
//! make it so.
//!
//! A job is claimed in the send ledger (see [`ledger`]) before anything is
//! sent and recorded as sent before JetStream is acknowledged. Transient
//! failures go back to JetStream with a delay from the retry schedule (or the
//! provider's `Retry-After`, whichever is longer); permanent ones, and jobs
//! that run out of attempts, fall back to the recipient's next channel or,
//! with nowhere left to go, land in the dead-letter stream with their
//! history. Every step is in the audit trail.

pub mod ledger;
pub mod transport;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_nats::jetstream;
use herald_proto::{
    Message, subjects,
    v1::{
        Attempt, AuditStep, Channel, DeadLetter, DeliveryJob, DeliveryState, DeliveryStatus, Lane,
    },
};
use herald_runtime::{
    Config,
    audit::{Auditor, Entry},
    bus::{self, Bus, ConsumerSpec, Disposition},
    config::DeliveryConfig,
    health::Health,
    metrics::{ChannelOutcome, LaneLabel, Queue},
    telemetry::record_outcome,
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::{
    ledger::{Claim, Ledger},
    transport::{SendError, Sent, Transports},
};

struct Metrics {
    deliveries: Family<ChannelOutcome, Counter>,
    retries: Family<ChannelOutcome, Counter>,
    suppressed: Family<LaneLabel, Counter>,
    end_to_end: Family<LaneLabel, Histogram>,
    attempt: Family<ChannelOutcome, Histogram>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            deliveries: Family::default(),
            retries: Family::default(),
            suppressed: Family::default(),
            end_to_end: herald_runtime::metrics::latency_family(),
            attempt: herald_runtime::metrics::latency_family(),
        };
        registry.register(
            "delivery_jobs",
            "Jobs finished, by channel and outcome (sent, fallback, dead_lettered)",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_retries",
            "Attempts that will be retried",
            m.retries.clone(),
        );
        registry.register(
            "delivery_duplicates_suppressed",
            "Redelivered jobs recognised as already sent",
            m.suppressed.clone(),
        );
        registry.register(
            "delivery_end_to_end_seconds",
            "From intake accepting the notification to the provider taking the message",
            m.end_to_end.clone(),
        );
        registry.register(
            "delivery_attempt_seconds",
            "Duration of one provider attempt",
            m.attempt.clone(),
        );
        m
    }
}

#[derive(Clone)]
struct Delivery {
    bus: Bus,
    ledger: Ledger,
    transports: Arc<Transports>,
    auditor: Auditor,
    cfg: Arc<DeliveryConfig>,
    metrics: Arc<Metrics>,
}

pub struct Running {
    pub http_addr: SocketAddr,
    pub health: Health,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    herald_runtime::install_crypto();
    let transports = Transports::new(&cfg.delivery)?;
    let bus = Bus::connect(&cfg.nats, "herald-delivery", &shutdown).await?;
    bus.ensure_streams().await?;
    let redis = herald_runtime::store::connect(&cfg.redis, &shutdown).await?;

    let health = Health::new();
    health.watch_nats(&bus);
    health.watch_redis(&redis);
    let mut registry = Registry::with_prefix("herald");
    let owner = format!("{}-{}", std::process::id(), ulid::Ulid::new());
    // The lease outlives the longest attempt, so a live worker is never
    // mistaken for a dead one.
    let lease = cfg.delivery.attempt_timeout * 2 + Duration::from_secs(5);
    let delivery = Delivery {
        bus: bus.clone(),
        ledger: Ledger::new(
            redis,
            &cfg.redis.prefix,
            &owner,
            lease,
            cfg.delivery.sent_ttl,
        ),
        transports: Arc::new(transports),
        auditor: Auditor::new(bus.clone(), "delivery"),
        cfg: Arc::new(cfg.delivery.clone()),
        metrics: Arc::new(Metrics::register(&mut registry)),
    };
    let mut queues: Vec<Queue> = Lane::ALL
        .iter()
        .map(|l| {
            Queue::consumer(
                subjects::delivery_stream(*l),
                format!("delivery-{}", l.name()),
            )
        })
        .collect();
    queues.push(Queue::stream(subjects::STREAM_DLQ));
    herald_runtime::metrics::watch_queues(
        bus.clone(),
        &mut registry,
        queues,
        cfg.telemetry.queue_poll_interval,
        shutdown.clone(),
    );
    let (http_addr, http_task) = herald_runtime::health::serve(
        &cfg.delivery.http_addr,
        health.clone(),
        Arc::new(registry),
        None,
        shutdown.clone(),
    )
    .await?;

    let mut consumers = Vec::new();
    for lane in Lane::ALL {
        let spec = ConsumerSpec {
            stream: subjects::delivery_stream(lane).to_string(),
            durable: format!("delivery-{}", lane.name()),
            filter: subjects::delivery_jobs(lane),
            concurrency: cfg.delivery.concurrency,
            // Longer than one attempt, so a slow provider does not cause a
            // redelivery while the first try is still running.
            ack_wait: cfg.nats.ack_wait.max(lease),
            max_deliver: -1,
        };
        let ready = health.flag(format!("consumer-{}", lane.name()));
        let d = Arc::new(delivery.clone());
        let bus = bus.clone();
        let shutdown = shutdown.clone();
        let grace = cfg.delivery.attempt_timeout + Duration::from_secs(2);
        consumers.push(tokio::spawn(async move {
            bus::consume(&bus, spec, ready, shutdown, grace, move |msg| {
                let d = d.clone();
                async move { d.handle(msg).await }
            })
            .await
        }));
    }
    info!(%http_addr, "delivery ready");
    let task = tokio::spawn(async move {
        for c in consumers {
            c.await??;
        }
        let _ = http_task.await;
        Ok(())
    });
    Ok(Running {
        http_addr,
        health,
        task,
    })
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
            let attempt = bus::delivery_count(&msg);
            self.attempt(&job, attempt).await
        }
        .instrument(span)
        .await
    }

    async fn attempt(&self, job: &DeliveryJob, attempt: u32) -> Disposition {
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        match self.ledger.claim(&job.job_id).await {
            Ok(Claim::Claimed { interrupted }) => {
                if interrupted {
                    warn!(
                        "an earlier attempt was interrupted; sending again under the same idempotency key"
                    );
                }
            }
            Ok(Claim::Busy(wait)) => {
                record_outcome(&tracing::Span::current(), "busy", false);
                return Disposition::Retry(wait.max(Duration::from_millis(200)));
            }
            Ok(Claim::Sent(provider_id)) => {
                self.metrics
                    .suppressed
                    .get_or_create(&LaneLabel {
                        lane: lane.name().into(),
                    })
                    .inc();
                info!("already sent; acknowledged without sending again");
                record_outcome(&tracing::Span::current(), "already_sent", false);
                // The first time may have stopped before documenting the
                // send; repeating it is harmless (same record id).
                self.document_sent(
                    job,
                    attempt,
                    &Sent {
                        provider_id,
                        via: String::new(),
                    },
                )
                .await;
                return Disposition::Ack;
            }
            Ok(Claim::Failed) => {
                record_outcome(&tracing::Span::current(), "already_failed", false);
                return Disposition::Ack;
            }
            Err(e) => {
                record_outcome(&tracing::Span::current(), "ledger_unavailable", false);
                warn!(error = %e, "send ledger unavailable; will retry");
                return Disposition::Retry(Duration::from_secs(1));
            }
        }

        let started = std::time::Instant::now();
        let provider = herald_runtime::telemetry::provider_span(channel_of(job).name());
        let sending = self.transports.send(job).instrument(provider.clone());
        let result = match tokio::time::timeout(self.cfg.attempt_timeout, sending).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Transient {
                reason: format!("no answer within {:?}", self.cfg.attempt_timeout),
                retry_after: None,
            }),
        };
        match &result {
            Ok(_) => record_outcome(&provider, "sent", false),
            Err(e) => record_outcome(&provider, error_kind(e), true),
        }
        let label = |outcome: &str| ChannelOutcome {
            lane: lane.name().into(),
            channel: channel_of(job).name().into(),
            outcome: outcome.into(),
        };
        self.metrics
            .attempt
            .get_or_create(&label(if result.is_ok() { "sent" } else { "failed" }))
            .observe(started.elapsed().as_secs_f64());

        match result {
            Ok(sent) => {
                if let Err(e) = self.ledger.sent(&job.job_id, &sent.provider_id).await {
                    // Not recorded: a redelivery would send again. Keep the
                    // message unacked and let the lease protect it; the
                    // ledger write is retried on the next delivery.
                    error!(error = %e, "sent but not recorded; holding the job");
                    return Disposition::Retry(
                        self.cfg.attempt_timeout * 2 + Duration::from_secs(5),
                    );
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
                            job,
                            AuditStep::RetryScheduled,
                            format!(
                                "attempt {attempt} failed ({reason}); next attempt in {:.1}s",
                                delay.as_secs_f64()
                            ),
                            format!("{}-a{attempt}-retry", job.job_id),
                        )
                        .await;
                        Disposition::Retry(delay)
                    }
                    None => {
                        self.give_up(
                            job,
                            attempt,
                            format!("gave up after {attempt} attempts; last: {reason}"),
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

    /// The delay before the next attempt, or `None` when the schedule or
    /// the total time limit is used up.
    fn next_delay(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let base = *self.cfg.retry_schedule.get(attempt as usize - 1)?;
        let jitter = rand::rng().random_range(0.8..1.2);
        let delay = base.mul_f64(jitter).max(retry_after.unwrap_or_default());
        let created = herald_proto::system_time(job.created_at.as_ref());
        let age = SystemTime::now()
            .duration_since(created)
            .unwrap_or_default();
        if age + delay > self.cfg.give_up_after {
            return None;
        }
        Some(delay)
    }

    /// A permanent failure: the next channel if there is one, else the
    /// dead-letter stream. Acked only once that hand-off is stored.
    async fn give_up(&self, job: &DeliveryJob, attempt: u32, reason: String) -> Disposition {
        let channel = channel_of(job);
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        let handed_on = if let Some((next, rest)) = job.fallbacks.split_first() {
            let next_channel = Channel::try_from(next.channel).unwrap_or_default();
            let fallback = DeliveryJob {
                job_id: format!("{}-fb-{}", job.job_id, next_channel.name()),
                channel: next.channel,
                address: next.address.clone(),
                subject: next.subject.clone(),
                body: next.body.clone(),
                content_withheld: next.content_withheld,
                fallbacks: rest.to_vec(),
                fallback_of: job.job_id.clone(),
                created_at: Some(herald_proto::now()),
                ..job.clone()
            };
            let stored = self
                .bus
                .publish_durable(
                    subjects::delivery_job(lane, next_channel),
                    &fallback,
                    Some(&fallback.job_id),
                )
                .await;
            stored.map(|_| {
                (
                    AuditStep::Fallback,
                    format!(
                        "{} failed ({reason}); falling back to {}",
                        channel.name(),
                        next_channel.name()
                    ),
                    "fallback",
                )
            })
        } else {
            let history = self.ledger.history(&job.job_id).await.unwrap_or_default();
            let letter = DeadLetter {
                job: Some(job.clone()),
                reason: reason.clone(),
                history: history
                    .iter()
                    .filter_map(|l| parse_history_line(l))
                    .collect(),
                at: Some(herald_proto::now()),
            };
            self.bus
                .publish_durable(subjects::dlq(channel), &letter, Some(&format!("{}-dead", job.job_id)))
                .await
                .map(|_| {
                    (
                        AuditStep::DeadLettered,
                        format!("{} failed ({reason}); no fallback left, moved to the dead-letter stream", channel.name()),
                        "dead_lettered",
                    )
                })
        };
        match handed_on {
            Ok((step, summary, outcome)) => {
                warn!(attempt, outcome, "job failed permanently");
                record_outcome(&tracing::Span::current(), outcome, true);
                let _ = self.ledger.failed(&job.job_id, &reason).await;
                self.audit(job, step, summary, format!("{}-{outcome}", job.job_id))
                    .await;
                self.status(job, DeliveryState::Failed, &reason, attempt)
                    .await;
                self.metrics
                    .deliveries
                    .get_or_create(&ChannelOutcome {
                        lane: lane.name().into(),
                        channel: channel.name().into(),
                        outcome: outcome.into(),
                    })
                    .inc();
                Disposition::Ack
            }
            Err(e) => {
                error!(error = %e, "could not hand the failed job on; will retry");
                let _ = self.ledger.release(&job.job_id).await;
                Disposition::Retry(Duration::from_secs(2))
            }
        }
    }

    async fn document_sent(&self, job: &DeliveryJob, attempt: u32, sent: &Sent) {
        let channel = channel_of(job);
        let summary = format!(
            "sent by {} on attempt {attempt}{}",
            channel.name(),
            if job.fallback_of.is_empty() {
                String::new()
            } else {
                format!(" (fallback for {})", job.fallback_of)
            }
        );
        let entry = self.entry(
            job,
            AuditStep::Sent,
            summary,
            format!("{}-sent", job.job_id),
        );
        let status = self.status_event(job, DeliveryState::Sent, "", attempt, &sent.provider_id);
        let audit = self.auditor.record(entry).await;
        let status = self
            .bus
            .publish(
                subjects::delivery_status(channel),
                &status,
                Some(&format!("{}-sent", job.job_id)),
            )
            .await;
        for ack in [audit, status] {
            match ack {
                Ok(a) => {
                    if let Err(e) = bus::confirm(subjects::delivery_statuses(), a).await {
                        warn!(error = %e, "status or audit of a send not confirmed");
                    }
                }
                Err(e) => warn!(error = %e, "status or audit of a send not published"),
            }
        }
    }

    fn entry(
        &self,
        job: &DeliveryJob,
        step: AuditStep,
        summary: String,
        record_id: String,
    ) -> Entry {
        Entry {
            notification_id: job.notification_id.clone(),
            case_id: job.case_id.clone(),
            channel: channel_of(job),
            job_id: job.job_id.clone(),
            contact_id: job.contact_id.clone(),
            lane: Lane::try_from(job.lane).unwrap_or_default(),
            record_id: Some(record_id),
            ..Entry::new(step, summary)
        }
    }

    async fn audit(&self, job: &DeliveryJob, step: AuditStep, summary: String, record_id: String) {
        if let Err(e) = self
            .auditor
            .record_durable(self.entry(job, step, summary, record_id))
            .await
        {
            warn!(error = %e, "audit record not written");
        }
    }

    fn status_event(
        &self,
        job: &DeliveryJob,
        state: DeliveryState,
        detail: &str,
        attempt: u32,
        provider_id: &str,
    ) -> DeliveryStatus {
        DeliveryStatus {
            job_id: job.job_id.clone(),
            notification_id: job.notification_id.clone(),
            case_id: job.case_id.clone(),
            channel: job.channel,
            state: state as i32,
            provider_message_id: provider_id.to_string(),
            detail: detail.to_string(),
            attempt,
            at: Some(herald_proto::now()),
            lane: job.lane,
        }
    }

    async fn status(&self, job: &DeliveryJob, state: DeliveryState, detail: &str, attempt: u32) {
        let event = self.status_event(job, state, detail, attempt, "");
        let id = format!("{}-{}", job.job_id, state.as_str_name());
        if let Err(e) = self
            .bus
            .publish_durable(
                subjects::delivery_status(channel_of(job)),
                &event,
                Some(&id),
            )
            .await
        {
            warn!(error = %e, "status event not written");
        }
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

fn history_line(attempt: u32, outcome: &str, detail: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{attempt}|{ms}|{outcome}|{}", detail.replace('\n', " "))
}

fn parse_history_line(line: &str) -> Option<Attempt> {
    let mut parts = line.splitn(4, '|');
    let number = parts.next()?.parse().ok()?;
    let ms: u64 = parts.next()?.parse().ok()?;
    let outcome = parts.next()?.to_string();
    let detail = parts.next().unwrap_or_default().to_string();
    Some(Attempt {
        number,
        at: Some(herald_proto::timestamp(
            std::time::UNIX_EPOCH + Duration::from_millis(ms),
        )),
        outcome,
        detail,
    })
}
