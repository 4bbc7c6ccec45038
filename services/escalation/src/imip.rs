//! An attendee's answer sent by their calendar program (iMIP, RFC 6047):
//! the email the inbound path hands over carries a `METHOD:REPLY` object
//! whose event names the meeting by its `UID` and `SEQUENCE`, and whose
//! one `ATTENDEE` says `PARTSTAT=ACCEPTED` or `DECLINED` (RFC 5546 §3.2.3).
//! It is read with the `icalendar` crate's parser; anything else — another
//! method, a UID that is not one of Herald's, no attendee or no decision —
//! is not an answer.

use axum::http::StatusCode;
use herald_proto::v1::InboundMessage;
use icalendar::parser::{read_calendar, unfold};
use tracing::{info, warn};

use crate::{Escalator, invite::Link};

/// What a reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub case_id: String,
    pub meeting_id: String,
    pub sequence: u32,
    /// The attendee's address, from `mailto:`, lower-cased.
    pub attendee: String,
    pub accepted: bool,
}

/// The case and meeting a Herald `UID` (`<meeting>.<case>@herald`) names.
fn meeting_of(uid: &str) -> Option<(String, String)> {
    let (meeting, case) = uid.strip_suffix("@herald")?.split_once('.')?;
    (!meeting.is_empty() && !case.is_empty()).then(|| (case.to_string(), meeting.to_string()))
}

/// The answer `text` (an iCalendar object) gives, if it is one.
pub fn read(text: &str) -> Option<Reply> {
    let unfolded = unfold(text);
    let cal = read_calendar(&unfolded).ok()?;
    let method = cal
        .properties
        .iter()
        .find(|p| p.name.as_str().eq_ignore_ascii_case("METHOD"))?;
    if !method.val.as_str().trim().eq_ignore_ascii_case("REPLY") {
        return None;
    }
    let event = cal
        .components
        .iter()
        .find(|c| c.name.as_str().eq_ignore_ascii_case("VEVENT"))?;
    let prop = |name: &str| {
        event
            .properties
            .iter()
            .find(|p| p.name.as_str().eq_ignore_ascii_case(name))
    };
    let (case_id, meeting_id) = meeting_of(prop("UID")?.val.as_str().trim())?;
    let sequence = match prop("SEQUENCE") {
        Some(p) => p.val.as_str().trim().parse().ok()?,
        None => 0,
    };
    let attendee = prop("ATTENDEE")?;
    let partstat = attendee
        .params
        .iter()
        .find(|p| p.key.as_str().eq_ignore_ascii_case("PARTSTAT"))?
        .val
        .as_ref()?
        .as_str()
        .to_ascii_uppercase();
    let accepted = match partstat.as_str() {
        "ACCEPTED" => true,
        "DECLINED" => false,
        _ => return None,
    };
    let address = attendee.val.as_str().trim();
    let address = address
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("mailto:"))
        .map(|_| &address[7..])?;
    Some(Reply {
        case_id,
        meeting_id,
        sequence,
        attendee: address.to_ascii_lowercase(),
        accepted,
    })
}

impl Escalator {
    /// Counts `r`, the calendar reply in `m`, as its attendee's answer:
    /// only when the email comes from the address the reply names, which
    /// is the address of someone invited to that meeting. An answer that
    /// cannot count (an older invitation, a cancelled meeting) is noted
    /// in the case's trail.
    pub(crate) async fn answer_by_calendar(
        &self,
        m: &InboundMessage,
        r: &Reply,
    ) -> anyhow::Result<()> {
        if m.from.to_ascii_lowercase() != r.attendee {
            warn!("a calendar reply for someone other than its sender was not counted");
            return Ok(());
        }
        let Some(stored) = self.store.get(&r.case_id).await? else {
            info!("a calendar reply for a case not known here was not counted");
            return Ok(());
        };
        let Some(meeting) = stored.state.meetings.iter().find(|x| x.id == r.meeting_id) else {
            info!("a calendar reply for a meeting not known here was not counted");
            return Ok(());
        };
        let ids: Vec<String> = meeting
            .attendees
            .iter()
            .map(|a| a.contact.clone())
            .collect();
        let found = self.directory.get_many(&ids).await?;
        let who = ids.iter().zip(&found).find_map(|(id, c)| {
            c.as_ref()
                .and_then(|c| c.email.as_deref())
                .is_some_and(|e| e.eq_ignore_ascii_case(&r.attendee))
                .then(|| id.clone())
        });
        let Some(contact_id) = who else {
            warn!("a calendar reply from someone not invited was not counted");
            return Ok(());
        };
        let link = Link {
            case_id: r.case_id.clone(),
            meeting_id: r.meeting_id.clone(),
            sequence: r.sequence,
            contact_id: contact_id.clone(),
            accept: r.accepted,
        };
        let (code, said) = self
            .answer(&link, "answered by a calendar reply (iMIP)")
            .await;
        match code {
            StatusCode::OK => Ok(()),
            StatusCode::SERVICE_UNAVAILABLE => {
                anyhow::bail!("a calendar reply could not be recorded yet: {said}")
            }
            _ => {
                let meeting = meeting.clone();
                self.meeting_note(
                    &r.case_id,
                    &meeting,
                    &contact_id,
                    &format!("imip-{}-{}", r.sequence, m.message_id),
                    format!(
                        "meeting {}: a calendar reply from {contact_id} was not counted: {said}",
                        r.meeting_id
                    ),
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(method: &str, partstat: &str, uid: &str) -> String {
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Example Calendar//EN",
            &format!("METHOD:{method}"),
            "BEGIN:VEVENT",
            &format!("UID:{uid}"),
            "SEQUENCE:1",
            "DTSTAMP:20261204T100000Z",
            &format!("ATTENDEE;PARTSTAT={partstat};CN=Kim:mailto:Kim@Staff.example.org"),
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
        .join("\r\n")
    }

    #[test]
    fn an_accepting_or_declining_reply_names_the_meeting_and_the_attendee() {
        assert_eq!(
            read(&reply("REPLY", "ACCEPTED", "mtg-1.CASE-M@herald")),
            Some(Reply {
                case_id: "CASE-M".into(),
                meeting_id: "mtg-1".into(),
                sequence: 1,
                attendee: "kim@staff.example.org".into(),
                accepted: true,
            })
        );
        assert_eq!(
            read(&reply("reply", "declined", "mtg-1.CASE-M@herald")).map(|r| r.accepted),
            Some(false)
        );
    }

    #[test]
    fn anything_else_is_not_an_answer() {
        for text in [
            reply("REQUEST", "ACCEPTED", "mtg-1.CASE-M@herald"),
            reply("REPLY", "TENTATIVE", "mtg-1.CASE-M@herald"),
            reply("REPLY", "ACCEPTED", "someone-elses-uid@example.org"),
            reply("REPLY", "ACCEPTED", ".CASE-M@herald"),
            "not a calendar".to_string(),
        ] {
            assert_eq!(read(&text), None, "{text}");
        }
    }
}
