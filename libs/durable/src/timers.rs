//! Durable timers in Redis: "do something about `id` at time `t`", kept so
//! that a restart loses none and two instances never fire the same one at
//! once.
//!
//! A queue is two sorted sets under `<owner keyspace>timer:<queue>:`:
//!
//! * `due`: timer id → when it is due (ms since the epoch);
//! * `lease`: timer id → until when the instance that claimed it owns it.
//!
//! ```text
//!   schedule ──▶ due ──claim (atomic, batch)──▶ lease ──complete──▶ (gone)
//!                 ▲                               │
//!                 └──── lease ran out (holder ────┘
//!                        died): due again at once
//! ```
//!
//! * `claim` moves due timers to `lease` in one Lua script, so exactly one
//!   instance holds a timer at a time.
//! * A holder that dies leaves its lease to run out; the next `claim` by any
//!   instance makes the timer due again, so nothing is lost. Firing is
//!   therefore at least once: a handler makes its effect idempotent (a
//!   JetStream message id derived from the timer, a state check in Redis),
//!   and the lease must be shorter than the dedupe window it relies on.
//! * A handler may `schedule` the same id again while holding it (a warning
//!   that arms the breach); `complete` then drops only the lease, and the new
//!   due time stands. `cancel` removes a timer wherever it is.
//!
//! Ids are the caller's; keep them short (a million pending timers cost
//! about 100 bytes each in Redis, most of it the sorted-set entry).

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use herald_runtime::clock::{Clock, from_millis, millis};
use herald_runtime::retry::Backoff;

/// One claimed timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: String,
    /// When it was due; for a timer recovered from a dead holder, when the
    /// recovery happened.
    pub due_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Timers {
    redis: ConnectionManager,
    due_key: String,
    lease_key: String,
    claim: Script,
    swap: Script,
    /// Woken when this process schedules a timer, so a runner sleeping
    /// towards a later one re-reads the queue.
    wake: Arc<Notify>,
}

/// KEYS: due, lease. ARGV: now ms, limit, lease ms.
/// Returns a flat list: id, due ms, id, due ms, ...
const CLAIM: &str = r#"
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], 'NX', now, id)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local until_ms = now + tonumber(ARGV[3])
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
  redis.call('ZADD', KEYS[2], until_ms, due[i])
end
return due
"#;

/// KEYS: state, due, lease. ARGV: expected ("0" absent, "1"..value), new
/// value, ttl s (0: no expiry), then (timer id, due ms or -1) pairs.
/// 1 if written, 0 if the state had changed.
const SWAP: &str = r#"
local cur = redis.call('GET', KEYS[1])
local seen = '0'
if cur then seen = '1' .. cur end
if seen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
for i = 4, #ARGV, 2 do
  local due = tonumber(ARGV[i + 1])
  if due >= 0 then
    redis.call('ZADD', KEYS[2], due, ARGV[i])
  else
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[3], ARGV[i])
  end
end
return 1
"#;

/// What [`Timers::swap_state`] does to one timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// Due at this instant (ms since the epoch), set or moved.
    At(String, i64),
    /// Cancelled, pending or claimed.
    Cancel(String),
}

impl Timers {
    /// The queue `name` under the deployment's key prefix.
    pub fn new(redis: ConnectionManager, prefix: &str, name: &str) -> Timers {
        Timers {
            redis,
            due_key: format!("{prefix}timer:{name}:due"),
            lease_key: format!("{prefix}timer:{name}:lease"),
            claim: Script::new(CLAIM),
            swap: Script::new(SWAP),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The sorted sets behind the queue (due, then lease), for a caller
    /// that changes its own state and its timers in one atomic script.
    pub fn keys(&self) -> (&str, &str) {
        (&self.due_key, &self.lease_key)
    }

    /// Tells this process's runner that a timer was set behind its back
    /// (through [`Timers::keys`]), so it looks at the queue again.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Changes a state value kept beside the queue and timers of this
    /// queue in one atomic step, if the value is still `expected` (`None`:
    /// absent); false if someone changed it meanwhile (read again and
    /// redo). `ttl` expires the value (zero: kept). A service keeping "what
    /// happens next" per item this way never has a timer without its state
    /// or a state without its timer, and two writers never lose each
    /// other's change.
    pub async fn swap_state(
        &self,
        state_key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Duration,
        changes: &[TimerChange],
    ) -> redis::RedisResult<bool> {
        let mut seen = Vec::with_capacity(1 + expected.map_or(0, <[u8]>::len));
        match expected {
            None => seen.push(b'0'),
            Some(v) => {
                seen.push(b'1');
                seen.extend_from_slice(v);
            }
        }
        let mut call = self.swap.prepare_invoke();
        call.key(state_key)
            .key(&self.due_key)
            .key(&self.lease_key)
            .arg(seen)
            .arg(value)
            .arg(ttl.as_secs());
        let mut scheduled = false;
        for ch in changes {
            match ch {
                TimerChange::At(id, at) => {
                    scheduled = true;
                    call.arg(id).arg(*at);
                }
                TimerChange::Cancel(id) => {
                    call.arg(id).arg(-1);
                }
            }
        }
        let mut c = self.redis.clone();
        let written: i64 = call.invoke_async(&mut c).await?;
        if written == 1 && scheduled {
            self.wake.notify_one();
        }
        Ok(written == 1)
    }

    /// Sets (or moves) timer `id` to fire at `at`.
    pub async fn schedule(&self, id: &str, at: DateTime<Utc>) -> redis::RedisResult<()> {
        let mut c = self.redis.clone();
        let _: () = c.zadd(&self.due_key, id, millis(at)).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Sets many timers in one round trip.
    pub async fn schedule_many(&self, items: &[(String, DateTime<Utc>)]) -> redis::RedisResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut c = self.redis.clone();
        let members: Vec<(i64, &str)> = items
            .iter()
            .map(|(id, at)| (millis(*at), id.as_str()))
            .collect();
        let _: () = c.zadd_multiple(&self.due_key, &members).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Removes timer `id`, pending or claimed. True if it existed.
    pub async fn cancel(&self, id: &str) -> redis::RedisResult<bool> {
        let mut c = self.redis.clone();
        let (a, b): (u32, u32) = redis::pipe()
            .atomic()
            .zrem(&self.due_key, id)
            .zrem(&self.lease_key, id)
            .query_async(&mut c)
            .await?;
        Ok(a + b > 0)
    }

    /// Claims up to `limit` timers due at `now`, each for `lease`.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> redis::RedisResult<Vec<Due>> {
        let mut c = self.redis.clone();
        let flat: Vec<String> = self
            .claim
            .key(&self.due_key)
            .key(&self.lease_key)
            .arg(millis(now))
            .arg(limit.max(1))
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(flat
            .chunks_exact(2)
            .map(|p| Due {
                id: p[0].clone(),
                due_at: from_millis(p[1].parse::<f64>().unwrap_or(0.0) as i64),
            })
            .collect())
    }

    /// Releases claimed timers whose work is done. A timer scheduled again
    /// while held stays due at its new time.
    pub async fn complete(&self, ids: &[String]) -> redis::RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.redis.clone();
        let _: () = c.zrem(&self.lease_key, ids).await?;
        Ok(())
    }

    /// When timer `id` is next due, if it is pending.
    pub async fn due_at(&self, id: &str) -> redis::RedisResult<Option<DateTime<Utc>>> {
        let mut c = self.redis.clone();
        let score: Option<f64> = c.zscore(&self.due_key, id).await?;
        Ok(score.map(|s| from_millis(s as i64)))
    }

    /// The earliest due time in the queue, or the earliest lease to run
    /// out, whichever comes first.
    pub async fn next_due(&self) -> redis::RedisResult<Option<DateTime<Utc>>> {
        let mut c = self.redis.clone();
        type Firsts = (Vec<(String, f64)>, Vec<(String, f64)>);
        let (due, lease): Firsts = redis::pipe()
            .zrange_withscores(&self.due_key, 0, 0)
            .zrange_withscores(&self.lease_key, 0, 0)
            .query_async(&mut c)
            .await?;
        Ok(due
            .into_iter()
            .chain(lease)
            .map(|(_, s)| s as i64)
            .min()
            .map(from_millis))
    }

    /// Pending timers (not counting claimed ones).
    pub async fn pending(&self) -> redis::RedisResult<u64> {
        let mut c = self.redis.clone();
        c.zcard(&self.due_key).await
    }
}

/// How a runner claims and sleeps.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Timers claimed per round trip.
    pub batch: usize,
    /// How long a claimed timer is this instance's before another may take
    /// it over. Longer than the slowest handler; shorter than the dedupe
    /// window its handler relies on.
    pub lease: Duration,
    /// The longest a runner sleeps without looking at the queue: the bound
    /// on how late a timer another instance scheduled can fire.
    pub poll: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch: 1000,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
        }
    }
}

/// Fires timers until `shutdown`: claims what is due and hands each batch
/// to `handler`, which returns the ids it finished. Ids it does not return
/// stay claimed until their lease runs out, then fire again (on any
/// instance). Between batches it sleeps until the next due time, at most
/// `opts.poll`, and wakes early when this process schedules a timer. It
/// ends only on shutdown (with `Ok`, so a service can run it beside its
/// other tasks).
pub async fn run<F, Fut>(
    timers: Timers,
    clock: Arc<dyn Clock>,
    opts: RunOptions,
    shutdown: CancellationToken,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<Due>) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    while !shutdown.is_cancelled() {
        match timers.claim_due(clock.now(), opts.batch, opts.lease).await {
            Ok(batch) if !batch.is_empty() => {
                backoff.reset();
                let full = batch.len() >= opts.batch;
                let done = handler(batch).await;
                if let Err(e) = timers.complete(&done).await {
                    // The leases run out and the timers fire again; the
                    // handlers are idempotent.
                    warn!(error = %e, "could not release finished timers");
                }
                if full {
                    continue;
                }
            }
            Ok(_) => backoff.reset(),
            Err(e) => {
                warn!(error = %e, "claiming timers failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        }
        let sleep = match timers.next_due().await {
            Ok(Some(next)) => (next - clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(opts.poll),
            _ => opts.poll,
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(sleep) => {}
            _ = timers.wake.notified() => {}
        }
    }
    Ok(())
}
