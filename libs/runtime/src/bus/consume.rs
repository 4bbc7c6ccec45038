//! Durable pull consumers: a loop with bounded concurrency that takes part
//! in the emergency lane's precedence, settles each message as its handler
//! decided, and on shutdown drains what is in hand and hands back what was
//! not started.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, pull},
};
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Bus;
use crate::priority::Precedence;

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
    let one = move |mut batch: Vec<jetstream::Message>| {
        // Boxed, so the task holds a pointer rather than the handler's
        // whole state machine, which spawning would copy several times.
        let work = batch.pop().map(|msg| Box::pin(handler(msg)));
        async move {
            match work {
                Some(work) => vec![work.await],
                None => Vec::new(),
            }
        }
    };
    consume_batches(bus, spec, gate, 1, ready, shutdown, grace, one).await
}

/// [`consume_gated`] for a handler that works on several messages at
/// once: each turn takes the messages that are ready, up to `max_batch`
/// and never waiting for more (so batching adds no latency when traffic is
/// light), and `handler` answers one disposition per message, in order.
/// `spec.concurrency` bounds the messages in flight across every batch.
#[allow(clippy::too_many_arguments)]
pub async fn consume_batches<F, Fut>(
    bus: &Bus,
    spec: ConsumerSpec,
    gate: Gate,
    max_batch: usize,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    grace: Duration,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<jetstream::Message>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Vec<Disposition>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(spec.concurrency));
    let pull = spec.concurrency.clamp(1, 512);
    let max_batch = max_batch.clamp(1, spec.concurrency.max(1));
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
            .max_messages_per_batch(pull)
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
                    return_unstarted(&mut messages, &spec).await;
                    break 'outer;
                }
                p = slots.clone().acquire_owned() => p?,
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    return_unstarted(&mut messages, &spec).await;
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
                                return_unstarted(&mut messages, &spec).await;
                                break 'outer;
                            }
                            _ = priority.normal_may_proceed() => {}
                        }
                    }
                    let mut batch = vec![msg];
                    let mut permits = vec![permit];
                    // What else is here already, each with its own slot.
                    let mut ended = false;
                    while batch.len() < max_batch {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        match messages.next().now_or_never() {
                            Some(Some(Ok(msg))) => {
                                batch.push(msg);
                                permits.push(permit);
                            }
                            Some(Some(Err(e))) => {
                                debug!(consumer = %spec.durable, error = %e, "pull stream hiccup");
                                break;
                            }
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    // One guard per message, as a handler that waits
                    // steps aside for one message only (`Precedence::park`).
                    let busy: Vec<_> = match &gate {
                        Gate::Busy(priority) => batch.iter().map(|_| priority.busy()).collect(),
                        _ => Vec::new(),
                    };
                    let work = Box::pin(handler(batch.clone()));
                    tokio::spawn(async move {
                        let dispositions = work.await;
                        debug_assert_eq!(dispositions.len(), batch.len(), "one answer per message");
                        let settled = batch.iter().enumerate().map(|(i, msg)| {
                            // A message the handler gave no answer for comes back.
                            let d = dispositions
                                .get(i)
                                .copied()
                                .unwrap_or(Disposition::Retry(Duration::from_secs(1)));
                            settle(msg, d)
                        });
                        futures::future::join_all(settled).await;
                        drop(busy);
                        drop(permits);
                    });
                    if ended {
                        ready.store(false, Ordering::Relaxed);
                        continue 'outer;
                    }
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

/// On shutdown: gives back the messages the server has already handed this
/// consumer but no handler has started, so another instance can take them
/// in about a second instead of after `ack_wait`.
///
/// The pull stream keeps asking for more while this runs, and the server
/// answers from the backlog and with the very messages given back, so the
/// return is bounded: no more than the server can have outstanding with
/// this consumer (`max_ack_pending`), no message twice, and within
/// [`RETURN_WITHIN`]. What is left is redelivered after `ack_wait`, as after
/// a crash.
async fn return_unstarted(messages: &mut pull::Stream, spec: &ConsumerSpec) {
    let outstanding = max_ack_pending(spec) as usize;
    let deadline = tokio::time::Instant::now() + RETURN_WITHIN;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < outstanding {
        let next = tokio::time::timeout(Duration::from_millis(50), messages.next());
        let msg = match tokio::time::timeout_at(deadline, next).await {
            Ok(Ok(Some(Ok(msg)))) => msg,
            _ => break,
        };
        let repeat = msg.info().is_ok_and(|i| !seen.insert(i.stream_sequence));
        if repeat {
            // Given back already and handed out again: everything
            // outstanding has gone round once.
            break;
        }
        // A short delay, so the server does not hand it straight back to
        // this consumer while it is still draining.
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
    }
    if !seen.is_empty() {
        info!(consumer = %spec.durable, returned = seen.len(), "returned unstarted messages on shutdown");
    }
}

/// The longest a stopping consumer spends giving back unstarted messages.
const RETURN_WITHIN: Duration = Duration::from_secs(2);

/// How many messages the server lets this consumer hold unacknowledged.
fn max_ack_pending(spec: &ConsumerSpec) -> i64 {
    if spec.concurrency == 1 {
        1
    } else {
        (spec.concurrency * 4).max(1024) as i64
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
        max_ack_pending: max_ack_pending(spec),
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
