//! Prometheus plumbing every service uses: the label types, latency
//! histograms, and the queue poller every consuming service starts
//! ([`watch_queues`]). Each service registers its own families beside its
//! code. Labels are channels, lanes, outcomes, reasons, levels and stream
//! names, never personal data: a label value is kept by Prometheus for as
//! long as the series lives, far beyond any retention period Herald
//! promises for content.

use std::{
    sync::atomic::AtomicU64,
    time::{Duration, SystemTime},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::bus::Bus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabel {
    pub lane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub lane: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelOutcome {
    pub lane: String,
    pub channel: String,
    pub outcome: String,
}

pub type CounterFamily<L> = Family<L, Counter>;

/// Latency buckets from 1 ms to about 65 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

pub fn latency_family<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram> {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    pub stream: String,
    pub consumer: String,
}

/// Something in JetStream an operator watches. A service watches the
/// depth of the streams it feeds and the lag of the consumers it runs, so a
/// backlog stays visible on the producer's side even while every consumer
/// of it is down.
#[derive(Debug, Clone)]
pub enum Queue {
    /// A stream's depth and the age of its oldest message.
    Stream(String),
    /// A durable consumer's lag and unacknowledged messages.
    Consumer { stream: String, consumer: String },
}

impl Queue {
    pub fn stream(stream: impl Into<String>) -> Queue {
        Queue::Stream(stream.into())
    }

    pub fn consumer(stream: impl Into<String>, consumer: impl Into<String>) -> Queue {
        Queue::Consumer {
            stream: stream.into(),
            consumer: consumer.into(),
        }
    }

    fn stream_name(&self) -> &str {
        match self {
            Queue::Stream(s) | Queue::Consumer { stream: s, .. } => s,
        }
    }
}

/// Queue depth and consumer lag, as the last poll of JetStream saw them.
#[derive(Clone, Default)]
struct QueueMetrics {
    messages: Family<StreamLabel, Gauge>,
    oldest_age: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    pending: Family<ConsumerLabel, Gauge>,
    ack_pending: Family<ConsumerLabel, Gauge>,
    redelivered: Family<ConsumerLabel, Gauge>,
    poll_failures: Counter,
}

impl QueueMetrics {
    fn register(registry: &mut Registry) -> QueueMetrics {
        let m = QueueMetrics::default();
        registry.register(
            "stream_messages",
            "Messages stored in the stream; for a work queue, jobs not yet done",
            m.messages.clone(),
        );
        registry.register(
            "stream_oldest_message_age_seconds",
            "Age of the oldest message in the stream; for a work queue, how long the oldest job has waited",
            m.oldest_age.clone(),
        );
        registry.register(
            "consumer_pending_messages",
            "Messages the consumer has not yet been given (its lag behind the stream)",
            m.pending.clone(),
        );
        registry.register(
            "consumer_ack_pending_messages",
            "Messages handed to the consumer and not yet acknowledged",
            m.ack_pending.clone(),
        );
        registry.register(
            "consumer_redelivered_messages",
            "Messages delivered more than once and not yet acknowledged",
            m.redelivered.clone(),
        );
        registry.register(
            "queue_poll_failures",
            "Polls of JetStream stream and consumer state that failed (NATS unreachable)",
            m.poll_failures.clone(),
        );
        m
    }
}

/// Registers the queue gauges and polls JetStream for `queues` every
/// `every` until `shutdown`. JetStream keeps these numbers itself; polling
/// them costs one request per stream and consumer, whatever the traffic.
pub fn watch_queues(
    bus: Bus,
    registry: &mut Registry,
    queues: Vec<Queue>,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let metrics = QueueMetrics::register(registry);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            for q in &queues {
                let polled = tokio::time::timeout(
                    every.max(Duration::from_secs(1)),
                    poll(&bus, q, &metrics),
                )
                .await;
                match polled {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        metrics.poll_failures.inc();
                        debug!(stream = q.stream_name(), error = %e, "queue poll failed");
                    }
                    Err(_) => {
                        metrics.poll_failures.inc();
                        debug!(stream = q.stream_name(), "queue poll timed out");
                    }
                }
            }
        }
    })
}

async fn poll(bus: &Bus, q: &Queue, m: &QueueMetrics) -> anyhow::Result<()> {
    match q {
        Queue::Stream(name) => {
            let stream = bus.js.get_stream(name).await?;
            let state = &stream.cached_info().state;
            let label = StreamLabel {
                stream: name.clone(),
            };
            m.messages
                .get_or_create(&label)
                .set(i64::try_from(state.messages).unwrap_or(i64::MAX));
            let age = if state.messages == 0 {
                0.0
            } else {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as i128;
                ((now - state.first_timestamp.unix_timestamp_nanos()).max(0) as f64) / 1e9
            };
            m.oldest_age.get_or_create(&label).set(age);
        }
        Queue::Consumer { stream, consumer } => {
            let info = bus
                .js
                .get_stream_no_info(stream)
                .await?
                .consumer_info(consumer)
                .await?;
            let label = ConsumerLabel {
                stream: stream.clone(),
                consumer: consumer.clone(),
            };
            m.pending
                .get_or_create(&label)
                .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            m.ack_pending
                .get_or_create(&label)
                .set(info.num_ack_pending as i64);
            m.redelivered
                .get_or_create(&label)
                .set(info.num_redelivered as i64);
        }
    }
    Ok(())
}
