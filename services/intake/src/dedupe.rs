//! Idempotency: a retried request returns the first request's notification
//! id, and nothing is queued twice.
//!
//! One Redis key per (requester, idempotency key) holds
//! `<notification id> <request fingerprint> <state>`:
//!
//! ```text
//!   (absent) --claim--> pending --stream confirmed--> done
//! ```
//!
//! A request that finds `done` is answered with the stored id. One that finds
//! `pending` (the first attempt crashed or timed out before the stream
//! confirmed) publishes again under the *same* notification id: JetStream
//! drops the copy if the first publish did land (same message id inside the
//! duplicate window), and the router and delivery derive every job id from
//! the notification id, so nothing is sent twice either way. The same key
//! with a different request is refused rather than silently ignored.

use prost::Message;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::warn;

use herald_proto::v1::NotificationRequest;

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First time this key is seen: queue under this id.
    New,
    /// Seen and queued: answer with this id.
    Done(String),
    /// Seen but not confirmed queued: queue again under this id.
    Pending(String),
    /// Seen with a different request.
    Conflict,
}

/// What [`Dedupe::claim`] worked out for a request: its key and
/// fingerprint, computed once.
pub struct Ticket {
    key: String,
    fingerprint: String,
}

/// A `done` mark on its way to Redis.
struct Mark {
    key: String,
    value: String,
}

/// Marks written in one pipeline, at most.
const MARKS_AT_ONCE: usize = 512;

#[derive(Clone)]
pub struct Dedupe {
    redis: ConnectionManager,
    prefix: String,
    marks: mpsc::UnboundedSender<Mark>,
    ttl_secs: u64,
}

impl Dedupe {
    /// Starts the task that writes `done` marks (so: inside a runtime).
    pub fn new(redis: ConnectionManager, prefix: &str, ttl: std::time::Duration) -> Dedupe {
        let (marks, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_marks(redis.clone(), queued));
        Dedupe {
            redis,
            prefix: herald_proto::keyspace::INTAKE.prefix(prefix),
            marks,
            ttl_secs: ttl.as_secs().max(1),
        }
    }

    /// One caller's keys never meet another's: a system cannot learn
    /// whether another used a key, nor collide with it.
    fn key(&self, caller: &str, req: &NotificationRequest) -> String {
        self.key_of(&format!(
            "{caller}\u{0}{}\u{0}{}",
            req.requester,
            req.idempotency_key.trim()
        ))
    }

    fn key_of(&self, scope: &str) -> String {
        let digest = Sha256::digest(scope.as_bytes());
        format!("{}idem:{}", self.prefix, hex::encode(&digest[..16]))
    }

    /// Claims the key for `notification_id`, or reports who has it; the
    /// ticket names the key and the request's fingerprint, for
    /// [`Dedupe::complete`].
    pub async fn claim(
        &self,
        caller: &str,
        req: &NotificationRequest,
        notification_id: &str,
    ) -> redis::RedisResult<(Claim, Ticket)> {
        let ticket = Ticket {
            key: self.key(caller, req),
            fingerprint: fingerprint(req),
        };
        let claim = self
            .claim_at(
                &ticket.key,
                &ticket.fingerprint,
                notification_id,
                self.ttl_secs,
            )
            .await?;
        Ok((claim, ticket))
    }

    /// As [`Dedupe::claim`] for any kind of request: `scope` names the
    /// idempotency key (who sent it and the key they chose), `fp` is the
    /// request's fingerprint, `id` what a repeat is answered with.
    pub async fn claim_key(&self, scope: &str, fp: &str, id: &str) -> redis::RedisResult<Claim> {
        self.claim_at(&self.key_of(scope), fp, id, self.ttl_secs)
            .await
    }

    /// As [`Dedupe::complete`] for a key claimed with [`Dedupe::claim_key`];
    /// `id` replaces the one given at the claim.
    pub async fn complete_key(&self, scope: &str, fp: &str, id: &str) -> redis::RedisResult<()> {
        self.complete_at(&self.key_of(scope), fp, id).await
    }

    /// Forgets a key claimed with [`Dedupe::claim_key`] whose request was
    /// refused after the claim, so that it can be sent again later.
    pub async fn release_key(&self, scope: &str) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("DEL")
            .arg(self.key_of(scope))
            .query_async::<i64>(&mut r)
            .await?;
        Ok(())
    }

    /// The claim itself, at a full Redis `key` (see [`Dedupe::key_for`]),
    /// remembered for `ttl_secs`.
    pub async fn claim_at(
        &self,
        key: &str,
        fp: &str,
        id: &str,
        ttl_secs: u64,
    ) -> redis::RedisResult<Claim> {
        let mut r = self.redis.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(format!("{id} {fp} pending"))
            .arg("NX")
            .arg("EX")
            .arg(ttl_secs.max(1))
            .query_async(&mut r)
            .await?;
        if set.is_some() {
            return Ok(Claim::New);
        }
        let existing: Option<String> = redis::cmd("GET").arg(key).query_async(&mut r).await?;
        let Some(existing) = existing else {
            // Expired between the two commands: try once more.
            return Box::pin(self.claim_at(key, fp, id, ttl_secs)).await;
        };
        let mut parts = existing.split(' ');
        let (id, their_fp, state) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        Ok(if their_fp != fp {
            Claim::Conflict
        } else if state == "done" {
            Claim::Done(id)
        } else {
            Claim::Pending(id)
        })
    }

    /// Records that the notification is safely in the stream, without
    /// waiting: the marks of requests finished together go to Redis in
    /// one pipeline. A mark that is lost leaves the key `pending`, which
    /// costs a retry a republish under the same id and nothing else.
    pub fn complete(&self, ticket: Ticket, notification_id: &str) {
        let mark = Mark {
            key: ticket.key,
            value: format!("{notification_id} {} done", ticket.fingerprint),
        };
        if self.marks.send(mark).is_err() {
            warn!("the idempotency marker has stopped; the key stays pending");
        }
    }

    /// Marks a claim made with [`Dedupe::claim_at`] done.
    pub async fn complete_at(&self, key: &str, fp: &str, id: &str) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(format!("{id} {fp} done"))
            .arg("XX")
            .arg("KEEPTTL")
            .query_async::<Option<String>>(&mut r)
            .await?;
        Ok(())
    }

    /// Where a claim named `name` is kept, under the deployment's prefix.
    pub fn key_for(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Writes the marks queued by [`Dedupe::complete`]: whatever is queued
/// when a write starts goes in one pipeline. Each mark only moves a
/// `pending` key to `done` (`XX`, keeping its expiry), so a key that
/// expired meanwhile is not brought back.
async fn write_marks(mut redis: ConnectionManager, mut queued: mpsc::UnboundedReceiver<Mark>) {
    let mut marks = Vec::with_capacity(MARKS_AT_ONCE);
    while queued.recv_many(&mut marks, MARKS_AT_ONCE).await > 0 {
        let mut pipe = redis::pipe();
        for m in marks.drain(..) {
            pipe.cmd("SET")
                .arg(m.key)
                .arg(m.value)
                .arg("XX")
                .arg("KEEPTTL")
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut redis).await {
            warn!(error = %e, "could not mark idempotency keys done; they stay pending");
        }
    }
}

/// A digest of the request as received (maps encode in key order, so the
/// encoding is deterministic).
pub fn fingerprint<M: Message>(msg: &M) -> String {
    hex::encode(&Sha256::digest(msg.encode_to_vec())[..12])
}
