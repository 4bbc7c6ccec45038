//! Where the clocks live: one Redis string per case (`<prefix>sla:<case>`,
//! the protobuf `CaseClocks`) and one timer per running clock in the
//! durable timer queue `sla` (`<case>:a|r|s`, due at the clock's next
//! warning point or deadline).
//!
//! A case's state and its timers change together in one Lua script that
//! also checks the state is still what the caller read (compare and swap):
//! a case event and a firing timer working on the same case at once never
//! lose each other's change, and a crash never leaves a running clock
//! without its timer.

use prost::Message;
use redis::{Script, aio::ConnectionManager};

use crate::clock::{CaseClocks, timer_id};
use herald_runtime::timers::Timers;

/// How long the state of a case whose clocks have all stopped is kept (for
/// `herald case show`).
pub const STOPPED_TTL_SECS: u64 = 30 * 24 * 3600;

/// KEYS: state, due, lease. ARGV: expected ("0" absent, "1"..value),
/// new value, ttl s (0: keep for ever), then (timer id, due ms or -1)
/// pairs. 1 if written, 0 if the state had changed.
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

/// A case's state as read: the bytes (for the swap) and what they mean.
#[derive(Debug, Clone)]
pub struct Stored {
    pub raw: Vec<u8>,
    pub clocks: CaseClocks,
}

#[derive(Clone)]
pub struct ClockStore {
    redis: ConnectionManager,
    prefix: String,
    timers: Timers,
    swap: Script,
}

impl ClockStore {
    pub fn new(redis: ConnectionManager, prefix: &str) -> ClockStore {
        ClockStore {
            timers: Timers::new(redis.clone(), prefix, "sla"),
            redis,
            prefix: prefix.to_string(),
            swap: Script::new(SWAP),
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    fn key(&self, case_id: &str) -> String {
        format!("{}sla:{case_id}", self.prefix)
    }

    pub async fn get(&self, case_id: &str) -> redis::RedisResult<Option<Stored>> {
        Ok(self.get_many(&[case_id.to_string()]).await?.pop().flatten())
    }

    /// Reads many cases in one round trip.
    pub async fn get_many(&self, case_ids: &[String]) -> redis::RedisResult<Vec<Option<Stored>>> {
        if case_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = case_ids.iter().map(|c| self.key(c)).collect();
        let mut c = self.redis.clone();
        let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        Ok(raws
            .into_iter()
            .map(|raw| {
                let raw = raw?;
                let clocks = CaseClocks::decode(raw.as_slice()).ok()?;
                Some(Stored { raw, clocks })
            })
            .collect())
    }

    /// Writes `new` for `case_id` if the state is still `old` (`None`:
    /// absent) and moves the timers of its clocks to their next due times
    /// in the same step. False if someone changed the case meanwhile: read
    /// it again and redo.
    pub async fn swap(
        &self,
        case_id: &str,
        old: Option<&Stored>,
        new: &CaseClocks,
    ) -> redis::RedisResult<bool> {
        let (due, lease) = self.timers.keys();
        let mut expected = Vec::with_capacity(1 + old.map(|o| o.raw.len()).unwrap_or(0));
        match old {
            None => expected.push(b'0'),
            Some(o) => {
                expected.push(b'1');
                expected.extend_from_slice(&o.raw);
            }
        }
        let running = new.clocks.iter().any(|c| c.next_due().is_some());
        let mut call = self.swap.prepare_invoke();
        call.key(self.key(case_id))
            .key(due)
            .key(lease)
            .arg(expected)
            .arg(new.encode_to_vec())
            .arg(if running { 0 } else { STOPPED_TTL_SECS });
        let mut scheduled = false;
        for clock in &new.clocks {
            let next = clock.next_due();
            scheduled |= next.is_some();
            call.arg(timer_id(case_id, clock.kind()))
                .arg(next.unwrap_or(-1));
        }
        let mut c = self.redis.clone();
        let written: i64 = call.invoke_async(&mut c).await?;
        if written == 1 && scheduled {
            self.timers.nudge();
        }
        Ok(written == 1)
    }

    /// Writes many cases and their timers at once, pipelined, without
    /// checking what was there: for loading clocks in bulk (the benchmark
    /// loads a million this way).
    pub async fn put_many(&self, items: &[(String, CaseClocks)]) -> redis::RedisResult<()> {
        let (due, _) = self.timers.keys();
        let mut pipe = redis::pipe();
        let mut timers: Vec<(i64, String)> = Vec::new();
        for (case_id, clocks) in items {
            pipe.set(self.key(case_id), clocks.encode_to_vec()).ignore();
            for c in &clocks.clocks {
                if let Some(at) = c.next_due() {
                    timers.push((at, timer_id(case_id, c.kind())));
                }
            }
        }
        if !timers.is_empty() {
            pipe.zadd_multiple(due, &timers).ignore();
        }
        let mut c = self.redis.clone();
        pipe.exec_async(&mut c).await?;
        self.timers.nudge();
        Ok(())
    }
}
