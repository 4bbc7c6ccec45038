//! The template versions proposed at run time as intake keeps them, and
//! the steps a version may take. One hash per template in intake's
//! keyspace (`template:<id>`, a field per version) and a set of the
//! templates that have any (`template-ids`); the steps are pure, so every
//! refusal is tested here:
//!
//! ```text
//!   propose ──▶ draft ──approve (another person)──▶ approved
//!                 └────reject (with a reason)─────▶ rejected
//! ```

use herald_proto::v1::{ErrorCode, Rejected, TemplateVersionInfo};
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use crate::validate::reject;

/// Where a proposed version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Approved,
    Rejected,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Approved => "approved",
            State::Rejected => "rejected",
        }
    }
}

/// One proposed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub template_id: String,
    pub version: u32,
    pub source: String,
    pub state: State,
    pub proposed_by: String,
    /// Milliseconds since the epoch.
    pub proposed_at: i64,
    /// The identity the proposal came from.
    pub caller: String,
    #[serde(default)]
    pub decided_by: String,
    #[serde(default)]
    pub decided_at: i64,
    #[serde(default)]
    pub reason: String,
}

/// `ms` since the epoch as people read it.
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "an unknown time".into())
}

fn stamp(ms: i64) -> Option<herald_proto::Timestamp> {
    (ms > 0).then(|| herald_proto::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

impl Proposal {
    /// The decision `by` takes on this version, or why it may not.
    pub fn decide(
        &self,
        approve: bool,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<Proposal, Rejected> {
        if self.state != State::Draft {
            return Err(reject(
                ErrorCode::InvalidState,
                "decide.version",
                format!(
                    "template {:?} version {} was already {} by {} at {}",
                    self.template_id,
                    self.version,
                    self.state.name(),
                    self.decided_by,
                    when(self.decided_at)
                ),
            ));
        }
        if by == self.proposed_by {
            return Err(reject(
                ErrorCode::Unauthorized,
                "decide.by",
                format!(
                    "{by} proposed template {:?} version {}: another approver must decide it (four eyes, SOP 004)",
                    self.template_id, self.version
                ),
            ));
        }
        if !approve && reason.trim().is_empty() {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "decide.reason",
                "is required to reject a version: the proposer is told why",
            ));
        }
        Ok(Proposal {
            state: if approve {
                State::Approved
            } else {
                State::Rejected
            },
            decided_by: by.to_string(),
            decided_at: now,
            reason: reason.trim().to_string(),
            ..self.clone()
        })
    }

    /// Why a request naming this version cannot use it (none when it
    /// is approved).
    pub fn refusal(&self) -> Option<String> {
        match self.state {
            State::Draft => Some(format!(
                "template {:?} version {} is a draft, proposed by {} at {}, not approved",
                self.template_id,
                self.version,
                self.proposed_by,
                when(self.proposed_at)
            )),
            State::Rejected => Some(format!(
                "template {:?} version {} was rejected by {} at {} ({}) and is never used",
                self.template_id,
                self.version,
                self.decided_by,
                when(self.decided_at),
                self.reason
            )),
            State::Approved => None,
        }
    }

    /// The version as the command line shows it; its text only when
    /// `with_source`.
    pub fn to_wire(&self, with_source: bool) -> TemplateVersionInfo {
        let parsed = herald_content::templates::source::parse(&self.source).ok();
        TemplateVersionInfo {
            template_id: self.template_id.clone(),
            version: self.version,
            state: self.state.name().into(),
            origin: "proposed".into(),
            description: parsed
                .as_ref()
                .map(|t| t.description.clone())
                .unwrap_or_default(),
            proposed_by: self.proposed_by.clone(),
            proposed_at: stamp(self.proposed_at),
            decided_by: self.decided_by.clone(),
            decided_at: stamp(self.decided_at),
            reason: self.reason.clone(),
            languages: parsed
                .map(|t| t.lang.keys().cloned().collect())
                .unwrap_or_default(),
            source: if with_source {
                self.source.clone()
            } else {
                String::new()
            },
        }
    }
}

/// Replaces a field only if it still holds what was read.
const SWAP: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"#;

/// Intake's store of proposed versions.
#[derive(Clone)]
pub struct Proposals {
    redis: ConnectionManager,
    /// Intake's keyspace prefix.
    prefix: String,
}

impl Proposals {
    pub fn new(redis: ConnectionManager, deployment: &str) -> Proposals {
        Proposals {
            redis,
            prefix: herald_proto::keyspace::INTAKE.prefix(deployment),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}template:{id}", self.prefix)
    }

    fn ids_key(&self) -> String {
        format!("{}template-ids", self.prefix)
    }

    /// Every template with a proposed version.
    pub async fn ids(&self) -> anyhow::Result<Vec<String>> {
        let mut r = self.redis.clone();
        let mut ids: Vec<String> = r.smembers(self.ids_key()).await?;
        ids.sort();
        Ok(ids)
    }

    /// Every proposed version of `id`, oldest first.
    pub async fn all(&self, id: &str) -> anyhow::Result<Vec<Proposal>> {
        let mut r = self.redis.clone();
        let fields: Vec<(String, String)> = r.hgetall(self.key(id)).await?;
        let mut out: Vec<Proposal> = fields
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        out.sort_by_key(|p| p.version);
        Ok(out)
    }

    /// One version, with the stored text a swap compares against.
    pub async fn load(&self, id: &str, version: u32) -> anyhow::Result<Option<(String, Proposal)>> {
        let mut r = self.redis.clone();
        let raw: Option<String> = r.hget(self.key(id), version).await?;
        Ok(match raw {
            Some(raw) => {
                let p = serde_json::from_str(&raw)?;
                Some((raw, p))
            }
            None => None,
        })
    }

    /// Stores `p` under its version unless that number is taken: whether
    /// it was stored.
    pub async fn insert(&self, p: &Proposal) -> anyhow::Result<bool> {
        let mut r = self.redis.clone();
        let value = serde_json::to_string(p)?;
        let (stored, _): (bool, i64) = redis::pipe()
            .hset_nx(self.key(&p.template_id), p.version, value)
            .sadd(self.ids_key(), &p.template_id)
            .query_async(&mut r)
            .await?;
        Ok(stored)
    }

    /// Replaces the version read as `seen` with `next`: false when it
    /// changed in between.
    pub async fn swap(&self, seen: &str, next: &Proposal) -> anyhow::Result<bool> {
        let mut r = self.redis.clone();
        let value = serde_json::to_string(next)?;
        let swapped: i64 = Script::new(SWAP)
            .key(self.key(&next.template_id))
            .arg(next.version)
            .arg(seen)
            .arg(value)
            .invoke_async(&mut r)
            .await?;
        Ok(swapped == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Proposal {
        Proposal {
            template_id: "ack".into(),
            version: 2,
            source: "[lang.en]\nsms = \"hi\"\n".into(),
            state: State::Draft,
            proposed_by: "eve".into(),
            proposed_at: 1_700_000_000_000,
            caller: "editor".into(),
            decided_by: String::new(),
            decided_at: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn the_proposer_never_decides_their_own_version() {
        let r = draft().decide(true, "eve", "", 1).unwrap_err();
        assert_eq!(r.field, "decide.by");
        assert!(r.message.contains("four eyes"), "{}", r.message);
        let ok = draft().decide(true, "amy", "", 5).unwrap();
        assert_eq!((ok.state, ok.decided_by.as_str()), (State::Approved, "amy"));
    }

    #[test]
    fn a_rejection_needs_a_reason_and_a_decided_version_stays_decided() {
        let r = draft().decide(false, "amy", " ", 1).unwrap_err();
        assert_eq!(r.field, "decide.reason");
        let rejected = draft().decide(false, "amy", "tone", 1).unwrap();
        assert_eq!(rejected.state, State::Rejected);
        let again = rejected.decide(true, "bob", "", 2).unwrap_err();
        assert_eq!(again.field, "decide.version");
        assert!(
            again.message.contains("already rejected by amy"),
            "{}",
            again.message
        );
    }

    #[test]
    fn a_refusal_names_the_state_who_and_when() {
        let m = draft().refusal().unwrap();
        assert_eq!(
            m,
            "template \"ack\" version 2 is a draft, proposed by eve at 2023-11-14 22:13:20 UTC, not approved"
        );
        let rejected = draft().decide(false, "amy", "tone", 1).unwrap();
        assert!(rejected.refusal().unwrap().contains("rejected by amy"));
        assert!(
            draft()
                .decide(true, "amy", "", 1)
                .unwrap()
                .refusal()
                .is_none()
        );
    }
}
