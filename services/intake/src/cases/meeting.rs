//! Meetings about a case (SOP 004, scheduling and confirming meetings):
//! scheduled, rescheduled, cancelled and answered, each checked field by
//! field and written to the case's trail. Which meetings exist, who
//! organises them and when each staff member is busy is kept in
//! `calendar.rs`; sending the invitations is the escalation service's.

use herald_proto::v1::{CaseEvent, CaseEventKind, ErrorCode, Rejected};
use herald_runtime::audit::Entry;

use crate::validate::reject;

const MAX_TITLE: usize = 200;
const MAX_PLACE: usize = 500;
/// People one meeting may invite.
pub const MAX_ATTENDEES: usize = 50;
/// The longest meeting, in minutes: a working day and a half.
pub const MAX_MINUTES: u32 = 12 * 60;

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn meeting_kind(kind: CaseEventKind) -> bool {
    matches!(
        kind,
        CaseEventKind::MeetingScheduled
            | CaseEventKind::MeetingRescheduled
            | CaseEventKind::MeetingCancelled
    )
}

/// Checks the meeting of a meeting event and the answer of
/// `meeting_answered`; every other kind must carry neither. `now_s` is the
/// time in Unix seconds: a meeting is arranged for the future.
pub fn check(kind: CaseEventKind, ev: &mut CaseEvent, now_s: i64) -> Result<(), Rejected> {
    use ErrorCode as E;
    let bad = |field: &str, why: &str| Err(reject(E::InvalidArgument, field, why));
    match (meeting_kind(kind), ev.meeting.as_mut()) {
        (true, None) => {
            return bad(
                "meeting",
                "is required: which meeting, and for a new one its title, attendees, start and duration",
            );
        }
        (false, Some(_)) => {
            return bad("meeting", "only meeting events carry a meeting");
        }
        (false, None) => {}
        (true, Some(m)) => {
            if kind == CaseEventKind::MeetingScheduled {
                if !m.meeting_id.is_empty() && m.meeting_id != ev.event_id {
                    return bad(
                        "meeting.meeting_id",
                        "is the event id when a meeting is scheduled; leave it empty",
                    );
                }
                m.meeting_id = ev.event_id.clone();
                if !herald_proto::subjects::is_subject_token(&ev.actor) {
                    return bad(
                        "actor",
                        "is required: the organiser's contact id (letters, digits, - and _)",
                    );
                }
                if m.title.trim().is_empty() {
                    return bad("meeting.title", "is required: what the meeting is about");
                }
                if m.attendees.is_empty() || m.attendees.len() > MAX_ATTENDEES {
                    return bad(
                        "meeting.attendees",
                        &format!("must name 1-{MAX_ATTENDEES} people by contact id"),
                    );
                }
                for (n, a) in m.attendees.iter().enumerate() {
                    let field = format!("meeting.attendees[{n}]");
                    if !herald_proto::subjects::is_subject_token(a) {
                        return bad(&field, "is not a contact id");
                    }
                    if *a == ev.actor {
                        return bad(
                            &field,
                            "is the organiser, who is not invited to their own meeting",
                        );
                    }
                    if m.attendees[..n].contains(a) {
                        return bad(&field, "names someone already invited");
                    }
                }
                if !m.interpreters.is_empty() {
                    return bad(
                        "meeting.interpreters",
                        "are chosen by Herald from the directory; set meeting.interpreter to ask for one",
                    );
                }
                if m.at.is_none() {
                    return bad("meeting.at", "is required: when the meeting starts");
                }
                if m.duration_minutes == 0 {
                    return bad("meeting.duration_minutes", "is required: how long it lasts");
                }
            } else if !herald_proto::subjects::is_subject_token(&m.meeting_id) {
                return bad(
                    "meeting.meeting_id",
                    "is required: the meeting's id (the event id that scheduled it)",
                );
            } else if !m.attendees.is_empty() {
                return bad(
                    "meeting.attendees",
                    "are set when the meeting is scheduled; cancel it and schedule a new one to invite others",
                );
            } else if m.interpreter || !m.interpreters.is_empty() {
                return bad(
                    "meeting.interpreter",
                    "is asked for when the meeting is scheduled; the interpreters invited then stay invited",
                );
            }
            if kind == CaseEventKind::MeetingCancelled {
                if m.at.is_some() || m.duration_minutes != 0 || !m.title.is_empty() {
                    return bad("meeting", "a cancellation names only the meeting's id");
                }
            } else {
                if kind == CaseEventKind::MeetingRescheduled && m.at.is_none() {
                    return bad("meeting.at", "is required: when the meeting now starts");
                }
                if let Some(t) = &m.at {
                    if t.seconds <= 0 || !(0..1_000_000_000).contains(&t.nanos) {
                        return bad("meeting.at", "is not a valid timestamp");
                    }
                    if t.seconds <= now_s {
                        return bad(
                            "meeting.at",
                            "is in the past; a meeting is arranged for later",
                        );
                    }
                }
                if m.duration_minutes > MAX_MINUTES {
                    return bad(
                        "meeting.duration_minutes",
                        &format!("is at most {MAX_MINUTES} minutes"),
                    );
                }
                if m.title.chars().count() > MAX_TITLE || !printable(&m.title) {
                    return bad(
                        "meeting.title",
                        &format!("must be at most {MAX_TITLE} printable characters"),
                    );
                }
                if m.location.chars().count() > MAX_PLACE || !printable(&m.location) {
                    return bad(
                        "meeting.location",
                        &format!("must be at most {MAX_PLACE} printable characters"),
                    );
                }
                if !m.video_link.is_empty()
                    && (!m.video_link.starts_with("https://")
                        || m.video_link.len() > MAX_PLACE
                        || m.video_link
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control()))
                {
                    return bad(
                        "meeting.video_link",
                        "must be an https:// address of at most 500 characters",
                    );
                }
                if !m.location.is_empty() && !m.video_link.is_empty() {
                    return bad(
                        "meeting.video_link",
                        "a meeting is in one place: give a location or a video link, not both",
                    );
                }
            }
        }
    }
    match (kind, &ev.meeting_answer) {
        (CaseEventKind::MeetingAnswered, None) => bad(
            "meeting_answer",
            "is required: the meeting, the attendee and their answer",
        ),
        (CaseEventKind::MeetingAnswered, Some(a)) => {
            if !herald_proto::subjects::is_subject_token(&a.meeting_id) {
                bad("meeting_answer.meeting_id", "is required: the meeting's id")
            } else if !herald_proto::subjects::is_subject_token(&a.contact_id) {
                bad(
                    "meeting_answer.contact_id",
                    "is required: the attendee's contact id",
                )
            } else {
                Ok(())
            }
        }
        (_, Some(_)) => bad(
            "meeting_answer",
            "only meeting_answered events carry an answer",
        ),
        (_, None) => Ok(()),
    }
}

/// The people a new meeting names, who must be in the directory: its
/// organiser and attendees, as (field, contact id).
pub fn named(ev: &CaseEvent) -> Vec<(String, String)> {
    if ev.kind() != CaseEventKind::MeetingScheduled {
        return Vec::new();
    }
    let mut named = vec![("actor".to_string(), ev.actor.clone())];
    if let Some(m) = &ev.meeting {
        named.extend(
            m.attendees
                .iter()
                .enumerate()
                .map(|(n, a)| (format!("meeting.attendees[{n}]"), a.clone())),
        );
    }
    named
}

/// The trail record's summary and attributes for a meeting event.
pub fn document(ev: &CaseEvent, mut entry: Entry) -> (String, Entry) {
    if let Some(a) = &ev.meeting_answer {
        let said = if a.accepted { "accepted" } else { "declined" };
        return (
            format!("meeting {}: {} {said}", a.meeting_id, a.contact_id),
            entry
                .attr("meeting_id", &a.meeting_id)
                .attr("attendee", &a.contact_id)
                .attr("answer", said),
        );
    }
    let Some(m) = &ev.meeting else {
        return (String::new(), entry);
    };
    entry = entry.attr("meeting_id", &m.meeting_id);
    if let Some(t) = &m.at {
        let at = chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(Some(t)));
        entry = entry.attr("meeting_at", at.to_rfc3339());
    }
    if m.duration_minutes > 0 {
        entry = entry.attr("duration_minutes", m.duration_minutes);
    }
    if !m.attendees.is_empty() {
        entry = entry.attr("attendees", m.attendees.join(", "));
    }
    if !m.interpreters.is_empty() {
        entry = entry.attr("interpreters", m.interpreters.join(", "));
    }
    let said = match ev.kind() {
        CaseEventKind::MeetingScheduled if m.interpreters.is_empty() => format!(
            "meeting {} scheduled by {} with {}",
            m.meeting_id,
            ev.actor,
            m.attendees.join(", ")
        ),
        CaseEventKind::MeetingScheduled => format!(
            "meeting {} scheduled by {} with {}; interpreting: {}",
            m.meeting_id,
            ev.actor,
            m.attendees.join(", "),
            m.interpreters.join(", ")
        ),
        CaseEventKind::MeetingRescheduled => format!("meeting {} rescheduled", m.meeting_id),
        _ => format!("meeting {} cancelled", m.meeting_id),
    };
    (said, entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::{Meeting, MeetingAnswer};

    const NOW: i64 = 1_800_000_000;

    fn scheduled() -> CaseEvent {
        CaseEvent {
            event_id: "m-1".into(),
            case_id: "C".into(),
            kind: CaseEventKind::MeetingScheduled as i32,
            actor: "fl-sam".into(),
            meeting: Some(Meeting {
                title: "Plan review".into(),
                attendees: vec!["client-0".into()],
                at: Some(herald_proto::Timestamp {
                    seconds: NOW + 3600,
                    nanos: 0,
                }),
                duration_minutes: 30,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field(ev: &mut CaseEvent) -> String {
        let kind = ev.kind();
        check(kind, ev, NOW)
            .map(|_| String::new())
            .unwrap_or_else(|r| r.field)
    }

    #[test]
    fn a_meeting_is_refused_naming_the_field_that_is_wrong() {
        let mut ok = scheduled();
        assert_eq!(field(&mut ok), "");
        assert_eq!(
            ok.meeting.as_ref().map(|m| m.meeting_id.as_str()),
            Some("m-1")
        );
        type Spoil = Box<dyn Fn(&mut CaseEvent)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("actor", Box::new(|e| e.actor.clear())),
            (
                "meeting.title",
                Box::new(|e| e.meeting.as_mut().unwrap().title.clear()),
            ),
            (
                "meeting.attendees",
                Box::new(|e| e.meeting.as_mut().unwrap().attendees.clear()),
            ),
            (
                "meeting.attendees[1]",
                Box::new(|e| {
                    e.meeting
                        .as_mut()
                        .unwrap()
                        .attendees
                        .push("client-0".into())
                }),
            ),
            (
                "meeting.attendees[0]",
                Box::new(|e| e.meeting.as_mut().unwrap().attendees[0] = "fl-sam".into()),
            ),
            (
                "meeting.at",
                Box::new(|e| e.meeting.as_mut().unwrap().at = None),
            ),
            (
                "meeting.at",
                Box::new(|e| e.meeting.as_mut().unwrap().at.as_mut().unwrap().seconds = NOW - 1),
            ),
            (
                "meeting.duration_minutes",
                Box::new(|e| e.meeting.as_mut().unwrap().duration_minutes = 0),
            ),
            (
                "meeting.duration_minutes",
                Box::new(|e| e.meeting.as_mut().unwrap().duration_minutes = MAX_MINUTES + 1),
            ),
            (
                "meeting.video_link",
                Box::new(|e| e.meeting.as_mut().unwrap().video_link = "http://x".into()),
            ),
            (
                "meeting.video_link",
                Box::new(|e| {
                    let m = e.meeting.as_mut().unwrap();
                    m.location = "Room 4".into();
                    m.video_link = "https://meet.example.org/x".into();
                }),
            ),
            ("meeting", Box::new(|e| e.meeting = None)),
            (
                "meeting_answer",
                Box::new(|e| e.meeting_answer = Some(MeetingAnswer::default())),
            ),
        ];
        for (want, spoil) in cases {
            let mut ev = scheduled();
            spoil(&mut ev);
            assert_eq!(field(&mut ev), want, "{ev:?}");
        }
        let mut cancel = CaseEvent {
            kind: CaseEventKind::MeetingCancelled as i32,
            meeting: Some(Meeting {
                meeting_id: "m-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(field(&mut cancel), "");
        cancel.meeting.as_mut().unwrap().meeting_id.clear();
        assert_eq!(field(&mut cancel), "meeting.meeting_id");
        let mut answer = CaseEvent {
            kind: CaseEventKind::MeetingAnswered as i32,
            ..Default::default()
        };
        assert_eq!(field(&mut answer), "meeting_answer");
        answer.meeting_answer = Some(MeetingAnswer {
            meeting_id: "m-1".into(),
            contact_id: "client-0".into(),
            accepted: true,
        });
        assert_eq!(field(&mut answer), "");
    }
}
