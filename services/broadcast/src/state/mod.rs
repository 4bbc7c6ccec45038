//! A broadcast's state in Redis, owned by the broadcast service.
//!
//! In the broadcast keyspace (`herald:broadcast:`), under `bc:<id>`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | (the id itself) | hash | `state`, who started it, severity, start and end times (ms), cycle settings, cycles begun, recipients, `cancelled` reason, updates sent |
//! | `:people` | hash | `r<i>` → contact id: the recipients, numbered once, in id order |
//! | `:jobs` | hash | `r<i>-<channel>-<wave>` → how far that job got |
//! | `:confirmed` | hash | `r<i>` → `<channel>|<ms>`: who confirmed, how and when |
//! | `:content` | hash | `start` / `update` → the message (protobuf) |
//! | `:commands` | hash | update command id → its update number |
//! | `:phones` | set | hashes of the recipients' numbers, to undo the index below |
//!
//! and, while it runs, `phone:<hash of a number>` (hash:
//! broadcast → `r<i>`) so an SMS reply finds whom it confirms, and the set
//! `active`.
//!
//! ```text
//!            start read                 audience resolved, jobs out
//!  (absent) ───────────▶ starting ──────────────────────────────────▶ active
//!      │                    │                                           │
//!      │ cancel first       │ cancel                    duration over,  │ cancel
//!      ▼                    ▼                        or all confirmed   ▼
//!  cancelled ◀──────── cancelled                       finished    cancelled
//! ```
//!
//! A job's progress only moves forward: `queued` → `sent` → one of
//! `delivered`, `undelivered` (sent, then reported failed), `failed` (never
//! sent) or `cancelled`, and a final one is never replaced. So status
//! events may arrive in any order, or twice. Confirmation is recorded once
//! (`HSETNX`), and only while the broadcast runs.

mod scripts;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_proto::v1::{BroadcastState, Channel};
use herald_runtime::clock::millis;
use redis::{AsyncCommands, Script, aio::ConnectionManager};

use scripts::{ACTIVATE, CONFIRM, FINISH, PROGRESS, UPDATE};

/// The field of a broadcast's hash holding its state name.
const STATE_FIELD: &str = "state";

/// How long a broadcast's state stays readable (`herald broadcast status`)
/// after it ends; the audit trail keeps the record for good.
pub const KEEP_AFTER_END: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Recorded now; `confirmed` of `recipients` have confirmed.
    New {
        confirmed: usize,
        recipients: usize,
    },
    Already,
    /// The broadcast is over (or its duration is): nothing recorded.
    Ended,
    Unknown,
}

/// The broadcast's own fields.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub state: BroadcastState,
    pub actor: String,
    pub severity: i32,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub interval_s: u64,
    pub cycles_total: u32,
    pub cycles_done: u32,
    pub sms: bool,
    pub recipients: usize,
    pub case_id: String,
    pub notification_id: String,
    pub communication_type: i32,
    pub cancelled: String,
    pub updates: u32,
    pub published: bool,
}

impl Meta {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("actor", self.actor.clone()),
            ("severity", self.severity.to_string()),
            ("started_at", millis(self.started_at).to_string()),
            ("ends_at", millis(self.ends_at).to_string()),
            ("interval_s", self.interval_s.to_string()),
            ("cycles_total", self.cycles_total.to_string()),
            ("cycles_done", self.cycles_done.to_string()),
            ("sms", (self.sms as u8).to_string()),
            ("recipients", self.recipients.to_string()),
            ("case_id", self.case_id.clone()),
            ("notification_id", self.notification_id.clone()),
            ("communication_type", self.communication_type.to_string()),
        ]
    }

    fn parse(h: &HashMap<String, String>) -> Meta {
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let text = |k: &str| h.get(k).cloned().unwrap_or_default();
        Meta {
            state: BroadcastState::parse(&text(STATE_FIELD)).unwrap_or_default(),
            actor: text("actor"),
            severity: num("severity") as i32,
            started_at: herald_runtime::clock::from_millis(num("started_at")),
            ends_at: herald_runtime::clock::from_millis(num("ends_at")),
            interval_s: num("interval_s") as u64,
            cycles_total: num("cycles_total") as u32,
            cycles_done: num("cycles_done") as u32,
            sms: num("sms") == 1,
            recipients: num("recipients") as usize,
            case_id: text("case_id"),
            notification_id: text("notification_id"),
            communication_type: num("communication_type") as i32,
            cancelled: text("cancelled"),
            updates: num("updates") as u32,
            published: num("published") == 1,
        }
    }
}

/// What a start found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// First time: the recipients given are now the broadcast's.
    New,
    /// Started before (a redelivery): these are its recipients, in order.
    Again(Vec<String>),
    /// Cancelled before it could start.
    Cancelled,
}

#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    prefix: String,
    confirm: Script,
    finish: Script,
    activate: Script,
    progress: Script,
    update: Script,
}

pub fn phone_hash(phone: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("herald-phone:{}", phone.trim()).as_bytes())[..12])
}

/// The hashes the store keeps a person's numbers under (`phone:<hash>`,
/// `:phones`), so that erasing them finds those too.
pub fn phone_hashes(req: &herald_proto::v1::ErasePerson) -> Vec<String> {
    req.addresses.iter().map(|a| phone_hash(a)).collect()
}

impl Store {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Store {
        Store {
            redis,
            prefix: herald_proto::keyspace::BROADCAST.prefix(prefix),
            confirm: Script::new(CONFIRM),
            finish: Script::new(FINISH),
            activate: Script::new(ACTIVATE),
            progress: Script::new(PROGRESS),
            update: Script::new(UPDATE),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}bc:{id}", self.prefix)
    }

    fn sub(&self, id: &str, part: &str) -> String {
        format!("{}:{part}", self.key(id))
    }

    fn phone_key(&self, hash: &str) -> String {
        format!("{}phone:{hash}", self.prefix)
    }

    fn active_key(&self) -> String {
        format!("{}active", self.prefix)
    }

    pub async fn meta(&self, id: &str) -> redis::RedisResult<Option<Meta>> {
        let mut c = self.redis.clone();
        let h: HashMap<String, String> = c.hgetall(self.key(id)).await?;
        Ok((!h.is_empty()).then(|| Meta::parse(&h)))
    }

    /// Claims the start of a broadcast. On the first call the recipients
    /// and settings are written; a later call (a redelivered start) gets the
    /// recipients written then, so every recipient keeps their number.
    pub async fn begin(
        &self,
        id: &str,
        meta: &Meta,
        people: &[String],
        content: &[u8],
    ) -> redis::RedisResult<Begun> {
        let mut c = self.redis.clone();
        let claimed: bool = c.hset_nx(self.key(id), STATE_FIELD, "starting").await?;
        if !claimed {
            let m = self.meta(id).await?.unwrap_or_default();
            if m.state == BroadcastState::Cancelled {
                return Ok(Begun::Cancelled);
            }
            let stored = self.people(id).await?;
            if !stored.is_empty() {
                return Ok(Begun::Again(stored));
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(self.key(id), &meta.fields())
            .hset(self.sub(id, "content"), "start", content)
            .del(self.sub(id, "people"));
        let entries: Vec<(String, &str)> = people
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("r{i}"), p.as_str()))
            .collect();
        if !entries.is_empty() {
            pipe.hset_multiple(self.sub(id, "people"), &entries);
        }
        pipe.exec_async(&mut c).await?;
        Ok(Begun::New)
    }

    /// Notes jobs about to be published (`queued`), unless a status for
    /// them has already come in; and, for SMS replies, whose number is
    /// whose.
    pub async fn queued(
        &self,
        id: &str,
        fields: &[String],
        phones: &[(String, usize)],
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for f in fields {
            pipe.hset_nx(self.sub(id, "jobs"), f, "queued").ignore();
        }
        for (hash, i) in phones {
            pipe.hset(self.phone_key(hash), id, format!("r{i}"))
                .ignore();
            pipe.sadd(self.sub(id, "phones"), hash).ignore();
        }
        let mut c = self.redis.clone();
        pipe.exec_async(&mut c).await
    }

    /// starting → active. False if it was cancelled meanwhile.
    pub async fn activate(&self, id: &str) -> redis::RedisResult<bool> {
        let mut c = self.redis.clone();
        let n: i64 = self
            .activate
            .key(self.key(id))
            .key(self.active_key())
            .arg(id)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    pub async fn set_field(&self, id: &str, field: &str, value: &str) -> redis::RedisResult<()> {
        let mut c = self.redis.clone();
        c.hset(self.key(id), field, value).await
    }

    /// Records that call cycle `cycle` (1 for the first) has begun.
    pub async fn cycle_begun(&self, id: &str, cycle: u32) -> redis::RedisResult<()> {
        let m = self.meta(id).await?.unwrap_or_default();
        if cycle > m.cycles_done {
            self.set_field(id, "cycles_done", &cycle.to_string())
                .await?;
        }
        Ok(())
    }

    /// Moves a job's progress forward (never back).
    pub async fn progress(&self, id: &str, field: &str, state: &str) -> redis::RedisResult<()> {
        let mut c = self.redis.clone();
        self.progress
            .key(self.sub(id, "jobs"))
            .arg(field)
            .arg(state)
            .invoke_async::<i64>(&mut c)
            .await?;
        Ok(())
    }

    pub async fn confirm(
        &self,
        id: &str,
        recipient: usize,
        via: Channel,
        now: DateTime<Utc>,
    ) -> redis::RedisResult<Confirmed> {
        let mut c = self.redis.clone();
        let out: Vec<i64> = self
            .confirm
            .key(self.key(id))
            .key(self.sub(id, "confirmed"))
            .key(self.sub(id, "people"))
            .arg(format!("r{recipient}"))
            .arg(format!("{}|{}", via.name(), millis(now)))
            .arg(millis(now))
            .invoke_async(&mut c)
            .await?;
        Ok(match out.as_slice() {
            [1, n, total] => Confirmed::New {
                confirmed: *n as usize,
                recipients: *total as usize,
            },
            [0] => Confirmed::Already,
            [-2] => Confirmed::Ended,
            _ => Confirmed::Unknown,
        })
    }

    /// Ends the broadcast (finished or cancelled). True if it ended now.
    pub async fn finish(
        &self,
        id: &str,
        state: BroadcastState,
        now: DateTime<Utc>,
        reason: &str,
    ) -> redis::RedisResult<bool> {
        let mut c = self.redis.clone();
        let n: i64 = self
            .finish
            .key(self.key(id))
            .key(self.active_key())
            .arg(state.name())
            .arg(millis(now))
            .arg(reason)
            .arg(id)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// After the end: the phone index forgets the broadcast, and its state
    /// expires after [`KEEP_AFTER_END`].
    pub async fn retire(&self, id: &str) -> redis::RedisResult<()> {
        let mut c = self.redis.clone();
        let hashes: Vec<String> = c.smembers(self.sub(id, "phones")).await?;
        let mut pipe = redis::pipe();
        for h in &hashes {
            pipe.hdel(self.phone_key(h), id).ignore();
        }
        let keep = KEEP_AFTER_END.as_secs() as i64;
        pipe.expire(self.key(id), keep).ignore();
        for part in [
            "people",
            "jobs",
            "confirmed",
            "content",
            "commands",
            "phones",
        ] {
            pipe.expire(self.sub(id, part), keep).ignore();
        }
        pipe.exec_async(&mut c).await
    }

    /// The recipients' contact ids, by number.
    pub async fn people(&self, id: &str) -> redis::RedisResult<Vec<String>> {
        let mut c = self.redis.clone();
        let h: HashMap<String, String> = c.hgetall(self.sub(id, "people")).await?;
        Ok(numbered(h))
    }

    pub async fn person(&self, id: &str, recipient: usize) -> redis::RedisResult<Option<String>> {
        let mut c = self.redis.clone();
        c.hget(self.sub(id, "people"), format!("r{recipient}"))
            .await
    }

    /// Who confirmed: recipient number → (channel, when).
    pub async fn confirmed(
        &self,
        id: &str,
    ) -> redis::RedisResult<HashMap<usize, (Channel, DateTime<Utc>)>> {
        let mut c = self.redis.clone();
        let h: HashMap<String, String> = c.hgetall(self.sub(id, "confirmed")).await?;
        Ok(h.into_iter()
            .filter_map(|(k, v)| {
                let i = k.strip_prefix('r')?.parse().ok()?;
                let (ch, ms) = v.split_once('|')?;
                Some((
                    i,
                    (
                        Channel::parse(ch)?,
                        herald_runtime::clock::from_millis(ms.parse().ok()?),
                    ),
                ))
            })
            .collect())
    }

    /// Every job's progress, by `r<i>-<channel>-<wave>`.
    pub async fn jobs(&self, id: &str) -> redis::RedisResult<HashMap<String, String>> {
        let mut c = self.redis.clone();
        c.hgetall(self.sub(id, "jobs")).await
    }

    /// The message as started (protobuf `StartBroadcast`) and the latest
    /// update (`UpdateBroadcast`), if any.
    pub async fn content(&self, id: &str) -> redis::RedisResult<(Vec<u8>, Option<Vec<u8>>)> {
        let mut c = self.redis.clone();
        let (start, update): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
            .hget(self.sub(id, "content"), "start")
            .hget(self.sub(id, "content"), "update")
            .query_async(&mut c)
            .await?;
        Ok((start.unwrap_or_default(), update))
    }

    /// Numbers an update command (the same number when it is repeated) and
    /// stores its message as the current one. `(true, n)` the first time.
    pub async fn update(
        &self,
        id: &str,
        command_id: &str,
        content: &[u8],
    ) -> redis::RedisResult<(bool, u32)> {
        let mut c = self.redis.clone();
        let out: Vec<i64> = self
            .update
            .key(self.sub(id, "commands"))
            .key(self.key(id))
            .arg(command_id)
            .invoke_async(&mut c)
            .await?;
        let (first, n) = (
            out.first() == Some(&1),
            out.get(1).copied().unwrap_or(0) as u32,
        );
        if first {
            let _: () = c.hset(self.sub(id, "content"), "update", content).await?;
        }
        Ok((first, n))
    }

    /// The running broadcasts a number was sent to, with its recipient
    /// number in each.
    pub async fn by_phone(&self, phone: &str) -> redis::RedisResult<Vec<(String, usize)>> {
        let mut c = self.redis.clone();
        let h: HashMap<String, String> = c.hgetall(self.phone_key(&phone_hash(phone))).await?;
        Ok(h.into_iter()
            .filter_map(|(b, r)| Some((b, r.strip_prefix('r')?.parse().ok()?)))
            .collect())
    }
}

/// `r0`, `r1`, … → a vector in that order.
fn numbered(h: HashMap<String, String>) -> Vec<String> {
    let mut v: Vec<(usize, String)> = h
        .into_iter()
        .filter_map(|(k, id)| Some((k.strip_prefix('r')?.parse().ok()?, id)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_come_back_in_their_numbered_order() {
        let h: HashMap<String, String> = [("r10", "k"), ("r2", "b"), ("r0", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(numbered(h), ["a", "b", "k"]);
    }

    #[test]
    fn phone_hashes_hide_the_number() {
        let h = phone_hash("+447700900123");
        assert_eq!(h, phone_hash(" +447700900123 "));
        assert!(!h.contains("7700900123") && h.len() == 24);
    }
}
