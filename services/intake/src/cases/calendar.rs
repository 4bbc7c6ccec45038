//! The meetings intake knows of, so that each meeting event fits what came
//! before it: `<intake keyspace>meeting:<case>:<id>` (JSON: organiser,
//! attendees, interpreters, start, end, whether cancelled), and the busy
//! times of each organiser and interpreter, `<intake keyspace>busy:<id>`, a
//! sorted set of `<end ms>\n<case>\n<meeting id>` scored by the start. A
//! new or moved meeting that overlaps another of the same organiser is
//! refused (`meeting.at`); an interpreter already busy then is passed over
//! for another, or the meeting refused (`meeting.interpreter`). Each is
//! checked and written in one Lua script so two at once cannot both get
//! the slot.

use herald_proto::v1::{CaseEvent, CaseEventKind, ErrorCode, Rejected};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{
    Cases,
    interpreters::{Need, choose},
    meeting::MAX_MINUTES,
};
use crate::validate::reject;

/// How long a meeting is remembered after it ends.
const KEEP_AFTER_MS: i64 = 30 * 24 * 3600 * 1000;

/// One meeting as intake keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Booked {
    pub organizer: String,
    pub attendees: Vec<String>,
    /// Invited to interpret; their time is booked with the organiser's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interpreters: Vec<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(default)]
    pub cancelled: bool,
}

impl Booked {
    fn member(&self, case_id: &str, id: &str) -> String {
        format!("{}\n{case_id}\n{id}", self.end_ms)
    }

    /// Whose time the meeting takes: the organiser's, then each
    /// interpreter's.
    fn busy(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.organizer).chain(&self.interpreters)
    }
}

/// Looks, in each calendar KEYS[2..] (the organiser's, then each
/// interpreter's), at the meetings that may overlap [ARGV[1], ARGV[2])
/// (those starting from ARGV[5], the longest meeting earlier); the first
/// that does, other than this one (ARGV[3]) or its old slot (ARGV[4]), is
/// returned with the calendar's place among them (0: the organiser's).
/// Otherwise the slot is taken in every calendar and the record KEYS[1]
/// written.
const BOOK: &str = r#"
for k = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. ARGV[8])
  local cands = redis.call('ZRANGEBYSCORE', KEYS[k], ARGV[5], '(' .. ARGV[2])
  for _, m in ipairs(cands) do
    if m ~= ARGV[3] and m ~= ARGV[4] then
      local e = tonumber(string.match(m, '^(%d+)'))
      if e and e > tonumber(ARGV[1]) then return {k - 2, m} end
    end
  end
end
for k = 2, #KEYS do
  if ARGV[4] ~= '' then redis.call('ZREM', KEYS[k], ARGV[4]) end
  redis.call('ZADD', KEYS[k], ARGV[1], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[6], 'PX', ARGV[7])
return false
"#;

fn ms(t: &herald_proto::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000
}

fn at_words(start_ms: i64, end_ms: i64) -> String {
    let f = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    format!("{} to {}", f(start_ms), f(end_ms))
}

impl Cases {
    fn meeting_key(&self, case_id: &str, id: &str) -> String {
        format!("{}meeting:{case_id}:{id}", self.prefix)
    }

    fn busy_key(&self, person: &str) -> String {
        format!("{}busy:{person}", self.prefix)
    }

    pub(crate) async fn booked(
        &self,
        case_id: &str,
        id: &str,
    ) -> redis::RedisResult<Option<Booked>> {
        let mut r = self.redis.clone();
        let raw: Option<String> = r.get(self.meeting_key(case_id, id)).await?;
        Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Takes `b`'s slot in the calendars of its organiser and interpreters
    /// (moving it from `old`, when rescheduled): the meeting it overlaps,
    /// if any, with whose calendar holds it (0: the organiser's, `i`: the
    /// `i`th interpreter's).
    async fn book(
        &self,
        case_id: &str,
        id: &str,
        b: &Booked,
        old: Option<&Booked>,
        now_ms: i64,
    ) -> redis::RedisResult<Option<(usize, String)>> {
        let mut r = self.redis.clone();
        let record = serde_json::to_string(b).unwrap_or_default();
        let keep = (b.end_ms - now_ms).max(0) + KEEP_AFTER_MS;
        let script = redis::Script::new(BOOK);
        let mut call = script.key(self.meeting_key(case_id, id));
        for p in b.busy() {
            call.key(self.busy_key(p));
        }
        call.arg(b.start_ms)
            .arg(b.end_ms)
            .arg(b.member(case_id, id))
            .arg(old.map(|o| o.member(case_id, id)).unwrap_or_default())
            .arg(b.start_ms - i64::from(MAX_MINUTES) * 60_000)
            .arg(record)
            .arg(keep)
            .arg(now_ms - KEEP_AFTER_MS)
            .invoke_async(&mut r)
            .await
    }

    /// Frees a cancelled meeting's slot and marks it cancelled.
    async fn unbook(
        &self,
        case_id: &str,
        id: &str,
        b: &Booked,
        now_ms: i64,
    ) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        let mut gone = b.clone();
        gone.cancelled = true;
        let keep = (b.end_ms - now_ms).max(0) + KEEP_AFTER_MS;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for p in b.busy() {
            pipe.zrem(self.busy_key(p), b.member(case_id, id)).ignore();
        }
        pipe.pset_ex(
            self.meeting_key(case_id, id),
            serde_json::to_string(&gone).unwrap_or_default(),
            keep.max(1) as u64,
        )
        .ignore()
        .query_async(&mut r)
        .await
    }

    /// Whether a meeting event fits the meetings known, and its booking
    /// done: an unknown or cancelled meeting is not moved, cancelled or
    /// answered; a slot the organiser already has is refused; a new
    /// meeting that `needs` interpreters gets the first free ones, which
    /// are returned. The outer error is Redis failing.
    pub(crate) async fn fit_meeting(
        &self,
        ev: &CaseEvent,
        needs: &[Need],
        now_ms: i64,
    ) -> redis::RedisResult<Result<Vec<String>, Rejected>> {
        let kind = ev.kind();
        let (id, field) = match (kind, &ev.meeting, &ev.meeting_answer) {
            (CaseEventKind::MeetingAnswered, _, Some(a)) => {
                (a.meeting_id.as_str(), "meeting_answer.meeting_id")
            }
            (_, Some(m), _) => (m.meeting_id.as_str(), "meeting.meeting_id"),
            _ => return Ok(Ok(Vec::new())),
        };
        let old = self.booked(&ev.case_id, id).await?;
        if kind == CaseEventKind::MeetingScheduled {
            let Some(m) = &ev.meeting else {
                return Ok(Ok(Vec::new()));
            };
            if old.is_some() {
                return Ok(Err(reject(
                    ErrorCode::InvalidState,
                    field,
                    format!("meeting {id} was scheduled already; reschedule it instead"),
                )));
            }
            let start_ms = m.at.as_ref().map(ms).unwrap_or_default();
            let mut b = Booked {
                organizer: ev.actor.clone(),
                attendees: m.attendees.clone(),
                interpreters: Vec::new(),
                start_ms,
                end_ms: start_ms + i64::from(m.duration_minutes) * 60_000,
                cancelled: false,
            };
            // Interpreters busy then are passed over, one at a time.
            let mut busy: Vec<String> = Vec::new();
            loop {
                let Some(chosen) = choose(needs, &busy) else {
                    return Ok(Err(self.none_free(needs, &b)));
                };
                b.interpreters = chosen;
                match self.take(ev, id, &b, None, now_ms).await? {
                    Ok(()) => return Ok(Ok(b.interpreters)),
                    Err((0, r)) => return Ok(Err(r)),
                    Err((i, _)) => busy.push(b.interpreters[i - 1].clone()),
                }
            }
        }
        let Some(old) = old else {
            return Ok(Err(reject(
                ErrorCode::NotFound,
                field,
                format!("case {} has no meeting {id}", ev.case_id),
            )));
        };
        if old.cancelled {
            return Ok(Err(reject(
                ErrorCode::InvalidState,
                field,
                format!("meeting {id} was cancelled"),
            )));
        }
        match kind {
            CaseEventKind::MeetingAnswered => {
                let who = ev.meeting_answer.as_ref().map(|a| a.contact_id.as_str());
                if !who.is_some_and(|w| {
                    old.attendees
                        .iter()
                        .chain(&old.interpreters)
                        .any(|a| a == w)
                }) {
                    return Ok(Err(reject(
                        ErrorCode::InvalidArgument,
                        "meeting_answer.contact_id",
                        format!("{} is not invited to meeting {id}", who.unwrap_or_default()),
                    )));
                }
                Ok(Ok(Vec::new()))
            }
            CaseEventKind::MeetingCancelled => {
                self.unbook(&ev.case_id, id, &old, now_ms).await?;
                Ok(Ok(Vec::new()))
            }
            _ => {
                let Some(m) = &ev.meeting else {
                    return Ok(Ok(Vec::new()));
                };
                let start_ms = m.at.as_ref().map(ms).unwrap_or(old.start_ms);
                let minutes = if m.duration_minutes == 0 {
                    (old.end_ms - old.start_ms) / 60_000
                } else {
                    i64::from(m.duration_minutes)
                };
                let b = Booked {
                    start_ms,
                    end_ms: start_ms + minutes * 60_000,
                    ..old.clone()
                };
                // The interpreters invited stay: one busy at the new time
                // refuses the move, as the organiser's own clash does.
                Ok(self
                    .take(ev, id, &b, Some(&old), now_ms)
                    .await?
                    .map(|()| Vec::new())
                    .map_err(|(_, r)| r))
            }
        }
    }

    /// The refusal of a meeting for which every interpreter of some
    /// language is in another meeting then.
    fn none_free(&self, needs: &[Need], b: &Booked) -> Rejected {
        let languages: Vec<&str> = needs.iter().map(|n| n.language.as_str()).collect();
        reject(
            ErrorCode::InvalidState,
            "meeting.interpreter",
            format!(
                "every interpreter for {} is in another meeting from {}; choose another time",
                languages.join(", "),
                at_words(b.start_ms, b.end_ms)
            ),
        )
    }

    /// Books `b`, or says whose calendar clashes (0: the organiser's) and
    /// the refusal naming the other meeting.
    async fn take(
        &self,
        ev: &CaseEvent,
        id: &str,
        b: &Booked,
        old: Option<&Booked>,
        now_ms: i64,
    ) -> redis::RedisResult<Result<(), (usize, Rejected)>> {
        Ok(match self.book(&ev.case_id, id, b, old, now_ms).await? {
            None => Ok(()),
            Some((whose, other)) => {
                let mut parts = other.split('\n');
                let end: i64 = parts.next().and_then(|e| e.parse().ok()).unwrap_or(0);
                let case = parts.next().unwrap_or_default();
                let other_id = parts.next().unwrap_or_default();
                let start = match self.booked(case, other_id).await? {
                    Some(o) => o.start_ms,
                    None => end,
                };
                let (who, field) = match whose {
                    0 => (b.organizer.as_str(), "meeting.at"),
                    i => (
                        b.interpreters.get(i - 1).map_or("", String::as_str),
                        "meeting.interpreter",
                    ),
                };
                Err((
                    whose,
                    reject(
                        ErrorCode::InvalidState,
                        field,
                        format!(
                            "{who} already has meeting {other_id} of case {case} from {}; choose a time that does not overlap it",
                            at_words(start, end)
                        ),
                    ),
                ))
            }
        })
    }
}
