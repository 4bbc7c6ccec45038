//! Cancel keys: how a caller stops a notification that is already on its
//! way. A request names keys (`NotificationRequest.cancel_keys`); the router
//! copies them onto every job; delivery checks them after claiming a job
//! and before handing it to a provider, and drops the job if any is
//! cancelled.
//!
//! Two kinds of key:
//!
//! * a plain key (`inq-8`), cancelled once and for all with [`Cancellations::cancel`];
//! * a key in a *family* (`esc-CASE-1@42`: family `esc-CASE-1`, position
//!   42), cancelled when the family is stopped at a later position with
//!   [`Cancellations::stop_before`]. Escalation gives each escalation of a
//!   case the family `esc-<case>` and, as position, the stream sequence of
//!   what started it; an acknowledgement stored later in the same stream
//!   stops every escalation begun before it, including one whose first
//!   notification is not even written yet, and none begun after.
//!
//! Stopping is exact, not best effort: delivery checks the keys and records
//! that it is sending in one atomic step ([`Cancellations::enter`]), and
//! says when the provider has answered ([`Cancellations::leave`]). A
//! canceller that then waits for [`Cancellations::wait_idle`] knows that
//! nothing carrying the key reaches a provider from that moment on: every
//! send either saw the cancellation or has finished. A delivery that dies
//! mid-send holds the key only until its `hold` runs out.
//!
//! Redis keys, under the deployment prefix: `cancel:<key>` (the reason),
//! `cancel-mark:<family>` (position and reason), `cancel-busy:<key or
//! family>` (sorted set of job ids sending, scored by when their hold ends).

use std::time::Duration;

use herald_proto::cancel_keys::split_family;
use herald_runtime::retry::Backoff;
use redis::{Script, aio::ConnectionManager};

/// How long a cancellation is remembered.
pub const TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// KEYS: four per cancel key (cancelled, mark, busy of the key, busy of
/// its family). ARGV: job id, hold ms (0: check only), one position per
/// key (-1: no family). Returns {0, ''} when none is cancelled (and, with
/// a hold, the job is recorded as sending), else {index, reason}.
const ENTER: &str = r#"
local n = #KEYS / 4
for i = 0, n - 1 do
  local reason = redis.call('GET', KEYS[i * 4 + 1])
  if reason then return {i + 1, reason} end
  local pos = tonumber(ARGV[i + 3])
  if pos >= 0 then
    local mark = redis.call('HMGET', KEYS[i * 4 + 2], 'pos', 'reason')
    if mark[1] and tonumber(mark[1]) > pos then
      return {i + 1, mark[2] or 'stopped'}
    end
  end
end
local hold = tonumber(ARGV[2])
if hold > 0 then
  local t = redis.call('TIME')
  local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + hold
  for i = 0, n - 1 do
    for j = 3, 4 do
      local k = KEYS[i * 4 + j]
      redis.call('ZADD', k, until_ms, ARGV[1])
      local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
      redis.call('PEXPIREAT', k, math.floor(tonumber(top[2])) + 60000)
    end
  end
end
return {0, ''}
"#;

/// KEYS[1]: mark. ARGV: position, reason, ttl s. 1 if the mark moved.
const STOP: &str = r#"
local cur = tonumber(redis.call('HGET', KEYS[1], 'pos') or '-1')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'pos', ARGV[1], 'reason', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"#;

/// KEYS[1]: busy set. Sends still under way (holds not yet run out).
const BUSY: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#;

#[derive(Clone)]
pub struct Cancellations {
    redis: ConnectionManager,
    prefix: String,
    /// The other thing a stop can ask: holding a breach's contacts.
    holds: crate::holds::Holds,
}

impl Cancellations {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Cancellations {
        Cancellations {
            holds: crate::holds::Holds::new(redis.clone(), prefix),
            redis,
            prefix: herald_proto::keyspace::DELIVERY.prefix(prefix),
        }
    }

    pub fn holds(&self) -> &crate::holds::Holds {
        &self.holds
    }

    fn cancelled_key(&self, key: &str) -> String {
        format!("{}cancel:{key}", self.prefix)
    }

    fn mark_key(&self, family: &str) -> String {
        format!("{}cancel-mark:{family}", self.prefix)
    }

    fn busy_key(&self, key_or_family: &str) -> String {
        format!("{}cancel-busy:{key_or_family}", self.prefix)
    }

    /// Cancels `key`. True the first time, false if it already was (the
    /// first reason is kept).
    pub async fn cancel(&self, key: &str, reason: &str) -> redis::RedisResult<bool> {
        let mut c = self.redis.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.cancelled_key(key))
            .arg(reason)
            .arg("NX")
            .arg("EX")
            .arg(TTL.as_secs())
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// Cancels every key `family@n` with `n < position`. True if this moved
    /// the family's mark (false if an equal or later stop was there).
    pub async fn stop_before(
        &self,
        family: &str,
        position: u64,
        reason: &str,
    ) -> redis::RedisResult<bool> {
        let mut c = self.redis.clone();
        let moved: i64 = Script::new(STOP)
            .key(self.mark_key(family))
            .arg(position)
            .arg(reason)
            .arg(TTL.as_secs())
            .invoke_async(&mut c)
            .await?;
        Ok(moved == 1)
    }

    /// The first of `keys` that is cancelled, with its reason.
    pub async fn first_cancelled(
        &self,
        keys: &[String],
    ) -> redis::RedisResult<Option<(String, String)>> {
        self.enter("", keys, Duration::ZERO).await
    }

    /// Checks `keys` and, if none is cancelled, records in the same atomic
    /// step that `job_id` is being sent under them, for at most `hold`.
    /// Returns the first cancelled key and its reason instead, recording
    /// nothing. Call [`Cancellations::leave`] once the provider answered.
    pub async fn enter(
        &self,
        job_id: &str,
        keys: &[String],
        hold: Duration,
    ) -> redis::RedisResult<Option<(String, String)>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let script = Script::new(ENTER);
        let mut call = script.prepare_invoke();
        let mut positions = Vec::with_capacity(keys.len());
        for k in keys {
            let family = split_family(k);
            call.key(self.cancelled_key(k));
            call.key(self.mark_key(family.map(|f| f.0).unwrap_or(k)));
            call.key(self.busy_key(k));
            call.key(self.busy_key(family.map(|f| f.0).unwrap_or(k)));
            positions.push(family.map(|f| f.1 as i64).unwrap_or(-1));
        }
        call.arg(job_id).arg(hold.as_millis() as u64);
        for p in positions {
            call.arg(p);
        }
        let mut c = self.redis.clone();
        let (index, reason): (i64, String) = call.invoke_async(&mut c).await?;
        if index <= 0 {
            return Ok(None);
        }
        Ok(keys.get(index as usize - 1).map(|k| (k.clone(), reason)))
    }

    /// The send of `job_id` under `keys` is over (sent, failed or given up).
    pub async fn leave(&self, job_id: &str, keys: &[String]) -> redis::RedisResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.zrem(self.busy_key(k), job_id).ignore();
            if let Some((family, _)) = split_family(k) {
                pipe.zrem(self.busy_key(family), job_id).ignore();
            }
        }
        let mut c = self.redis.clone();
        pipe.exec_async(&mut c).await
    }

    /// Sends under way under a key or a family.
    pub async fn busy(&self, key_or_family: &str) -> redis::RedisResult<u64> {
        let mut c = self.redis.clone();
        Script::new(BUSY)
            .key(self.busy_key(key_or_family))
            .invoke_async(&mut c)
            .await
    }

    /// Waits until no send is under way under `key_or_family`, for at most
    /// `max`. True once none is; false if some were still going at `max`.
    /// After a cancel or a stop, true means nothing carrying the key can
    /// reach a provider any more.
    pub async fn wait_idle(&self, key_or_family: &str, max: Duration) -> redis::RedisResult<bool> {
        let deadline = tokio::time::Instant::now() + max;
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(100));
        loop {
            if self.busy(key_or_family).await? == 0 {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}
