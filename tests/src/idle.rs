//! Knowing that nothing more is on its way, without sleeping on it.
//!
//! Every piece of Herald's work travels through a JetStream stream to a
//! durable consumer that acknowledges it only once it is done: the router
//! acknowledges a notification after publishing its jobs, delivery a job
//! after the provider answered (a retry waits unacknowledged, and a
//! fallback is published before the failed job is acknowledged), the
//! broadcast service a command after publishing its calls. So once every
//! durable consumer has been given every message and settled each one, and
//! nothing was published meanwhile, Herald is **idle**: nothing more
//! reaches a provider until something new is published, by a request or
//! by a durable timer firing (an escalation level, a call cycle, a
//! breach).
//!
//! The timers are the other half. They live in Redis
//! (`herald_durable::timers`: a `due` and a `lease` sorted set per queue,
//! under `<prefix><owner keyspace>:timer:<queue>:`), and a timer stays in one of them until
//! the handler that fired it has published what it had to. So once no
//! timer is pending or claimed in any queue as well, Herald is
//! **settled**: nothing more happens at all until a test does something.
//!
//! Tests that must show that something did *not* happen wait for one of
//! these rather than for a while: a message that was going to be sent, a
//! retry, a redelivery or a level that was going to fire necessarily
//! comes before them. Idle suits a test whose timers lie far ahead by
//! design (a broadcast's end, a follow-up an hour away); settled one whose
//! work must all be over.
//!
//! One gap remains: a handler whose timer is cancelled by someone else
//! while it runs (an acknowledgement stored the moment a level fires) has
//! no trace left in Redis until it publishes. Tests of that race say what
//! they rely on.

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream;
use futures::StreamExt;
use redis::aio::ConnectionManager;

/// Waits until Herald is idle (see the module), panicking after
/// `timeout` with what is still busy.
pub async fn wait(js: &jetstream::Context, timeout: Duration) {
    wait_for(js, None, timeout).await
}

/// Waits until Herald is settled (see the module): idle, and no durable
/// timer pending or claimed under `prefix`. Panics after `timeout` with
/// what is still busy.
pub async fn wait_settled(
    js: &jetstream::Context,
    redis: &ConnectionManager,
    prefix: &str,
    timeout: Duration,
) {
    wait_for(js, Some((redis, prefix)), timeout).await
}

async fn wait_for(
    js: &jetstream::Context,
    timers: Option<(&ConnectionManager, &str)>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let busy = match busy(js, timers).await {
            Ok(b) => b,
            Err(e) => vec![format!("JetStream or Redis unreadable: {e}")],
        };
        if busy.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still busy after {timeout:?}: {busy:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What is not settled: consumers with messages not yet given out or not
/// yet acknowledged, timers (when asked), and streams that grew while
/// they were looked at. The timers are read between the consumers and the
/// second look at the streams, so a handler that schedules a timer and
/// then acknowledges, or a timer that fires, publishes and completes,
/// while this looks is caught by one check or the other.
async fn busy(
    js: &jetstream::Context,
    timers: Option<(&ConnectionManager, &str)>,
) -> anyhow::Result<Vec<String>> {
    let before = last_sequences(js).await?;
    let mut busy = Vec::new();
    for name in before.keys() {
        let stream = js.get_stream_no_info(name).await?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info?;
            if info.config.durable_name.is_none() {
                // A test's own reader, not Herald's work.
                continue;
            }
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                busy.push(format!(
                    "{name}/{}: {} not yet given out, {} not yet acknowledged",
                    info.name, info.num_pending, info.num_ack_pending
                ));
            }
        }
    }
    if let Some((redis, prefix)) = timers {
        busy.extend(pending_timers(redis, prefix).await?);
    }
    let after = last_sequences(js).await?;
    for (name, seq) in &after {
        if before.get(name) != Some(seq) {
            busy.push(format!("{name}: published to while it was looked at"));
        }
    }
    Ok(busy)
}

/// Every timer queue holding something, whoever owns it: a sorted set
/// exists in Redis only while it has members. Report schedules
/// (`timer:reports:`) are left out: they recur for as long as they are
/// agreed, so they are never work in flight.
async fn pending_timers(redis: &ConnectionManager, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut c = redis.clone();
    let mut keys: Vec<String> = Vec::new();
    for keyspace in herald_proto::keyspace::ALL {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}timer:*", keyspace.prefix(prefix)))
            .query_async(&mut c)
            .await?;
        keys.extend(found);
    }
    let mut out = Vec::new();
    for key in keys {
        if !(key.ends_with(":due") || key.ends_with(":lease")) || key.contains("timer:reports:") {
            continue;
        }
        let n: u64 = redis::cmd("ZCARD").arg(&key).query_async(&mut c).await?;
        if n > 0 {
            out.push(format!("{key}: {n} timer(s)"));
        }
    }
    Ok(out)
}

async fn last_sequences(js: &jetstream::Context) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut streams = js.streams();
    while let Some(info) = streams.next().await {
        let info = info?;
        out.insert(info.config.name, info.state.last_sequence);
    }
    Ok(out)
}
