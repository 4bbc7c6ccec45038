//! Answering requests over NATS request/reply: intake's front doors, the
//! coordinators' desk, the query subjects of sla, escalation and the
//! broadcast service. One loop for all of them, so each is bounded, takes
//! part in the emergency lane's precedence, answers every request it took
//! and drains on shutdown the same way.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio::{sync::Semaphore, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::bus::Gate;

/// How a request subject is served.
#[derive(Clone)]
pub struct ServeOptions {
    /// Requests handled at once.
    pub concurrency: usize,
    /// How requests take part in the emergency lane's precedence: ordinary
    /// ones wait while emergency work is under way ([`Gate::Yield`]);
    /// emergency ones count as such work until answered ([`Gate::Busy`]).
    pub gate: Gate,
    /// On shutdown, how long requests in hand may take to be answered.
    pub grace: Duration,
    /// Requests that arrived together are answered by one task, up to this
    /// many (never waiting for more, so a lone request is not held up):
    /// their store round trips and replies then leave together.
    pub batch: usize,
}

impl ServeOptions {
    pub fn new(concurrency: usize) -> ServeOptions {
        ServeOptions {
            concurrency: concurrency.max(1),
            gate: Gate::None,
            grace: Duration::from_secs(10),
            batch: 1,
        }
    }

    /// Answers up to `batch` requests that are ready together in one task.
    pub fn batch(mut self, batch: usize) -> ServeOptions {
        self.batch = batch.max(1);
        self
    }

    pub fn gate(mut self, gate: Gate) -> ServeOptions {
        self.gate = gate;
        self
    }
}

/// Subscribes to each of `subjects` in queue group `queue` (so any
/// instance answers) and serves them with `handle` on a task. Returns once
/// the subscriptions are made.
pub async fn subscribe_and_serve<S, F, Fut>(
    client: &Client,
    subjects: &[S],
    queue: &str,
    opts: ServeOptions,
    shutdown: CancellationToken,
    handle: F,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>>
where
    S: AsRef<str>,
    F: Fn(async_nats::Message) -> Fut + Send + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    let mut subs: Vec<Subscriber> = Vec::with_capacity(subjects.len());
    for s in subjects {
        subs.push(
            client
                .queue_subscribe(s.as_ref().to_string(), queue.to_string())
                .await?,
        );
    }
    let client = client.clone();
    Ok(tokio::spawn(async move {
        serve(
            client,
            futures::stream::select_all(subs),
            opts,
            shutdown,
            handle,
        )
        .await;
        Ok(())
    }))
}

/// Hands each request to `handle`, at most `opts.concurrency` at once,
/// until `shutdown`, and publishes what it returns to the request's reply
/// subject. On shutdown it stops taking requests and lets the ones in hand
/// finish within `opts.grace` (a caller whose request was not taken times
/// out and retries; every request carries its own idempotency).
pub async fn serve<S, F, Fut>(
    client: Client,
    mut requests: S,
    opts: ServeOptions,
    shutdown: CancellationToken,
    handle: F,
) where
    S: Stream<Item = async_nats::Message> + Unpin,
    F: Fn(async_nats::Message) -> Fut,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(opts.concurrency));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = requests.next() => match m { Some(m) => m, None => break },
        };
        if let Gate::Yield(precedence) = &opts.gate
            && precedence.is_yielding()
        {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = precedence.normal_may_proceed() => {}
            }
        }
        // Boxed, so the task holds a pointer rather than the handler's
        // whole state machine, which spawning would copy several times.
        let mut batch = vec![(msg.reply.clone(), Box::pin(handle(msg)))];
        let mut permits = vec![permit];
        while batch.len() < opts.batch {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            match requests.next().now_or_never() {
                Some(Some(msg)) => {
                    batch.push((msg.reply.clone(), Box::pin(handle(msg))));
                    permits.push(permit);
                }
                _ => break,
            }
        }
        // One guard per request, as for consumers.
        let busy: Vec<_> = match &opts.gate {
            Gate::Busy(precedence) => batch.iter().map(|_| precedence.busy()).collect(),
            _ => Vec::new(),
        };
        let client = client.clone();
        tokio::spawn(async move {
            let (to, work): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let replies = futures::future::join_all(work).await;
            drop(busy);
            for (to, reply) in to.into_iter().zip(replies) {
                if let (Some(to), Some(reply)) = (to, reply)
                    && let Err(e) = client.publish(to, reply).await
                {
                    warn!(error = %e, "could not send the reply");
                }
            }
            drop(permits);
        });
    }
    drop(requests);
    let _ = tokio::time::timeout(opts.grace, slots.acquire_many(opts.concurrency as u32)).await;
}
