//! The send ledger: how delivery makes sure a job redelivered by JetStream
//! (after a crash, a restart, an ack timeout, or on a second instance) never
//! sends a second email, SMS or call.
//!
//! One Redis key per job, `<prefix>job:<job_id>`, moves through these
//! states:
//!
//! ```text
//!              claim                      provider took it
//!  (absent) ─────────▶ sending <owner> <deadline> ─────────────▶ sent <provider id> <ms>
//!      ▲                    │        │
//!      │   transient failure│        │ permanent failure, after the fallback job
//!      └────── release ─────┘        │ or dead letter is safely published
//!                                    ▼
//!                               failed <ms> <reason>
//! ```
//!
//! * `claim` is one Lua script, so two workers can never both hold a job.
//!   A job that is `sent` or `failed` is acknowledged without sending.
//! * `sending` is a lease. If its holder dies, the lease runs out and the
//!   next delivery of the job takes over; that take-over is reported as
//!   *interrupted*, because the dead worker may or may not have reached the
//!   provider. This is the one window no ledger can close: the provider is
//!   given the job id as its idempotency key (`Idempotency-Key` header, SMTP
//!   `Message-ID`) so a provider that honours it drops the repeat.
//! * `sent` is written before JetStream is acknowledged, and kept for
//!   `delivery.sent_ttl`, well past JetStream's redelivery horizon.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This worker holds the job. `interrupted` means an earlier holder's
    /// lease ran out mid-attempt.
    Claimed { interrupted: bool },
    /// Another worker holds a live lease; try again after this long.
    Busy(Duration),
    /// Already sent (provider id), nothing to do.
    Sent(String),
    /// Already failed permanently and handed on.
    Failed,
}

#[derive(Clone)]
pub struct Ledger {
    redis: ConnectionManager,
    prefix: String,
    owner: String,
    lease: Duration,
    keep: Duration,
    claim: Script,
    release: Script,
}

const CLAIM: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
local interrupted = '0'
if v then
  local state, a, b = string.match(v, '^(%S+) (%S+) (%S+)')
  if state == 'sending' then
    local deadline = tonumber(b)
    if deadline > now then
      return {'busy', tostring(deadline - now)}
    end
    interrupted = '1'
  elseif state == 'sent' then
    return {'sent', a}
  else
    return {'failed', ''}
  end
end
redis.call('SET', KEYS[1], 'sending ' .. ARGV[1] .. ' ' .. tostring(now + tonumber(ARGV[2])), 'EX', ARGV[3])
return {'claimed', interrupted}
"#;

const RELEASE: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 8 + string.len(ARGV[1])) == 'sending ' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
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
            prefix: prefix.to_string(),
            owner: owner.to_string(),
            lease,
            keep,
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        }
    }

    fn key(&self, job_id: &str) -> String {
        format!("{}job:{job_id}", self.prefix)
    }

    pub async fn claim(&self, job_id: &str) -> redis::RedisResult<Claim> {
        let mut r = self.redis.clone();
        let (state, detail): (String, String) = self
            .claim
            .key(self.key(job_id))
            .arg(&self.owner)
            .arg(self.lease.as_millis() as u64)
            .arg(self.keep.as_secs().max(1))
            .invoke_async(&mut r)
            .await?;
        Ok(match state.as_str() {
            "claimed" => Claim::Claimed {
                interrupted: detail == "1",
            },
            "busy" => Claim::Busy(Duration::from_millis(detail.parse().unwrap_or(1000))),
            "sent" => Claim::Sent(detail),
            _ => Claim::Failed,
        })
    }

    /// The provider took the message: never send this job again.
    pub async fn sent(&self, job_id: &str, provider_id: &str) -> redis::RedisResult<()> {
        let id = if provider_id.is_empty() || provider_id.contains(' ') {
            "-"
        } else {
            provider_id
        };
        self.set_final(job_id, format!("sent {id} {}", now_ms()))
            .await
    }

    /// Failed for good, and the fallback or dead letter is published.
    pub async fn failed(&self, job_id: &str, reason: &str) -> redis::RedisResult<()> {
        self.set_final(
            job_id,
            format!("failed {} {}", now_ms(), reason.replace('\n', " ")),
        )
        .await
    }

    async fn set_final(&self, job_id: &str, value: String) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("SET")
            .arg(self.key(job_id))
            .arg(value)
            .arg("EX")
            .arg(self.keep.as_secs().max(1))
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

    /// Appends one attempt to the job's history (kept as long as the ledger
    /// entry), for dead letters and `herald dlq show`.
    pub async fn note_attempt(&self, job_id: &str, line: String) -> redis::RedisResult<()> {
        let key = format!("{}jobhist:{job_id}", self.prefix);
        let mut r = self.redis.clone();
        redis::pipe()
            .rpush(&key, line)
            .expire(&key, self.keep.as_secs().max(1) as i64)
            .exec_async(&mut r)
            .await
    }

    pub async fn history(&self, job_id: &str) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        redis::cmd("LRANGE")
            .arg(format!("{}jobhist:{job_id}", self.prefix))
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
