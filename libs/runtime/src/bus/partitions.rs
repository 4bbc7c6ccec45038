//! The in-order consumers of the case stream, one per partition, and what
//! they do with a message that cannot be handled (`docs/error-handling.md`):
//! a failure of something the handler depends on is retried in place for
//! as long as it lasts; a message that can never be handled as it is is
//! set aside in the dead-letter stream, so that it does not hold up the
//! rest of its partition.

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use async_nats::jetstream::{self, AckKind};
use herald_proto::{subjects, v1::DeadMessage};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{Bus, ConsumerSpec, Disposition, consume};
use crate::retry::Backoff;

/// A message that can never be handled as it is: it does not decode, or
/// state it must change is unreadable. Returned (as the error of a
/// handler, through `anyhow`) it sets the message aside instead of
/// retrying it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// Runs an in-order consumer on every partition of the case stream:
/// durable `<durable>-<partition>`, subjects `filter(partition)`, one
/// message at a time, so a case's messages are handled in the order they
/// were stored while partitions proceed side by side.
///
/// An `Err` from `handle` that is a [`Permanent`] sets the message aside:
/// it is written to the dead-letter stream with the reason
/// (`DeadMessage`) and the partition goes on. Any other `Err` (Redis or
/// NATS away) is retried in place, with a growing pause, telling
/// JetStream the message is still being worked on, because asking for a
/// redelivery would let the partition's next message overtake it. On
/// shutdown the message in hand is handed back at once.
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
            let spec_durable = spec.durable.clone();
            let (bus, shutdown, handle) = (bus.clone(), shutdown.clone(), handle.clone());
            tokio::spawn(async move {
                let stop = shutdown.clone();
                consume(&bus, spec, ready, shutdown, Duration::from_secs(10), {
                    let (bus, durable) = (bus.clone(), spec_durable.clone());
                    move |msg| {
                        let (handle, stop) = (handle.clone(), stop.clone());
                        let (bus, durable) = (bus.clone(), durable.clone());
                        async move { until_answered(&bus, &durable, msg, &stop, handle).await }
                    }
                })
                .await
            })
        })
        .collect()
}

async fn until_answered<F, Fut>(
    bus: &Bus,
    durable: &str,
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
        let e = match handle(msg.clone()).await {
            Ok(d) => return d,
            Err(e) => e,
        };
        let subject = subjects::destination_template(&msg.subject);
        match e.downcast_ref::<Permanent>() {
            Some(why) => match set_aside(bus, durable, &msg, &why.0).await {
                Ok(()) => {
                    error!(%subject, consumer = durable, reason = %why.0, "message set aside in the dead-letter stream");
                    return Disposition::Reject;
                }
                Err(e) => warn!(%subject, error = %e, "could not set the message aside; retrying"),
            },
            None => warn!(%subject, error = %e, "handling failed; retrying in place"),
        }
        if stop.is_cancelled() {
            return Disposition::Retry(Duration::ZERO);
        }
        let _ = msg.ack_with(AckKind::Progress).await;
        if !backoff.wait(stop).await {
            return Disposition::Retry(Duration::ZERO);
        }
    }
}

/// Writes a message to the dead-letter stream as it was stored, with why;
/// the id makes a repeat (after a crash before the ack) one letter.
async fn set_aside(
    bus: &Bus,
    durable: &str,
    msg: &jetstream::Message,
    reason: &str,
) -> Result<(), super::PublishError> {
    let (stream, sequence) = msg
        .info()
        .map(|i| (i.stream.to_string(), i.stream_sequence))
        .unwrap_or_default();
    let letter = DeadMessage {
        stream: stream.clone(),
        sequence,
        subject: msg.subject.to_string(),
        consumer: durable.to_string(),
        reason: reason.to_string(),
        payload: msg.payload.to_vec(),
        at: Some(herald_proto::now()),
    };
    let id = format!("dead-{stream}-{sequence}-{durable}");
    bus.publish_durable(subjects::dlq_message(durable), &letter, Some(&id))
        .await
}
