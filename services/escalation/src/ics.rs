//! A meeting as an iCalendar object (RFC 5545) with its iTIP method
//! (RFC 5546): `METHOD:REQUEST` for an invitation or its update,
//! `METHOD:CANCEL` with `STATUS:CANCELLED` when it is called off. One file
//! per attendee, in their time zone: `DTSTART;TZID=<zone>` with a
//! `VTIMEZONE` giving the offset in force at the meeting (a single
//! observance, which is all a one-off event needs), or UTC when the
//! attendee has no zone. The `UID` is the meeting's for good and the
//! `SEQUENCE` grows with each change, so calendars replace the event
//! rather than add one. Lines end in CRLF, are folded at 75 octets and
//! text is escaped as the RFC says.

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::meetings::{Answer, Meeting};

/// Someone named in the file: their name and address.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// What one attendee's file says.
#[derive(Debug, Clone)]
pub struct Invite<'a> {
    pub meeting: &'a Meeting,
    pub case_id: &'a str,
    pub organizer: Person,
    pub attendee: Person,
    pub answer: Answer,
    /// IANA zone of the attendee; empty or unknown: UTC.
    pub time_zone: &'a str,
    /// The text of DESCRIPTION (e.g. the case and the answer links).
    pub description: String,
}

/// The meeting's UID, the same in every file about it.
pub fn uid(case_id: &str, meeting_id: &str) -> String {
    format!("{meeting_id}.{case_id}@herald")
}

/// The file's content type: `text/calendar` with its method.
pub fn content_type(cancel: bool) -> String {
    format!(
        "text/calendar; method={}; charset=UTF-8",
        if cancel { "CANCEL" } else { "REQUEST" }
    )
}

/// TEXT escaping (RFC 5545 §3.3.11).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value (RFC 5545 §3.2): quoted when it holds `:;,`, with no
/// DQUOTE or control character inside.
fn param(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    if clean.contains([':', ';', ',']) {
        format!("\"{clean}\"")
    } else {
        clean
    }
}

/// One content line, folded so no line is longer than 75 octets (a
/// continuation starts with a space), ended with CRLF.
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
    out
}

fn utc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    format!("{sign}{:02}{:02}", s / 3600, (s % 3600) / 60)
}

/// The file, as bytes to attach.
pub fn write(inv: &Invite<'_>, cancel: bool) -> String {
    let m = inv.meeting;
    let zone: Option<Tz> = inv.time_zone.parse().ok().filter(|z| *z != Tz::UTC);
    let mut lines: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        "PRODID:-//Herald//Meetings//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        format!("METHOD:{}", if cancel { "CANCEL" } else { "REQUEST" }),
    ];
    let (start, end) = match zone {
        Some(z) => {
            let at = |ms: i64| {
                z.from_utc_datetime(
                    &DateTime::<Utc>::from_timestamp_millis(ms)
                        .unwrap_or_default()
                        .naive_utc(),
                )
            };
            let (s, e) = (at(m.start_ms), at(m.end_ms));
            let off = s.offset().fix().local_minus_utc();
            lines.extend([
                "BEGIN:VTIMEZONE".to_string(),
                format!("TZID:{}", z.name()),
                "BEGIN:STANDARD".into(),
                "DTSTART:19700101T000000".into(),
                format!("TZOFFSETFROM:{}", offset(off)),
                format!("TZOFFSETTO:{}", offset(off)),
                format!("TZNAME:{}", escape(&s.format("%Z").to_string())),
                "END:STANDARD".into(),
                "END:VTIMEZONE".into(),
            ]);
            let local =
                |t: DateTime<Tz>| format!(";TZID={}:{}", z.name(), t.format("%Y%m%dT%H%M%S"));
            let end = if e.offset().fix().local_minus_utc() == off {
                local(e)
            } else {
                // The clocks change during the meeting: the one offset
                // given cannot say when it ends, UTC can.
                format!(":{}", utc(m.end_ms))
            };
            (local(s), end)
        }
        None => (
            format!(":{}", utc(m.start_ms)),
            format!(":{}", utc(m.end_ms)),
        ),
    };
    lines.extend([
        "BEGIN:VEVENT".to_string(),
        format!("UID:{}", uid(inv.case_id, &m.id)),
        format!("SEQUENCE:{}", m.sequence),
        format!("DTSTAMP:{}", utc(m.changed_ms)),
        format!("DTSTART{start}"),
        format!("DTEND{end}"),
        format!("SUMMARY:{}", escape(&m.title)),
    ]);
    if !inv.description.is_empty() {
        lines.push(format!("DESCRIPTION:{}", escape(&inv.description)));
    }
    if !m.location.is_empty() {
        lines.push(format!("LOCATION:{}", escape(&m.location)));
    }
    if !m.video_link.is_empty() {
        lines.push(format!("LOCATION:{}", escape(&m.video_link)));
        lines.push(format!("URL:{}", m.video_link));
    }
    lines.push(format!(
        "ORGANIZER;CN={}:mailto:{}",
        param(&inv.organizer.name),
        inv.organizer.email
    ));
    lines.push(format!(
        "ATTENDEE;CN={};CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={};RSVP={}:mailto:{}",
        param(&inv.attendee.name),
        inv.answer.partstat(),
        if cancel { "FALSE" } else { "TRUE" },
        inv.attendee.email
    ));
    lines.push(format!(
        "STATUS:{}",
        if cancel { "CANCELLED" } else { "CONFIRMED" }
    ));
    lines.extend(["END:VEVENT".to_string(), "END:VCALENDAR".into()]);
    lines.iter().map(|l| fold(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meetings::Attendee;

    fn meeting() -> Meeting {
        Meeting {
            id: "m-1".into(),
            title: "Review; plan, budget\\next".into(),
            organizer: "fl-sam".into(),
            attendees: vec![Attendee {
                contact: "client-0".into(),
                answer: Answer::NeedsAction,
                reminded: 0,
                answers: 0,
                interpreter: false,
            }],
            // 2026-12-10 09:00 UTC: 10:00 in Paris (CET).
            start_ms: 1_796_893_200_000,
            end_ms: 1_796_893_200_000 + 3_600_000,
            location: "Room 4, first floor".into(),
            video_link: String::new(),
            sequence: 2,
            cancelled: false,
            reminders_passed: 0,
            changed_ms: 1_796_000_000_000,
        }
    }

    fn invite<'a>(m: &'a Meeting, tz: &'a str) -> Invite<'a> {
        Invite {
            meeting: m,
            case_id: "CASE-1",
            organizer: Person {
                name: "Sam".into(),
                email: "sam@staff.example.org".into(),
            },
            attendee: Person {
                name: "Client, Zero".into(),
                email: "client-0@clients.example.org".into(),
            },
            answer: Answer::NeedsAction,
            time_zone: tz,
            description: "A long description that goes on and on so that the line is folded at seventy-five octets, with é and ü in it".into(),
        }
    }

    #[test]
    fn a_file_is_crlf_folded_escaped_and_in_the_attendees_zone() {
        let m = meeting();
        let ics = write(&invite(&m, "Europe/Paris"), false);
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(!ics.replace("\r\n", "").contains('\n'), "only CRLF");
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains("METHOD:REQUEST\r\n"));
        assert!(
            unfolded.contains("DTSTART;TZID=Europe/Paris:20261210T100000\r\n"),
            "{unfolded}"
        );
        assert!(unfolded.contains("DTEND;TZID=Europe/Paris:20261210T110000\r\n"));
        assert!(unfolded.contains("TZOFFSETTO:+0100\r\n"));
        assert!(unfolded.contains("SUMMARY:Review\\; plan\\, budget\\\\next\r\n"));
        assert!(unfolded.contains("UID:m-1.CASE-1@herald\r\nSEQUENCE:2\r\n"));
        assert!(unfolded.contains("ATTENDEE;CN=\"Client, Zero\";"));
        assert!(
            unfolded
                .contains("PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:client-0@clients.example.org")
        );
        assert!(unfolded.contains("é and ü in it"));
        let cancel = write(&invite(&m, ""), true).replace("\r\n ", "");
        assert!(cancel.contains("METHOD:CANCEL\r\n"));
        assert!(cancel.contains("STATUS:CANCELLED\r\n"));
        assert!(
            cancel.contains("DTSTART:20261210T090000Z\r\n"),
            "UTC without a zone"
        );
        assert!(!cancel.contains("VTIMEZONE"));
    }

    #[test]
    fn folding_never_splits_a_character() {
        let line = format!("DESCRIPTION:{}", "é".repeat(100));
        let folded = fold(&line);
        for l in folded.trim_end().split("\r\n") {
            assert!(l.len() <= 75);
        }
        assert_eq!(folded.replace("\r\n ", "").trim_end(), line);
    }
}
