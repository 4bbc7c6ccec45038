//! Where the clocks live: one Redis string per case (`<sla keyspace>case:<case>`,
//! the protobuf `CaseClocks`) and one timer per running clock in the
//! durable timer queue `sla` (`<case>:a|r|s`, due at the clock's next
//! warning point or deadline).
//!
//! A case's state and its timers change together in one Lua script that
//! also checks the state is still what the caller read (compare and swap):
//! a case event and a firing timer working on the same case at once never
//! lose each other's change, and a crash never leaves a running clock
//! without its timer.

use std::time::Duration;

use prost::Message;
use redis::aio::ConnectionManager;

use crate::clock::{CaseClocks, timer_id};
use herald_durable::timers::{TimerChange, Timers};
use herald_runtime::bus::Permanent;

/// How long the state of a case whose clocks have all stopped is kept (for
/// `herald case show`).
pub const STOPPED_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

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
    /// How long a case's clocks outlive its last change
    /// (`retention.case_state`); zero keeps running clocks for good.
    keep: Duration,
}

impl ClockStore {
    pub fn new(redis: ConnectionManager, prefix: &str) -> ClockStore {
        ClockStore {
            timers: Timers::new(
                redis.clone(),
                &herald_proto::keyspace::SLA.prefix(prefix),
                "clocks",
            ),
            redis,
            prefix: herald_proto::keyspace::SLA.prefix(prefix),
            keep: Duration::ZERO,
        }
    }

    /// Keeps a case's clocks for `keep` after their last change, running
    /// or not (SOP 003 §6.5); stopped ones go after [`STOPPED_TTL`] if that
    /// is sooner.
    pub fn keeping(mut self, keep: Duration) -> ClockStore {
        self.keep = keep;
        self
    }

    /// The lifetime a case's clocks are written with.
    fn ttl(&self, running: bool) -> Duration {
        match (running, self.keep.is_zero()) {
            (true, _) => self.keep,
            (false, true) => STOPPED_TTL,
            (false, false) => STOPPED_TTL.min(self.keep),
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    fn key(&self, case_id: &str) -> String {
        format!("{}case:{case_id}", self.prefix)
    }

    /// A case's clocks. A value that no longer reads as clocks is a
    /// [`Permanent`] failure: retrying cannot mend it, so the event that
    /// needed it is set aside and the case's partition goes on.
    pub async fn get(&self, case_id: &str) -> anyhow::Result<Option<Stored>> {
        let mut c = self.redis.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(case_id))
            .query_async(&mut c)
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        match CaseClocks::decode(raw.as_slice()) {
            Ok(clocks) => Ok(Some(Stored { raw, clocks })),
            Err(e) => Err(Permanent(format!(
                "the stored clocks of case {case_id} are unreadable ({e}); repair or delete {}",
                self.key(case_id)
            ))
            .into()),
        }
    }

    /// Reads many cases in one round trip; a case whose stored clocks no
    /// longer decode reads as absent (and is logged), so one bad value does
    /// not hold up the others.
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
                match CaseClocks::decode(raw.as_slice()) {
                    Ok(clocks) => Some(Stored { raw, clocks }),
                    Err(e) => {
                        tracing::error!(error = %e, "stored clocks unreadable; skipped");
                        None
                    }
                }
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
        let running = new.clocks.iter().any(|c| c.next_due().is_some());
        let changes: Vec<TimerChange> = new
            .clocks
            .iter()
            .map(|c| {
                let id = timer_id(case_id, c.kind());
                match c.next_due() {
                    Some(at) => TimerChange::At(id, at),
                    None => TimerChange::Cancel(id),
                }
            })
            .collect();
        self.timers
            .swap_state(
                &self.key(case_id),
                old.map(|o| o.raw.as_slice()),
                &new.encode_to_vec(),
                self.ttl(running),
                &changes,
            )
            .await
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
