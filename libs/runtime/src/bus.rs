//! The NATS side of every service: connecting, declaring Herald's JetStream
//! streams, publishing protobuf messages with trace context, and a consumer
//! loop with bounded concurrency and a graceful drain.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{
    Client, HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, pull},
        context::{PublishAckFuture, PublishErrorKind},
        stream::{self, RetentionPolicy, StorageType},
    },
};
use futures::StreamExt;
use herald_proto::{subjects, v1::Lane};
use prost::Message;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use herald_config::NatsConfig;

use crate::{priority::Precedence, retry::Backoff};

/// A connection to NATS and its JetStream context.
#[derive(Clone)]
pub struct Bus {
    pub client: Client,
    pub js: jetstream::Context,
    pub cfg: NatsConfig,
}

/// The JetStream publish failed or was not confirmed in time; the caller
/// should treat the message as not written and retry or refuse.
#[derive(Debug, thiserror::Error)]
#[error("publish to {subject} not confirmed: {reason}")]
pub struct PublishError {
    pub subject: String,
    pub reason: String,
}

/// Why [`Bus::ask`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing is subscribed to the subject: no instance of the service
    /// is running (NATS says so at once).
    #[error("{0}")]
    NoResponders(String),
    /// Nobody answered in time: the service is down or overloaded.
    #[error("{0}")]
    NoAnswer(String),
    /// An answer came that is not the expected message.
    #[error("{0}")]
    Garbled(String),
}

impl Bus {
    /// Connects, retrying until NATS answers or `shutdown` fires.
    pub async fn connect(
        cfg: &NatsConfig,
        name: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Bus> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let opts = async_nats::ConnectOptions::new()
                .name(name)
                .max_reconnects(None)
                .connection_timeout(Duration::from_secs(3))
                .client_capacity(65_536)
                .reconnect_delay_callback(|attempts| {
                    Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
                        .nth(u32::try_from(attempts).unwrap_or(u32::MAX))
                });
            match opts.connect(cfg.url.as_str()).await {
                Ok(client) => {
                    let js = jetstream::ContextBuilder::new()
                        .timeout(cfg.publish_timeout)
                        .ack_timeout(cfg.publish_timeout)
                        .max_ack_inflight(20_000)
                        .backpressure_on_inflight(true)
                        .build(client.clone());
                    return Ok(Bus {
                        client,
                        js,
                        cfg: cfg.clone(),
                    });
                }
                Err(e) => {
                    warn!(error = %e, "NATS not reachable yet; retrying");
                    if !backoff.wait(shutdown).await {
                        anyhow::bail!("shut down before NATS was reachable");
                    }
                }
            }
        }
    }

    /// Declares every Herald stream (creating or updating it), so any
    /// service can start first.
    pub async fn ensure_streams(&self) -> anyhow::Result<()> {
        for config in stream_configs(&self.cfg) {
            let name = config.name.clone();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
            let mut attempt = 0;
            loop {
                match self.js.create_or_update_stream(config.clone()).await {
                    Ok(_) => break,
                    // Two services declaring the same stream at once: the
                    // loser retries and finds it there.
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        debug!(stream = %name, error = %e, "declaring stream; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => anyhow::bail!("declaring stream {name}: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Publishes to JetStream inside a producer span whose trace context
    /// rides in the headers. `msg_id` makes a repeated publish within the
    /// duplicate window a no-op. Returns once the message is sent; await the
    /// future for the stream's confirmation.
    pub async fn publish<M: Message>(
        &self,
        subject: String,
        msg: &M,
        msg_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let span = publish_span(&subject, msg_id);
        let mut headers = HeaderMap::new();
        crate::telemetry::inject_from(&span, &mut headers);
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(msg.encode_to_vec().into())
            .headers(headers);
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        self.js
            .send_publish(subject.clone(), publish)
            .instrument(span.clone())
            .await
            .map_err(|e| {
                span.record("error.type", "publish_failed");
                span.record("otel.status_code", "error");
                PublishError {
                    subject,
                    reason: e.to_string(),
                }
            })
    }

    /// Publishes and waits for JetStream to confirm the message is stored.
    pub async fn publish_durable<M: Message>(
        &self,
        subject: String,
        msg: &M,
        msg_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let ack = self.publish(subject.clone(), msg, msg_id).await?;
        confirm(subject, ack).await
    }

    /// Publishes a core NATS message (no persistence) inside a producer
    /// span, with its trace context.
    pub async fn publish_core<M: Message>(&self, subject: String, msg: &M) -> anyhow::Result<()> {
        let span = publish_span(&subject, None);
        let mut headers = HeaderMap::new();
        crate::telemetry::inject_from(&span, &mut headers);
        self.client
            .publish_with_headers(subject, headers, msg.encode_to_vec().into())
            .instrument(span)
            .await?;
        Ok(())
    }

    /// Asks another service over NATS request/reply and decodes its
    /// answer, waiting at most `within`. The error says whether nobody
    /// answered (the service is not running) or the answer was garbled.
    pub async fn ask<Req: Message, Rep: Message + Default>(
        &self,
        subject: &str,
        req: &Req,
        within: Duration,
    ) -> Result<Rep, AskError> {
        let answer = tokio::time::timeout(
            within,
            self.client
                .request(subject.to_string(), req.encode_to_vec().into()),
        )
        .await
        .map_err(|_| AskError::NoAnswer(format!("no answer on {subject} within {within:?}")))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                AskError::NoResponders(format!("nothing answers on {subject}"))
            }
            _ => AskError::NoAnswer(format!("{subject}: {e}")),
        })?;
        Rep::decode(answer.payload)
            .map_err(|e| AskError::Garbled(format!("the answer on {subject} does not decode: {e}")))
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Waits for a publish confirmation.
pub async fn confirm(subject: String, ack: PublishAckFuture) -> Result<(), PublishError> {
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) => Err(PublishError {
            subject,
            reason: match e.kind() {
                PublishErrorKind::TimedOut => "timed out".into(),
                _ => e.to_string(),
            },
        }),
    }
}

/// Every stream Herald uses. Work queues for jobs that are consumed once;
/// limits retention for what is read again (status, audit, dead letters).
pub fn stream_configs(cfg: &NatsConfig) -> Vec<stream::Config> {
    let base = |name: &str, subjects: Vec<String>, retention, max_age| stream::Config {
        name: name.to_string(),
        subjects,
        retention,
        max_age,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: cfg.duplicate_window,
        ..Default::default()
    };
    let mut out = Vec::new();
    for lane in Lane::ALL {
        out.push(base(
            subjects::notify_stream(lane),
            vec![subjects::notify_accepted(lane).to_string()],
            RetentionPolicy::WorkQueue,
            Duration::ZERO,
        ));
        out.push(base(
            subjects::delivery_stream(lane),
            vec![subjects::delivery_jobs(lane)],
            RetentionPolicy::WorkQueue,
            Duration::ZERO,
        ));
    }
    out.push(base(
        subjects::STREAM_STOPS,
        vec![subjects::DELIVERY_STOPS.to_string()],
        RetentionPolicy::WorkQueue,
        Duration::ZERO,
    ));
    out.push(base(
        subjects::STREAM_BROADCAST,
        vec![subjects::BROADCAST_COMMANDS.to_string()],
        RetentionPolicy::WorkQueue,
        Duration::ZERO,
    ));
    out.push(base(
        subjects::STREAM_STATUS,
        vec![subjects::delivery_statuses()],
        RetentionPolicy::Limits,
        Duration::from_secs(14 * 24 * 3600),
    ));
    out.push(base(
        subjects::STREAM_AUDIT,
        vec![subjects::audit_all().to_string()],
        RetentionPolicy::Limits,
        cfg.audit_retention,
    ));
    // Read by several services (sla, escalation) at their own pace: kept,
    // not consumed, for as long as the trail (it holds feedback comments,
    // which are destroyed with it).
    out.push(base(
        subjects::STREAM_CASES,
        vec![subjects::case_all()],
        RetentionPolicy::Limits,
        cfg.audit_retention,
    ));
    out.push(base(
        subjects::STREAM_DLQ,
        vec![subjects::dlq_all()],
        RetentionPolicy::Limits,
        Duration::from_secs(90 * 24 * 3600),
    ));
    out
}

/// What a handler decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or deliberately dropped after being documented): never again.
    Ack,
    /// Not done; deliver again after the delay.
    Retry(Duration),
    /// Poison: will never succeed; stop redelivering.
    Reject,
}

/// How a durable pull consumer is declared and run.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub filter: String,
    /// Messages handled at once. 1 means strictly in order: JetStream then
    /// hands out the next message only once this one is acknowledged, across
    /// every instance sharing the durable consumer (a handler that must
    /// keep the order retries inside itself rather than asking for a
    /// redelivery).
    pub concurrency: usize,
    pub ack_wait: Duration,
    /// -1 for unlimited.
    pub max_deliver: i64,
}

/// Runs `handler` over a durable pull consumer until `shutdown` fires, with
/// at most `spec.concurrency` messages in flight. On shutdown it stops
/// pulling and waits up to `grace` for in-flight messages; anything not
/// finished is redelivered by JetStream later, so nothing is lost.
pub async fn consume<F, Fut>(
    bus: &Bus,
    spec: ConsumerSpec,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    grace: Duration,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(jetstream::Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    consume_gated(bus, spec, Gate::None, ready, shutdown, grace, handler).await
}

/// How a consumer takes part in the emergency lane's priority
/// ([`crate::priority`]).
#[derive(Clone, Default)]
pub enum Gate {
    #[default]
    None,
    /// A normal-lane consumer: it starts no new message while emergency
    /// work is under way.
    Yield(Precedence),
    /// An emergency-lane consumer: each message counts as emergency work
    /// from the moment it arrives until it is settled.
    Busy(Precedence),
}

/// [`consume`], taking part in the emergency lane's priority as `gate`
/// says.
pub async fn consume_gated<F, Fut>(
    bus: &Bus,
    spec: ConsumerSpec,
    gate: Gate,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    grace: Duration,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(jetstream::Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(spec.concurrency));
    let batch = spec.concurrency.clamp(1, 512);
    'outer: loop {
        let consumer = match bind_consumer(bus, &spec).await {
            Ok(c) => c,
            Err(e) => {
                ready.store(false, Ordering::Relaxed);
                warn!(consumer = %spec.durable, error = %e, "binding consumer; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break 'outer,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'outer,
                }
            }
        };
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                ready.store(false, Ordering::Relaxed);
                warn!(consumer = %spec.durable, error = %e, "pulling; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break 'outer,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'outer,
                }
            }
        };
        ready.store(true, Ordering::Relaxed);
        info!(consumer = %spec.durable, "consuming");
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => {
                    return_unstarted(&mut messages, &spec.durable).await;
                    break 'outer;
                }
                p = slots.clone().acquire_owned() => p?,
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    return_unstarted(&mut messages, &spec.durable).await;
                    break 'outer;
                }
                m = messages.next() => m,
            };
            match next {
                Some(Ok(msg)) => {
                    // Checked once the message is here: the consumer may
                    // have waited for it since before the emergency began.
                    // While it waits, nothing more is pulled.
                    if let Gate::Yield(priority) = &gate
                        && priority.is_yielding()
                    {
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                                return_unstarted(&mut messages, &spec.durable).await;
                                break 'outer;
                            }
                            _ = priority.normal_may_proceed() => {}
                        }
                    }
                    let busy = match &gate {
                        Gate::Busy(priority) => Some(priority.busy()),
                        _ => None,
                    };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let disposition = handler(msg.clone()).await;
                        settle(&msg, disposition).await;
                        drop(busy);
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    // Missed heartbeats and the like: the stream recovers by
                    // itself; a broken one ends and is rebuilt below.
                    debug!(consumer = %spec.durable, error = %e, "pull stream hiccup");
                }
                None => {
                    ready.store(false, Ordering::Relaxed);
                    continue 'outer;
                }
            }
        }
    }
    ready.store(false, Ordering::Relaxed);
    let drained = tokio::time::timeout(grace, slots.acquire_many(spec.concurrency as u32)).await;
    if drained.is_err() {
        warn!(consumer = %spec.durable, "grace period over with work in flight; JetStream will redeliver it");
    }
    Ok(())
}

/// Runs an in-order consumer on every partition of the case stream:
/// durable `<durable>-<partition>`, subjects `filter(partition)`, one
/// message at a time, so a case's messages are handled in the order they
/// were stored while partitions proceed side by side. `handle` is tried
/// until it answers: an `Err` (Redis or NATS away) is retried in place,
/// with a growing pause, telling JetStream the message is still being
/// worked on, because asking for a redelivery would let the partition's
/// next message overtake it. On shutdown the message in hand is handed
/// back at once.
pub fn consume_case_partitions<F, Fut>(
    bus: &Bus,
    readiness: impl Fn(String) -> Arc<AtomicBool>,
    durable: &str,
    filter: fn(u32) -> String,
    ack_wait: Duration,
    shutdown: &CancellationToken,
    handle: F,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>>
where
    F: Fn(jetstream::Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<Disposition>> + Send + 'static,
{
    (0..subjects::CASE_PARTITIONS)
        .map(|partition| {
            let spec = ConsumerSpec {
                stream: subjects::STREAM_CASES.to_string(),
                durable: format!("{durable}-{partition}"),
                filter: filter(partition),
                concurrency: 1,
                ack_wait,
                max_deliver: -1,
            };
            let ready = readiness(format!("consumer-{partition}"));
            let (bus, shutdown, handle) = (bus.clone(), shutdown.clone(), handle.clone());
            tokio::spawn(async move {
                let stop = shutdown.clone();
                consume(
                    &bus,
                    spec,
                    ready,
                    shutdown,
                    Duration::from_secs(10),
                    move |msg| {
                        let (handle, stop) = (handle.clone(), stop.clone());
                        async move { until_answered(msg, &stop, handle).await }
                    },
                )
                .await
            })
        })
        .collect()
}

async fn until_answered<F, Fut>(
    msg: jetstream::Message,
    stop: &CancellationToken,
    handle: F,
) -> Disposition
where
    F: Fn(jetstream::Message) -> Fut,
    Fut: Future<Output = anyhow::Result<Disposition>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match handle(msg.clone()).await {
            Ok(d) => return d,
            Err(e) => {
                warn!(subject = %subjects::destination_template(&msg.subject), error = %e, "handling failed; retrying in place");
                if stop.is_cancelled() {
                    return Disposition::Retry(Duration::ZERO);
                }
                let _ = msg.ack_with(AckKind::Progress).await;
                if !backoff.wait(stop).await {
                    return Disposition::Retry(Duration::ZERO);
                }
            }
        }
    }
}

/// On shutdown: gives back the messages the server has already handed this
/// consumer but no handler has started, so another instance can take them
/// in about a second instead of after `ack_wait`.
async fn return_unstarted(messages: &mut pull::Stream, durable: &str) {
    let mut returned = 0;
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_millis(50), messages.next()).await
    {
        // A short delay, so the server does not hand it straight back to
        // this consumer while it is still draining.
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        returned += 1;
    }
    if returned > 0 {
        info!(consumer = %durable, returned, "returned unstarted messages on shutdown");
    }
}

/// The durable consumer `spec` describes, created if it does not exist.
pub async fn bind_consumer(
    bus: &Bus,
    spec: &ConsumerSpec,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = bus.js.get_stream(&spec.stream).await?;
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        max_ack_pending: if spec.concurrency == 1 {
            1
        } else {
            (spec.concurrency * 4).max(1024) as i64
        },
        ..Default::default()
    };
    Ok(stream.get_or_create_consumer(&spec.durable, config).await?)
}

/// Acknowledges a message the way its handler decided.
pub async fn settle(msg: &jetstream::Message, disposition: Disposition) {
    let kind = match disposition {
        Disposition::Ack => AckKind::Ack,
        Disposition::Retry(d) => AckKind::Nak(Some(d)),
        Disposition::Reject => AckKind::Term,
    };
    if let Err(e) = msg.ack_with(kind).await {
        // The message will be redelivered after ack_wait; handlers are
        // idempotent, so that costs time, not correctness.
        warn!(error = %e, "acknowledging message failed");
    }
}

/// How many times JetStream has delivered this message (1 on the first).
pub fn delivery_count(msg: &jetstream::Message) -> u32 {
    msg.info().map(|i| i.delivered.max(1) as u32).unwrap_or(1)
}

/// A consumer span for handling one message, the child of the producer
/// span that published it, with the OpenTelemetry messaging attributes.
/// For a JetStream message it also names the durable consumer and which
/// delivery this is (`attempt`, 1 on the first), so each retry is its own
/// span in the trace. Handlers record `notification_id`, `case_id`,
/// `job_id`, `channel` and `outcome` on it: identifiers, never content.
pub fn process_span(name: &'static str, msg: &async_nats::Message) -> tracing::Span {
    let ack = msg.reply.as_deref().and_then(jetstream_ack_info);
    let span = tracing::info_span!(
        "process",
        otel.name = name,
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %msg.subject,
        messaging.destination.template = subjects::destination_template(&msg.subject),
        messaging.message.id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str()),
        messaging.message.body.size = msg.payload.len(),
        messaging.consumer.group.name = ack.as_ref().map(|a| a.consumer),
        attempt = ack.as_ref().map(|a| a.delivered),
        notification_id = tracing::field::Empty,
        case_id = tracing::field::Empty,
        job_id = tracing::field::Empty,
        channel = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::telemetry::adopt(&span, msg.headers.as_ref());
    span
}

/// A producer span for one publish, named after the subject's template so
/// that span names stay few while the attribute keeps the exact subject.
pub fn publish_span(subject: &str, msg_id: Option<&str>) -> tracing::Span {
    let template = subjects::destination_template(subject);
    tracing::info_span!(
        "publish",
        otel.name = format!("publish {template}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = subject,
        messaging.destination.template = template,
        messaging.message.id = msg_id,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Where a JetStream message came from, read from its ack subject.
struct AckInfo<'a> {
    consumer: &'a str,
    delivered: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.…` and the newer form
/// with domain and account hash (`$JS.ACK.<domain>.<hash>.<stream>.…`).
fn jetstream_ack_info(reply: &str) -> Option<AckInfo<'_>> {
    let tokens: Vec<&str> = reply.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    let (consumer, delivered) = if tokens.len() == 9 {
        (tokens[3], tokens[4])
    } else {
        (tokens[5], tokens[6])
    };
    Some(AckInfo {
        consumer,
        delivered: delivered.parse().ok()?,
    })
}

/// Runs `fut` inside `span`.
pub fn in_span<F: Future>(span: tracing::Span, fut: F) -> tracing::instrument::Instrumented<F> {
    fut.instrument(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_name_the_consumer_and_the_delivery_count() {
        let old = jetstream_ack_info(
            "$JS.ACK.HERALD_DELIVERY.delivery-normal.3.17.12.1700000000000000000.0",
        )
        .unwrap();
        assert_eq!((old.consumer, old.delivered), ("delivery-normal", 3));
        let new = jetstream_ack_info(
            "$JS.ACK.hub.ACCHASH.HERALD_NOTIFY.router-normal.1.5.5.1700000000000000000.2.xyz",
        )
        .unwrap();
        assert_eq!((new.consumer, new.delivered), ("router-normal", 1));
        assert!(jetstream_ack_info("_INBOX.abc.def").is_none());
    }
}
