//! What the escalation service keeps per case in Redis
//! (`<escalation keyspace>case:<case>`, JSON): the case as its events describe it, the
//! current escalation, the follow-up, the action items of its logged
//! interactions and its meetings, beside four durable timers in the queue `escalation`:
//! `e:<case>` (the next repeat or level), `f:<case>` (the survey, then the
//! reminder), `a:<case>` (the next reminder of an open action) and
//! `m:<case>` (the next reminder of a meeting). State
//! and timers change in one compare-and-swap ([`Timers::swap_state`]).

use std::time::Duration;

use herald_proto::v1::ClockKind;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::{
    actions::{self, Action},
    machine::{Escalation, FollowUp},
    meetings::Meeting,
};
use herald_durable::timers::{TimerChange, Timers};
use herald_runtime::bus::Permanent;

/// How long a resolved case with nothing pending is remembered.
const CLOSED_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseState {
    /// Stream position of the last message applied.
    pub last_seq: u64,
    pub client: String,
    #[serde(default)]
    pub staff: String,
    #[serde(default)]
    pub team: String,
    #[serde(default)]
    pub reference: String,
    pub priority: i32,
    #[serde(default)]
    pub resolved: bool,
    /// Clocks already answered (acknowledged, responded, resolved): a
    /// breach of one of them that arrives later is old news.
    #[serde(default)]
    pub answered: Vec<i32>,
    /// Escalations so far, the current one included.
    #[serde(default)]
    pub escalations: u32,
    #[serde(default)]
    pub current: Option<Escalation>,
    #[serde(default)]
    pub follow_up: FollowUp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The client's feedback, once given, and where it stands with the
    /// department handling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackItem>,
    /// Meetings about the case (`meetings.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<Meeting>,
    /// When the next meeting reminder is due, kept here so the timer is
    /// set without the policy at hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_next_ms: Option<i64>,
}

/// Feedback relayed to a department (SOP 000 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackItem {
    /// The stream position of the feedback event.
    pub seq: u64,
    pub category: String,
    pub department: String,
    /// `FeedbackStatus`.
    pub status: i32,
    pub rating: u32,
    /// Who in the department was told.
    #[serde(default)]
    pub owners: Vec<String>,
    pub updated_ms: i64,
    /// When it was received (0 in records kept before this was).
    #[serde(default)]
    pub received_ms: i64,
}

impl CaseState {
    pub fn answer(&mut self, kinds: &[ClockKind]) {
        for k in kinds {
            if !self.answered.contains(&(*k as i32)) {
                self.answered.push(*k as i32);
            }
        }
    }

    pub fn reopen(&mut self) {
        self.resolved = false;
        self.answered
            .retain(|k| *k == ClockKind::Acknowledgement as i32);
    }

    pub fn is_answered(&self, kind: ClockKind) -> bool {
        self.answered.contains(&(kind as i32))
    }

    pub fn reference(&self, case_id: &str) -> String {
        if self.reference.is_empty() {
            case_id.to_string()
        } else {
            self.reference.clone()
        }
    }

    fn timers(&self, case_id: &str) -> Vec<TimerChange> {
        let e = escalation_timer(case_id);
        let f = follow_up_timer(case_id);
        let a = actions_timer(case_id);
        let m = meetings_timer(case_id);
        vec![
            match self.meeting_next_ms {
                Some(at) => TimerChange::At(m, at),
                None => TimerChange::Cancel(m),
            },
            match actions::next_due(&self.actions) {
                Some(at) => TimerChange::At(a, at),
                None => TimerChange::Cancel(a),
            },
            match self.current.as_ref().and_then(|c| c.next_ms) {
                Some(at) => TimerChange::At(e, at),
                None => TimerChange::Cancel(e),
            },
            match self.follow_up.next_due() {
                Some(at) => TimerChange::At(f, at),
                None => TimerChange::Cancel(f),
            },
        ]
    }

    fn settled(&self) -> bool {
        self.resolved
            && self.follow_up.next_due().is_none()
            && actions::next_due(&self.actions).is_none()
            && self.meeting_next_ms.is_none()
            && !self.current.as_ref().is_some_and(Escalation::is_active)
    }
}

pub fn escalation_timer(case_id: &str) -> String {
    format!("e:{case_id}")
}

pub fn follow_up_timer(case_id: &str) -> String {
    format!("f:{case_id}")
}

pub fn actions_timer(case_id: &str) -> String {
    format!("a:{case_id}")
}

pub fn meetings_timer(case_id: &str) -> String {
    format!("m:{case_id}")
}

/// Which of a case's timers came due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Escalation,
    FollowUp,
    Actions,
    Meetings,
}

/// Which timer an id is, and of which case.
pub fn parse_timer(id: &str) -> Option<(Timer, &str)> {
    [
        ("e:", Timer::Escalation),
        ("f:", Timer::FollowUp),
        ("a:", Timer::Actions),
        ("m:", Timer::Meetings),
    ]
    .into_iter()
    .find_map(|(prefix, t)| id.strip_prefix(prefix).map(|case| (t, case)))
}

/// A case as read: its bytes (for the swap) and what they mean.
#[derive(Debug, Clone)]
pub struct Stored {
    pub raw: Vec<u8>,
    pub state: CaseState,
}

#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    prefix: String,
    timers: Timers,
    /// How long a case's state outlives its last change
    /// (`retention.case_state`); zero keeps an open case for good.
    keep: Duration,
}

impl Store {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Store {
        Store {
            timers: Timers::new(
                redis.clone(),
                &herald_proto::keyspace::ESCALATION.prefix(prefix),
                "levels",
            ),
            redis,
            prefix: herald_proto::keyspace::ESCALATION.prefix(prefix),
            keep: Duration::ZERO,
        }
    }

    /// Keeps a case's state for `keep` after its last change, open or not
    /// (SOP 003 §6.5); a settled one goes after [`CLOSED_TTL`] if sooner.
    pub fn keeping(mut self, keep: Duration) -> Store {
        self.keep = keep;
        self
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    fn key(&self, case_id: &str) -> String {
        format!("{}case:{case_id}", self.prefix)
    }

    /// The case as stored. A value that no longer reads as a case is a
    /// [`Permanent`] failure: retrying cannot mend it, so the message that
    /// needed it is set aside and the case's partition goes on.
    pub async fn get(&self, case_id: &str) -> anyhow::Result<Option<Stored>> {
        let mut c = self.redis.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(case_id))
            .query_async(&mut c)
            .await?;
        Ok(match raw {
            None => None,
            Some(raw) => {
                let state = serde_json::from_slice(&raw).map_err(|e| {
                    Permanent(format!(
                        "the stored escalation of case {case_id} is unreadable ({e}); repair or delete {}",
                        self.key(case_id)
                    ))
                })?;
                Some(Stored { raw, state })
            }
        })
    }

    /// Writes `new` if the case is still `old`, with its timers. False if
    /// it changed meanwhile.
    pub async fn swap(
        &self,
        case_id: &str,
        old: Option<&Stored>,
        new: &CaseState,
    ) -> anyhow::Result<bool> {
        let value = serde_json::to_vec(new)?;
        let ttl = match (new.settled(), self.keep.is_zero()) {
            (false, _) => self.keep,
            (true, true) => CLOSED_TTL,
            (true, false) => CLOSED_TTL.min(self.keep),
        };
        Ok(self
            .timers
            .swap_state(
                &self.key(case_id),
                old.map(|o| o.raw.as_slice()),
                &value,
                ttl,
                &new.timers(case_id),
            )
            .await?)
    }
}
