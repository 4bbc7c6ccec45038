//! Rate limits, so Herald never floods a provider or a person.
//!
//! * **Per provider, messages per second**: a pacer in Redis (one key per
//!   channel holding the next free send time, in the manner of GCRA), so the
//!   rate holds however many delivery instances run. A worker books the
//!   next free slot and sleeps until it; a slot further away than
//!   [`MAX_BOOKING`] is not booked and the job goes back to JetStream with
//!   that delay instead, so no worker sits on a message for long.
//! * **Per provider, back-pressure**: a 429 or 503 with `Retry-After` pauses
//!   every send to that provider until then (a Redis key read by the same
//!   script), not just the job that was told. For a provider with no rate
//!   set, each instance reads the pause at most every [`PAUSE_FRESHNESS`]
//!   instead of once per message; its own pauses count at once.
//! * **Per provider, connections**: a semaphore per channel bounds the
//!   requests in flight from this instance. Ordinary traffic may hold all
//!   but a quarter of them, so an emergency job never queues behind a
//!   backlog of ordinary ones for a connection.
//! * **Per person**: a sliding window per person and channel (a sorted set
//!   of job ids by send time), e.g. at most 3 calls in 15 minutes, as
//!   on-call tools do. A job already counted in the window (a retry of the
//!   same job) passes. Emergency traffic is counted but never held back.
//!
//! Nothing is dropped: every limit answers "wait this long", and the caller
//! either sleeps or returns the job to JetStream with that delay.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use herald_config::DeliveryConfig;
use herald_proto::v1::{Channel, DeliveryJob, Lane};
use redis::{Script, aio::ConnectionManager};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The furthest ahead a normal-lane worker books a provider slot; beyond
/// it the job is returned to JetStream with the delay. Emergency jobs may
/// book further ahead, so ordinary traffic can never push them back by more
/// than this.
pub const MAX_BOOKING: Duration = Duration::from_secs(1);
const MAX_BOOKING_EMERGENCY: Duration = Duration::from_secs(10);

/// KEYS: next-free-time key, pause key. ARGV: interval µs, max wait µs.
/// Returns {booked 0/1, wait µs, paused 0/1}.
const PACE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
  return {0, pause - now, 1}
end
local interval = tonumber(ARGV[1])
if interval <= 0 then
  return {1, 0, 0}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local wait = start - now
if wait > tonumber(ARGV[2]) then
  return {0, wait, 0}
end
local nxt = start + interval
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
return {1, wait, 0}
"#;

/// KEYS: pause key. ARGV: pause µs. Extends, never shortens, a pause.
const PAUSE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1)
end
return 1
"#;

/// KEYS: window set. ARGV: job id, window ms, max, enforce (0/1).
/// Returns wait ms (0: go ahead, counted).
const WINDOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
if ARGV[4] == '1' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"#;

/// Why a job has to wait, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Provider,
    Paused,
    Contact,
}

impl Hold {
    pub fn name(self) -> &'static str {
        match self {
            Hold::Provider => "provider_rate",
            Hold::Paused => "provider_paused",
            Hold::Contact => "contact_window",
        }
    }
}

/// The answer of a limit: go now, go after sleeping this long (a booked
/// slot), or come back later (nothing booked).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    Go(Duration),
    Later(Duration, Hold),
}

#[derive(Clone)]
pub struct Limits {
    redis: ConnectionManager,
    prefix: String,
    interval: [Duration; 3],
    connections: [Arc<Semaphore>; 3],
    /// What ordinary traffic must pass before taking a connection: fewer
    /// permits than `connections`, the rest kept for the emergency lane.
    ordinary: [Arc<Semaphore>; 3],
    window: Duration,
    per_contact: [u32; 3],
    pace: Script,
    pause: Script,
    contact: Script,
    /// For a provider with no rate set, the only shared state a send must
    /// respect is a pause: what this instance last read of it, so that
    /// every send does not ask Redis.
    pauses: Arc<[Mutex<KnownPause>; 3]>,
}

/// A provider's pause as this instance knows it, on its own clock.
#[derive(Debug, Clone, Copy)]
struct KnownPause {
    /// When Redis was last asked (`None`: never), and the end of the pause
    /// it reported.
    read_at: Option<Instant>,
    read_until: Instant,
    /// The end of the longest pause this instance set itself, which a
    /// reading taken before Redis had it must not erase.
    own_until: Instant,
}

/// How stale a provider's pause may be when no rate is set: another
/// instance's pause reaches this one within this long. (This instance's
/// own pauses count at once.)
pub const PAUSE_FRESHNESS: Duration = Duration::from_millis(50);

fn index(channel: Channel) -> usize {
    match channel {
        Channel::Sms => 1,
        Channel::Voice => 2,
        _ => 0,
    }
}

fn interval(rate: f64) -> Duration {
    if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::ZERO
    }
}

impl Limits {
    pub fn new(redis: ConnectionManager, prefix: &str, cfg: &DeliveryConfig) -> Limits {
        let sizes = [
            cfg.smtp_pool_size.max(1) as usize,
            cfg.sms_connections.max(1),
            cfg.voice_connections.max(1),
        ];
        Limits {
            redis,
            prefix: herald_proto::keyspace::DELIVERY.prefix(prefix),
            interval: [
                interval(cfg.email_rate),
                interval(cfg.sms_rate),
                interval(cfg.voice_rate),
            ],
            connections: sizes.map(|n| Arc::new(Semaphore::new(n))),
            ordinary: sizes.map(|n| Arc::new(Semaphore::new(n - emergency_reserve(n)))),
            window: cfg.contact_window,
            per_contact: [
                cfg.contact_max_email,
                cfg.contact_max_sms,
                cfg.contact_max_voice,
            ],
            pace: Script::new(PACE),
            pause: Script::new(PAUSE),
            contact: Script::new(WINDOW),
            pauses: Arc::new(std::array::from_fn(|_| {
                Mutex::new(KnownPause {
                    read_at: None,
                    read_until: Instant::now(),
                    own_until: Instant::now(),
                })
            })),
        }
    }

    /// A connection slot to the channel's provider, held for one attempt.
    pub async fn connection(&self, channel: Channel, lane: Lane) -> Connection {
        let i = index(channel);
        let ordinary = match lane {
            Lane::Emergency => None,
            Lane::Normal => Some(acquire(&self.ordinary[i]).await),
        };
        Connection {
            _slot: acquire(&self.connections[i]).await,
            _ordinary: ordinary,
        }
    }

    /// Books the provider's next free slot, unless the provider is paused or
    /// the slot is too far ahead.
    pub async fn provider(&self, channel: Channel, lane: Lane) -> redis::RedisResult<Pace> {
        if self.interval[index(channel)].is_zero() {
            // No rate to book against: only a pause can hold the send.
            let pause = self.known_pause(channel).await?;
            return Ok(if pause.is_zero() {
                Pace::Go(Duration::ZERO)
            } else {
                Pace::Later(pause, Hold::Paused)
            });
        }
        let max = match lane {
            Lane::Emergency => MAX_BOOKING_EMERGENCY,
            Lane::Normal => MAX_BOOKING,
        };
        let mut r = self.redis.clone();
        let (booked, wait_us, paused): (i64, i64, i64) = self
            .pace
            .key(format!("{}pace:{}", self.prefix, channel.name()))
            .key(self.pause_key(channel))
            .arg(self.interval[index(channel)].as_micros() as u64)
            .arg(max.as_micros() as u64)
            .invoke_async(&mut r)
            .await?;
        let wait = Duration::from_micros(wait_us.max(0) as u64);
        Ok(match (booked, paused) {
            (1, _) => Pace::Go(wait),
            (_, 1) => Pace::Later(wait, Hold::Paused),
            _ => Pace::Later(wait, Hold::Provider),
        })
    }

    /// How long the provider has asked every sender to hold off from now;
    /// zero if it has not. Checked again after sleeping for a booked slot,
    /// since the pause may have begun meanwhile.
    pub async fn paused(&self, channel: Channel) -> redis::RedisResult<Duration> {
        let mut r = self.redis.clone();
        let (until, now): (Option<u64>, Vec<u64>) = redis::pipe()
            .get(self.pause_key(channel))
            .cmd("TIME")
            .query_async(&mut r)
            .await?;
        let now_us =
            now.first().copied().unwrap_or(0) * 1_000_000 + now.get(1).copied().unwrap_or(0);
        Ok(Duration::from_micros(
            until.unwrap_or(0).saturating_sub(now_us),
        ))
    }

    /// What is left of the provider's pause, read from Redis at most every
    /// [`PAUSE_FRESHNESS`].
    async fn known_pause(&self, channel: Channel) -> redis::RedisResult<Duration> {
        let now = Instant::now();
        let known = *self.pauses[index(channel)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(read_at) = known.read_at
            && now.duration_since(read_at) < PAUSE_FRESHNESS
        {
            return Ok(known
                .read_until
                .max(known.own_until)
                .saturating_duration_since(now));
        }
        let left = self.paused(channel).await?;
        let mut known = self.pauses[index(channel)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known.read_at = Some(now);
        known.read_until = now + left;
        Ok(known
            .read_until
            .max(known.own_until)
            .saturating_duration_since(now))
    }

    /// The provider asked every sender to hold off (429 or 503 with
    /// `Retry-After`).
    pub async fn pause(&self, channel: Channel, for_: Duration) -> redis::RedisResult<()> {
        {
            let mut known = self.pauses[index(channel)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            known.own_until = known.own_until.max(Instant::now() + for_);
        }
        let mut r = self.redis.clone();
        self.pause
            .key(self.pause_key(channel))
            .arg(for_.as_micros() as u64)
            .invoke_async::<i64>(&mut r)
            .await?;
        Ok(())
    }

    fn pause_key(&self, channel: Channel) -> String {
        format!("{}pause:{}", self.prefix, channel.name())
    }

    /// Counts the job against its person's window on its channel; on the
    /// normal lane, a full window means waiting until its oldest entry ages
    /// out.
    pub async fn contact(&self, job: &DeliveryJob, channel: Channel) -> redis::RedisResult<Pace> {
        let max = self.per_contact[index(channel)];
        if max == 0 {
            return Ok(Pace::Go(Duration::ZERO));
        }
        let enforce = Lane::try_from(job.lane).unwrap_or_default() != Lane::Emergency;
        let mut r = self.redis.clone();
        let wait_ms: i64 = self
            .contact
            .key(format!(
                "{}window:{}:{}",
                self.prefix,
                channel.name(),
                person(job)
            ))
            .arg(&job.job_id)
            .arg(self.window.as_millis() as u64)
            .arg(max)
            .arg(if enforce { "1" } else { "0" })
            .invoke_async(&mut r)
            .await?;
        Ok(if wait_ms > 0 {
            Pace::Later(Duration::from_millis(wait_ms as u64), Hold::Contact)
        } else {
            Pace::Go(Duration::ZERO)
        })
    }
}

/// A held connection slot; dropping it frees the slot.
pub struct Connection {
    _slot: OwnedSemaphorePermit,
    _ordinary: Option<OwnedSemaphorePermit>,
}

async fn acquire(s: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    #[allow(clippy::expect_used)]
    // A permit is refused only by a closed semaphore, and delivery never
    // closes these: they live as long as the process.
    s.clone()
        .acquire_owned()
        .await
        .expect("delivery never closes its semaphores")
}

/// Connections ordinary traffic may never take: a quarter, at least one
/// when there are two or more.
fn emergency_reserve(connections: usize) -> usize {
    if connections < 2 {
        0
    } else {
        (connections / 4).max(1)
    }
}

/// Who a job is for: the contact id, or for a one-off recipient a hash of
/// the address (keys never hold an address).
fn person(job: &DeliveryJob) -> String {
    if !job.contact_id.is_empty() {
        return format!("c:{}", job.contact_id);
    }
    let digest = Sha256::digest(job.address.trim().to_ascii_lowercase().as_bytes());
    format!("a:{}", hex::encode(&digest[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_off_recipients_are_keyed_by_a_hash_not_the_address() {
        let job = DeliveryJob {
            address: "+447700900123".into(),
            ..Default::default()
        };
        let key = person(&job);
        assert!(
            key.starts_with("a:") && !key.contains("7700900123"),
            "{key}"
        );
        let same = DeliveryJob {
            address: " +447700900123 ".into(),
            ..Default::default()
        };
        assert_eq!(person(&same), key);
        let contact = DeliveryJob {
            contact_id: "alice".into(),
            ..job
        };
        assert_eq!(person(&contact), "c:alice");
    }

    #[test]
    fn a_share_of_connections_is_kept_for_emergencies() {
        assert_eq!(emergency_reserve(1), 0);
        assert_eq!(emergency_reserve(2), 1);
        assert_eq!(emergency_reserve(32), 8);
    }

    #[test]
    fn a_rate_becomes_the_spacing_between_sends() {
        assert_eq!(interval(0.0), Duration::ZERO);
        assert_eq!(interval(4.0), Duration::from_millis(250));
    }
}
