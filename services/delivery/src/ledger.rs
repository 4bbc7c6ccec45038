//! The send ledger: how delivery makes sure a job redelivered by JetStream
//! (after a crash, a restart, an ack timeout, or on a second instance) never
//! sends a second email, SMS or call, and how provider status callbacks
//! find the job they are about.
//!
//! One Redis hash per job, `<delivery keyspace>job:<job_id>`. Its `state` field moves
//! through these states:
//!
//! ```text
//!                  claim                      provider took it, or a status
//!  (absent), idle ───────▶ sending ─────────────────────────────────────▶ sent
//!        ▲            (owner, deadline)     callback says it has it       │
//!        │               │        │                                       │ failure status
//!        │ transient     │        │ permanent failure or retries used     │ (undelivered, busy,
//!        └── release ────┘        │ up, or a failure status came first:   │ no-answer, failed):
//!                                 │ once the fallback job or dead letter  │ handed on once
//!                                 ▼ is safely published                   ▼
//!                               failed                           sent + handed_on
//! ```
//!
//! * `claim` is one Lua script, so two workers can never both hold a job. It
//!   counts attempts (`attempts`), so the retry schedule advances only when
//!   a send was really tried, not when JetStream redelivers for other
//!   reasons. A job that is `sent` or `failed` is acknowledged without
//!   sending.
//! * `sending` is a lease, held by a process (its owner id). A redelivery
//!   of a job that process holds but is not working on (the reply to its
//!   claim was lost with a Redis restart) is taken back at once, not
//!   counted as interrupted: nothing was sent. If its holder dies, the
//!   lease runs out and the next delivery of the job takes over; that
//!   take-over is reported as *interrupted*, because the dead worker may
//!   or may not have reached the provider. This is the one window no
//!   ledger can close: the provider accepted the message but the worker
//!   died before writing `sent`. The repeat carries the same idempotency
//!   key (`Idempotency-Key` header, SMTP `Message-ID`), so a provider that
//!   honours it drops the repeat; a plain SMTP server will deliver it
//!   twice.
//! * `sent` is written before JetStream is acknowledged, and kept for
//!   `delivery.sent_ttl`, well past JetStream's redelivery horizon. A job
//!   already `failed` (a failure status beat the provider's answer) stays
//!   failed, and the worker does not document the send as a success.
//! * A provider status callback is proof the provider has the message: one
//!   that arrives while the job is `idle` or `sending` (the worker timed out
//!   waiting for an answer the provider did send) moves it to `sent`, or to
//!   `failed` for a failure status, so the job is not sent again.
//! * Status fields (`status`, `final`) record what the provider reported;
//!   `handed_on` records that a failure status already produced its fallback
//!   job or dead letter, so a callback repeated by the provider hands on
//!   once. The job itself (`job`, encoded) is kept while callbacks can still
//!   come, and dropped once a final status arrives.
//!
//! Each failed attempt also appends a line to `<delivery keyspace>jobhist:<job_id>`,
//! the history a dead letter carries, and so does a send a provider's
//! failure report may still follow (status callbacks on); a send nothing
//! can follow writes none, since nothing would read it.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This worker holds the job for attempt number `attempt` (1 on the
    /// first). `interrupted` means an earlier holder's lease ran out
    /// mid-attempt.
    Claimed { attempt: u32, interrupted: bool },
    /// Another worker holds a live lease; try again after this long.
    Busy(Duration),
    /// Already sent (provider id), nothing to do.
    Sent(String),
    /// Already failed permanently and handed on.
    Failed,
}

/// What the ledger knows of a job before anything is claimed.
#[derive(Debug, Clone, PartialEq)]
pub enum Peek {
    /// Never tried, or released after a transient failure.
    Open,
    Sending,
    Sent {
        provider_id: String,
        attempts: u32,
    },
    Failed,
}

/// What writing `sent` found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recorded {
    /// The job is `sent`: never to be sent again.
    Sent,
    /// A failure status from the provider settled the job first (`failed`,
    /// its fallback or dead letter under way or published): it stays
    /// failed, and the send is not documented as a success.
    AlreadyFailed,
}

/// What recording a provider status did.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusOutcome {
    /// The ledger has no such job (never sent, or long expired).
    Unknown,
    /// Recorded. `meta` is the job's identifiers as stored at claim time
    /// (encoded `DeliveryJob` without address or content).
    Recorded {
        meta: Vec<u8>,
        /// The attempt the status is about.
        attempt: u32,
        hand_on: HandOn,
    },
    /// A final status had already been recorded; this one changes nothing.
    Stale { meta: Vec<u8> },
}

/// Whether a failure status still has to produce a fallback or dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum HandOn {
    No,
    /// Yes, and here is the whole job as stored at claim time.
    Job(Vec<u8>),
    /// Yes, but the stored job has expired.
    Lost,
}

/// A job this process is working on, from before its claim to the end of
/// its turn: what lets the process tell its own claim whose reply was lost
/// (Redis went away after running the claim) from a redelivery of a job
/// one of its tasks is sending right now. See [`Ledger::in_flight`].
pub struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    job_id: String,
    /// This handle put the job in the set: no other task of this process
    /// was working on it.
    sole: bool,
}

impl InFlight {
    /// Leaves the job marked as in flight after this turn, for a send the
    /// provider took but the ledger could not record: the claim this
    /// process still holds is then treated like anyone else's, and taking
    /// it over once its lease runs out counts as interrupted, because the
    /// provider may indeed get the message twice.
    pub fn keep_marked(mut self) {
        self.sole = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.sole {
            let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
            set.remove(&self.job_id);
        }
    }
}

#[derive(Clone)]
pub struct Ledger {
    redis: ConnectionManager,
    prefix: String,
    owner: String,
    /// Jobs this process is working on (shared by every clone, so by every
    /// worker task of the process; the owner id is per process too).
    in_flight: Arc<Mutex<HashSet<String>>>,
    lease: Duration,
    keep: Duration,
    claim: Script,
    release: Script,
    sent: Script,
    status: Script,
}

/// KEYS[1] job hash. ARGV: owner, lease ms, keep s, job bytes ("" to skip),
/// meta bytes ("" to skip), whether the owner is not working on the job
/// now ("1": a claim it holds is one whose reply it lost).
///
/// A claim held by the same owner that is not working on the job is taken
/// back at once and is not an interruption: that owner sent nothing under
/// it. Its attempt is the one that claim counted, not a new one.
const CLAIM: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state')
local interrupted = '0'
local retake = false
if state == 'sending' then
  if ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
    retake = true
  else
    local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline') or '0')
    if deadline > now then
      return {'busy', tostring(deadline - now), '0'}
    end
    interrupted = '1'
  end
elseif state == 'sent' then
  return {'sent', redis.call('HGET', KEYS[1], 'provider_id') or '', '0'}
elseif state == 'failed' then
  return {'failed', '', '0'}
end
local attempt
if not state then
  -- A job never claimed (nearly every claim): its first attempt, set
  -- with the rest of the state in one write.
  attempt = 1
elseif retake then
  attempt = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
  if attempt < 1 then
    attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  end
else
  attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
local fields = {'state', 'sending', 'owner', ARGV[1], 'deadline', tostring(now + tonumber(ARGV[2])), 'attempts', tostring(attempt)}
if ARGV[4] ~= '' then
  table.insert(fields, 'job')
  table.insert(fields, ARGV[4])
end
if ARGV[5] ~= '' then
  table.insert(fields, 'meta')
  table.insert(fields, ARGV[5])
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'claimed', interrupted, tostring(attempt)}
"#;

/// Back to `idle` after a transient failure, only by the lease holder and
/// only if nothing (a status callback) has settled the job meanwhile.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'state') == 'sending' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'idle')
  redis.call('HDEL', KEYS[1], 'owner', 'deadline')
  return 1
end
return 0
"#;

/// `sent`, unless a failure status has already settled the job, and the
/// attempt's line in the history. KEYS: job hash, history list. ARGV:
/// provider id, now ms, keep s, history line.
///
/// Two commands on the hot path: the claim, a lease ago at most, already
/// set the hash to live `keep`, and `owner` and `deadline` mean nothing
/// once the state is `sent` (only a `sending` job's are read), so neither
/// is touched again.
const SENT: &str = r#"
if ARGV[4] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if redis.call('HGET', KEYS[1], 'state') == 'failed' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'sent', 'provider_id', ARGV[1], 'sent_at', ARGV[2])
return 1
"#;

/// A provider status. ARGV: status name, final (0/1), failure (0/1),
/// provider id, now ms, keep s. Returns {outcome, meta, job, attempt}.
const STATUS: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'unknown', '', '', '0'}
end
local attempt = redis.call('HGET', KEYS[1], 'attempts') or '0'
local meta = redis.call('HGET', KEYS[1], 'meta') or ''
if redis.call('HGET', KEYS[1], 'final') == '1' and redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then
  return {'stale', meta, '', attempt}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_at', ARGV[5])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'final', '1')
end
if state ~= 'sent' and state ~= 'failed' then
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], 'state', 'failed', 'reason', 'provider reported ' .. ARGV[1])
  else
    redis.call('HSET', KEYS[1], 'state', 'sent', 'sent_at', ARGV[5])
  end
  redis.call('HDEL', KEYS[1], 'owner', 'deadline')
end
if ARGV[4] ~= '' and not redis.call('HGET', KEYS[1], 'provider_id') then
  redis.call('HSET', KEYS[1], 'provider_id', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'handed_on') ~= '1' then
  local job = redis.call('HGET', KEYS[1], 'job')
  if job then
    return {'hand_on', meta, job, attempt}
  end
  return {'hand_on_lost', meta, '', attempt}
end
return {'recorded', meta, '', attempt}
"#;

impl Ledger {
    pub fn new(
        redis: ConnectionManager,
        prefix: &str,
        owner: &str,
        lease: Duration,
        keep: Duration,
    ) -> Ledger {
        Ledger {
            redis,
            prefix: herald_proto::keyspace::DELIVERY.prefix(prefix),
            owner: owner.to_string(),
            in_flight: Arc::default(),
            lease,
            keep,
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            sent: Script::new(SENT),
            status: Script::new(STATUS),
        }
    }

    fn key(&self, job_id: &str) -> String {
        format!("{}job:{job_id}", self.prefix)
    }

    fn keep_secs(&self) -> u64 {
        self.keep.as_secs().max(1)
    }

    /// How long a claim protects a job from other workers.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Where the job stands, without changing anything: a redelivered job
    /// that was already sent is recognised before it waits on any limit.
    pub async fn peek(&self, job_id: &str) -> redis::RedisResult<Peek> {
        let mut r = self.redis.clone();
        let (state, provider_id, attempts): (Option<String>, Option<String>, Option<u32>) =
            redis::cmd("HMGET")
                .arg(self.key(job_id))
                .arg("state")
                .arg("provider_id")
                .arg("attempts")
                .query_async(&mut r)
                .await?;
        Ok(match state.as_deref() {
            Some("sent") => Peek::Sent {
                provider_id: provider_id.unwrap_or_default(),
                attempts: attempts.unwrap_or(0),
            },
            Some("failed") => Peek::Failed,
            Some("sending") => Peek::Sending,
            _ => Peek::Open,
        })
    }

    /// Attempts started so far.
    pub async fn attempts(&self, job_id: &str) -> redis::RedisResult<u32> {
        let mut r = self.redis.clone();
        let n: Option<u32> = redis::cmd("HGET")
            .arg(self.key(job_id))
            .arg("attempts")
            .query_async(&mut r)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Marks `job_id` as being worked on by this process for as long as
    /// the handle lives; a worker takes it before claiming the job and
    /// keeps it to the end of its turn.
    pub fn in_flight(&self, job_id: &str) -> InFlight {
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let sole = set.insert(job_id.to_string());
        InFlight {
            set: self.in_flight.clone(),
            job_id: job_id.to_string(),
            sole,
        }
    }

    /// Takes the job named by `here` for one attempt. When status callbacks
    /// may come back for it, the job is stored with it (`job`, needed to
    /// fall back) with its identifiers (`meta`, needed to document the
    /// status).
    ///
    /// A claim this process already holds is its own: when no other task
    /// here is working on the job, the claim ran but its reply was lost
    /// (Redis restarted with the answer on the wire), nothing was sent, and
    /// the job is taken back at once, not refused as busy until the lease
    /// runs out and then counted as interrupted. When another task here is
    /// sending it (a redelivery while in flight), it is busy as for anyone.
    pub async fn claim(
        &self,
        here: &InFlight,
        job: Option<&[u8]>,
        meta: Option<&[u8]>,
    ) -> redis::RedisResult<Claim> {
        let mut r = self.redis.clone();
        let (state, detail, attempt): (String, String, String) = self
            .claim
            .key(self.key(&here.job_id))
            .arg(&self.owner)
            .arg(self.lease.as_millis() as u64)
            .arg(self.keep_secs())
            .arg(job.unwrap_or_default())
            .arg(meta.unwrap_or_default())
            .arg(if here.sole { "1" } else { "0" })
            .invoke_async(&mut r)
            .await?;
        Ok(match state.as_str() {
            "claimed" => Claim::Claimed {
                attempt: attempt.parse().unwrap_or(1),
                interrupted: detail == "1",
            },
            "busy" => Claim::Busy(Duration::from_millis(detail.parse().unwrap_or(1000))),
            "sent" => Claim::Sent(detail),
            _ => Claim::Failed,
        })
    }

    /// The provider took the message: never send this job again, unless a
    /// failure status has already settled it (see [`Recorded`]). `line`,
    /// if any, joins the job's attempt history in the same step: only a
    /// dead letter reads the history, so a send no failure report can
    /// follow (no status callback will come) writes none.
    pub async fn sent(
        &self,
        job_id: &str,
        provider_id: &str,
        line: Option<&str>,
    ) -> redis::RedisResult<Recorded> {
        let mut r = self.redis.clone();
        let written = self
            .sent
            .key(self.key(job_id))
            .key(self.history_key(job_id))
            .arg(provider_id)
            .arg(now_ms())
            .arg(self.keep_secs())
            .arg(line.unwrap_or_default())
            .invoke_async::<i64>(&mut r)
            .await?;
        Ok(if written == 1 {
            Recorded::Sent
        } else {
            Recorded::AlreadyFailed
        })
    }

    /// Failed for good, and the fallback or dead letter is published.
    pub async fn failed(&self, job_id: &str, reason: &str) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::pipe()
            .hset_multiple(
                self.key(job_id),
                &[
                    ("state", "failed".to_string()),
                    ("reason", reason.replace('\n', " ")),
                    ("handed_on", "1".to_string()),
                    ("failed_at", now_ms().to_string()),
                ],
            )
            .hdel(self.key(job_id), &["owner", "deadline", "job"])
            .expire(self.key(job_id), self.keep_secs() as i64)
            .exec_async(&mut r)
            .await
    }

    /// Gives the job back after a transient failure, so a later delivery
    /// can claim it.
    pub async fn release(&self, job_id: &str) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        self.release
            .key(self.key(job_id))
            .arg(&self.owner)
            .invoke_async::<i64>(&mut r)
            .await?;
        Ok(())
    }

    /// Records a provider status callback (see the module notes).
    pub async fn status(
        &self,
        job_id: &str,
        status: &str,
        is_final: bool,
        is_failure: bool,
        provider_id: &str,
    ) -> redis::RedisResult<StatusOutcome> {
        let mut r = self.redis.clone();
        let (outcome, meta, job, attempt): (String, Vec<u8>, Vec<u8>, String) = self
            .status
            .key(self.key(job_id))
            .arg(status)
            .arg(if is_final { "1" } else { "0" })
            .arg(if is_failure { "1" } else { "0" })
            .arg(provider_id)
            .arg(now_ms())
            .arg(self.keep_secs())
            .invoke_async(&mut r)
            .await?;
        let attempt = attempt.parse().unwrap_or(0);
        Ok(match outcome.as_str() {
            "unknown" => StatusOutcome::Unknown,
            "stale" => StatusOutcome::Stale { meta },
            other => StatusOutcome::Recorded {
                meta,
                attempt,
                hand_on: match other {
                    "hand_on" => HandOn::Job(job),
                    "hand_on_lost" => HandOn::Lost,
                    _ => HandOn::No,
                },
            },
        })
    }

    /// A failure status has produced its fallback job or dead letter; the
    /// stored job is no longer needed.
    pub async fn handed_on(&self, job_id: &str) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::pipe()
            .hset(self.key(job_id), "handed_on", "1")
            .hdel(self.key(job_id), "job")
            .exec_async(&mut r)
            .await
    }

    /// A final success status: callbacks are over, drop the stored job.
    pub async fn forget_job(&self, job_id: &str) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("HDEL")
            .arg(self.key(job_id))
            .arg("job")
            .exec_async(&mut r)
            .await
    }

    /// Appends one attempt to the job's history (kept as long as the ledger
    /// entry), for dead letters and `herald dlq show`.
    fn history_key(&self, job_id: &str) -> String {
        format!("{}jobhist:{job_id}", self.prefix)
    }

    pub async fn note_attempt(&self, job_id: &str, line: String) -> redis::RedisResult<()> {
        let key = self.history_key(job_id);
        let mut r = self.redis.clone();
        redis::pipe()
            .rpush(&key, line)
            .expire(&key, self.keep_secs() as i64)
            .exec_async(&mut r)
            .await
    }

    pub async fn history(&self, job_id: &str) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        redis::cmd("LRANGE")
            .arg(self.history_key(job_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut r)
            .await
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}
