//! Meetings about a case (SOP 004, scheduling and confirming meetings), as
//! the case keeps them: who is invited and what each answered, the
//! invitation's sequence number, and the reminders sent. Pure: the
//! reducer applies meeting events here and asks for invitations,
//! cancellations and reminders; the case's timer `m:<case>` fires at the
//! earliest reminder due.
//!
//! They live in the escalation service, not a service of their own,
//! because everything a meeting needs is already here and per case: the
//! case stream read in order, state per case swapped with its durable
//! timers, sending through intake with idempotency keys, signed links on
//! a public listener and the directory's time zones and languages. The
//! one thing that is not per case — a staff member's other meetings, for
//! the clash check — is intake's, which refuses a clashing event before
//! it is stored (`services/intake/src/cases/calendar.rs`).

use std::time::Duration;

use herald_proto::v1::{CaseEvent, CaseEventKind};
use serde::{Deserialize, Serialize};

/// What an attendee said to the invitation they have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    #[default]
    NeedsAction,
    Accepted,
    Declined,
}

impl Answer {
    /// As iCalendar's PARTSTAT spells it.
    pub fn partstat(self) -> &'static str {
        match self {
            Answer::NeedsAction => "NEEDS-ACTION",
            Answer::Accepted => "ACCEPTED",
            Answer::Declined => "DECLINED",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Answer::NeedsAction => "needs-action",
            Answer::Accepted => "accepted",
            Answer::Declined => "declined",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    pub contact: String,
    #[serde(default)]
    pub answer: Answer,
    /// Reminders sent to them.
    #[serde(default)]
    pub reminded: u32,
    /// Answers they gave, so each new one is a new event.
    #[serde(default)]
    pub answers: u32,
    /// Invited to interpret (SOP 004), not as a party to the matter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interpreter: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// The event id that scheduled it; its iCalendar UID is `<id>@<case>.herald`.
    pub id: String,
    pub title: String,
    pub organizer: String,
    pub attendees: Vec<Attendee>,
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub video_link: String,
    /// iCalendar SEQUENCE: 0 when scheduled, bumped by each change.
    #[serde(default)]
    pub sequence: u32,
    #[serde(default)]
    pub cancelled: bool,
    /// How many of the policy's reminder times (longest first) have
    /// passed since the last change.
    #[serde(default)]
    pub reminders_passed: u32,
    /// When the invitation now standing was made (iCalendar DTSTAMP).
    pub changed_ms: i64,
}

/// What a meeting event asks of the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Send (or send again, updated) the invitation to every attendee.
    Invite(Meeting),
    /// Tell every attendee it is off.
    Cancel(Meeting),
    /// An attendee answered; nothing to send.
    Answered,
    /// The event names no meeting this case has (or one cancelled).
    Unknown(String),
}

fn ms(t: &herald_proto::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000
}

/// Reminder times already past at `now` for a meeting starting at
/// `start_ms`: they are skipped, not sent late.
fn passed(reminders: &[Duration], start_ms: i64, now: i64) -> u32 {
    reminders
        .iter()
        .take_while(|r| start_ms - r.as_millis() as i64 <= now)
        .count() as u32
}

/// Applies a meeting event to the case's meetings at `now`.
pub fn apply(
    all: &mut Vec<Meeting>,
    ev: &CaseEvent,
    reminders: &[Duration],
    now: i64,
) -> Option<Change> {
    let kind = ev.kind();
    if kind == CaseEventKind::MeetingAnswered {
        let a = ev.meeting_answer.as_ref()?;
        let Some(m) = all
            .iter_mut()
            .find(|m| m.id == a.meeting_id && !m.cancelled)
        else {
            return Some(Change::Unknown(a.meeting_id.clone()));
        };
        let Some(who) = m.attendees.iter_mut().find(|x| x.contact == a.contact_id) else {
            return Some(Change::Unknown(a.meeting_id.clone()));
        };
        who.answers += 1;
        who.answer = if a.accepted {
            Answer::Accepted
        } else {
            Answer::Declined
        };
        return Some(Change::Answered);
    }
    let new = ev.meeting.as_ref()?;
    match kind {
        CaseEventKind::MeetingScheduled => {
            if let Some(m) = all.iter().find(|m| m.id == new.meeting_id) {
                return Some(Change::Invite(m.clone()));
            }
            let start_ms = new.at.as_ref().map(ms).unwrap_or_default();
            let m = Meeting {
                id: new.meeting_id.clone(),
                title: new.title.trim().to_string(),
                organizer: ev.actor.clone(),
                attendees: new
                    .attendees
                    .iter()
                    .map(|c| (c, false))
                    .chain(new.interpreters.iter().map(|c| (c, true)))
                    .map(|(c, interpreter)| Attendee {
                        contact: c.clone(),
                        answer: Answer::NeedsAction,
                        reminded: 0,
                        answers: 0,
                        interpreter,
                    })
                    .collect(),
                start_ms,
                end_ms: start_ms + i64::from(new.duration_minutes) * 60_000,
                location: new.location.clone(),
                video_link: new.video_link.clone(),
                sequence: 0,
                cancelled: false,
                reminders_passed: passed(reminders, start_ms, now),
                changed_ms: now,
            };
            all.push(m.clone());
            Some(Change::Invite(m))
        }
        CaseEventKind::MeetingRescheduled | CaseEventKind::MeetingCancelled => {
            let Some(m) = all
                .iter_mut()
                .find(|m| m.id == new.meeting_id && !m.cancelled)
            else {
                return Some(Change::Unknown(new.meeting_id.clone()));
            };
            m.sequence += 1;
            m.changed_ms = now;
            if kind == CaseEventKind::MeetingCancelled {
                m.cancelled = true;
                return Some(Change::Cancel(m.clone()));
            }
            let minutes = if new.duration_minutes == 0 {
                (m.end_ms - m.start_ms) / 60_000
            } else {
                i64::from(new.duration_minutes)
            };
            if let Some(t) = &new.at {
                m.start_ms = ms(t);
            }
            m.end_ms = m.start_ms + minutes * 60_000;
            if !new.title.trim().is_empty() {
                m.title = new.title.trim().to_string();
            }
            if !new.location.is_empty() || !new.video_link.is_empty() {
                m.location = new.location.clone();
                m.video_link = new.video_link.clone();
            }
            // A new time needs a new answer (RFC 5546: a significant
            // change resets each attendee's participation status).
            for a in &mut m.attendees {
                a.answer = Answer::NeedsAction;
            }
            m.reminders_passed = passed(reminders, m.start_ms, now);
            Some(Change::Invite(m.clone()))
        }
        _ => None,
    }
}

/// When the next reminder of any meeting is due.
pub fn next_due(all: &[Meeting], reminders: &[Duration]) -> Option<i64> {
    all.iter()
        .filter(|m| !m.cancelled)
        .filter_map(|m| {
            reminders
                .get(m.reminders_passed as usize)
                .map(|r| m.start_ms - r.as_millis() as i64)
        })
        .min()
}

/// The reminders due at `now`: each meeting whose next reminder time came,
/// with who gets it (everyone invited who has not declined), counted as
/// sent. A meeting already begun gets none.
pub fn due(all: &mut [Meeting], reminders: &[Duration], now: i64) -> Vec<(Meeting, Vec<String>)> {
    let mut out = Vec::new();
    for m in all.iter_mut().filter(|m| !m.cancelled) {
        let before = m.reminders_passed;
        m.reminders_passed = passed(reminders, m.start_ms, now).max(before);
        if m.reminders_passed == before || m.start_ms <= now {
            continue;
        }
        let to: Vec<String> = m
            .attendees
            .iter_mut()
            .filter(|a| a.answer != Answer::Declined)
            .map(|a| {
                a.reminded += 1;
                a.contact.clone()
            })
            .collect();
        out.push((m.clone(), to));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::{Meeting as Wire, MeetingAnswer};

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_800_000_000_000;

    fn reminders() -> Vec<Duration> {
        vec![Duration::from_secs(24 * 3600), Duration::from_secs(3600)]
    }

    fn event(kind: CaseEventKind, meeting: Wire) -> CaseEvent {
        CaseEvent {
            event_id: "m-1".into(),
            kind: kind as i32,
            actor: "fl-sam".into(),
            meeting: Some(meeting),
            ..Default::default()
        }
    }

    fn at(ms: i64) -> Option<herald_proto::Timestamp> {
        Some(herald_proto::Timestamp {
            seconds: ms / 1000,
            nanos: 0,
        })
    }

    fn schedule(all: &mut Vec<Meeting>, start: i64) -> Option<Change> {
        let ev = event(
            CaseEventKind::MeetingScheduled,
            Wire {
                meeting_id: "m-1".into(),
                title: "Plan review".into(),
                attendees: vec!["client-0".into(), "tl-kim".into()],
                at: at(start),
                duration_minutes: 30,
                ..Default::default()
            },
        );
        apply(all, &ev, &reminders(), NOW)
    }

    fn answer(all: &mut Vec<Meeting>, who: &str, accepted: bool) -> Option<Change> {
        let ev = CaseEvent {
            kind: CaseEventKind::MeetingAnswered as i32,
            meeting_answer: Some(MeetingAnswer {
                meeting_id: "m-1".into(),
                contact_id: who.into(),
                accepted,
            }),
            ..Default::default()
        };
        apply(all, &ev, &reminders(), NOW)
    }

    #[test]
    fn reminders_come_a_day_and_an_hour_before_to_those_who_did_not_decline() {
        let mut all = Vec::new();
        let start = NOW + 48 * HOUR;
        assert!(matches!(schedule(&mut all, start), Some(Change::Invite(_))));
        assert_eq!(next_due(&all, &reminders()), Some(start - 24 * HOUR));
        assert_eq!(answer(&mut all, "tl-kim", false), Some(Change::Answered));
        assert!(due(&mut all, &reminders(), start - 24 * HOUR - 1).is_empty());
        let first = due(&mut all, &reminders(), start - 24 * HOUR);
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].1,
            ["client-0"],
            "the one who declined is not reminded"
        );
        assert_eq!(next_due(&all, &reminders()), Some(start - HOUR));
        let second = due(&mut all, &reminders(), start - HOUR + 5);
        assert_eq!(second[0].1, ["client-0"]);
        assert_eq!(next_due(&all, &reminders()), None);
        assert_eq!(all[0].attendees[0].reminded, 2);
        assert_eq!(all[0].attendees[1].reminded, 0);
    }

    #[test]
    fn an_interpreter_is_invited_answers_and_is_reminded_like_any_attendee() {
        let mut all = Vec::new();
        let start = NOW + 48 * HOUR;
        let ev = event(
            CaseEventKind::MeetingScheduled,
            Wire {
                meeting_id: "m-1".into(),
                title: "Plan review".into(),
                attendees: vec!["client-0".into()],
                interpreters: vec!["int-fr".into()],
                at: at(start),
                duration_minutes: 30,
                ..Default::default()
            },
        );
        let Some(Change::Invite(m)) = apply(&mut all, &ev, &reminders(), NOW) else {
            panic!("no invitation: {all:?}");
        };
        let invited: Vec<(&str, bool)> = m
            .attendees
            .iter()
            .map(|a| (a.contact.as_str(), a.interpreter))
            .collect();
        assert_eq!(invited, [("client-0", false), ("int-fr", true)]);
        assert_eq!(answer(&mut all, "client-0", false), Some(Change::Answered));
        let first = due(&mut all, &reminders(), start - 24 * HOUR);
        assert_eq!(first[0].1, ["int-fr"]);
    }

    #[test]
    fn a_meeting_arranged_late_skips_the_reminders_already_past() {
        let mut all = Vec::new();
        schedule(&mut all, NOW + 2 * HOUR);
        assert_eq!(
            all[0].reminders_passed, 1,
            "the day-before reminder is past"
        );
        assert_eq!(next_due(&all, &reminders()), Some(NOW + HOUR));
        assert!(due(&mut all, &reminders(), NOW + 1).is_empty());
    }

    #[test]
    fn rescheduling_bumps_the_sequence_and_asks_again_and_cancelling_ends_it() {
        let mut all = Vec::new();
        schedule(&mut all, NOW + 48 * HOUR);
        answer(&mut all, "client-0", true);
        let moved = event(
            CaseEventKind::MeetingRescheduled,
            Wire {
                meeting_id: "m-1".into(),
                at: at(NOW + 72 * HOUR),
                ..Default::default()
            },
        );
        let Some(Change::Invite(m)) = apply(&mut all, &moved, &reminders(), NOW + 1) else {
            panic!("no new invitation: {all:?}");
        };
        assert_eq!(m.sequence, 1);
        assert_eq!(m.end_ms - m.start_ms, 30 * 60_000, "the duration stays");
        assert_eq!(m.attendees[0].answer, Answer::NeedsAction);
        assert_eq!(m.changed_ms, NOW + 1);
        let off = event(
            CaseEventKind::MeetingCancelled,
            Wire {
                meeting_id: "m-1".into(),
                ..Default::default()
            },
        );
        let Some(Change::Cancel(m)) = apply(&mut all, &off, &reminders(), NOW + 2) else {
            panic!("not cancelled: {all:?}");
        };
        assert_eq!((m.sequence, m.cancelled), (2, true));
        assert_eq!(
            next_due(&all, &reminders()),
            None,
            "no reminder for a cancelled meeting"
        );
        assert!(matches!(
            apply(&mut all, &off, &reminders(), NOW + 3),
            Some(Change::Unknown(_))
        ));
        assert!(matches!(
            answer(&mut all, "client-0", true),
            Some(Change::Unknown(_))
        ));
    }
}
