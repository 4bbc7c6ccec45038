//! Meeting invitations, cancellations and reminders sent through intake,
//! one `NotificationRequest` per attendee with the iCalendar file made for
//! them (`ics.rs`) in their language and time zone; and the signed accept
//! and decline links in each invitation,
//! `<public_url>/v1/escalation/meeting?case=&m=&seq=&c=&d=accept|decline&s=`,
//! signed with `escalation.survey_secret` over what they name. Opening a
//! link shows a page with one button (mail scanners open links); pressing
//! it sends `meeting_answered` to intake in the attendee's name. A link of
//! an invitation that a newer one replaced, or of a cancelled meeting,
//! answers nothing and says so.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
    routing::get,
};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use herald_content::token;
use herald_directory::contacts::Contact;
use herald_proto::v1::{
    Attachment, AuditStep, CaseEvent, CaseEventKind, Channel, CommunicationType, MeetingAnswer,
    NotificationRequest, Priority, Recipient,
};
use herald_runtime::audit::Entry;
use tracing::error;

use crate::{
    Escalator, MEETING_CANCELLED, MEETING_INVITATION, MEETING_REMINDER,
    ics::{self, Invite, Person},
    meetings::{Answer, Meeting},
    state::CaseState,
};

/// The address of the answer links.
pub const PATH: &str = "/v1/escalation/meeting";

/// What one answer link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub case_id: String,
    pub meeting_id: String,
    /// The invitation's SEQUENCE: a link answers only the invitation it came with.
    pub sequence: u32,
    pub contact_id: String,
    pub accept: bool,
}

impl Link {
    fn signed(&self) -> String {
        format!(
            "meeting\n{}\n{}\n{}\n{}\n{}",
            self.case_id,
            self.meeting_id,
            self.sequence,
            self.contact_id,
            if self.accept { "accept" } else { "decline" }
        )
    }

    pub fn url(&self, secret: &[u8], public_url: &str) -> String {
        let seq = self.sequence.to_string();
        herald_content::url::with_query(
            &format!("{}{PATH}", public_url.trim_end_matches('/')),
            &[
                ("case", &self.case_id),
                ("m", &self.meeting_id),
                ("seq", &seq),
                ("c", &self.contact_id),
                ("d", if self.accept { "accept" } else { "decline" }),
                ("s", &token::sign(secret, &self.signed())),
            ],
        )
    }

    /// The link a query names, if its signature holds.
    pub fn read(secret: &[u8], query: &str) -> Option<Link> {
        let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let field = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let link = Link {
            case_id: field("case")?.to_string(),
            meeting_id: field("m")?.to_string(),
            sequence: field("seq")?.parse().ok()?,
            contact_id: field("c")?.to_string(),
            accept: match field("d")? {
                "accept" => true,
                "decline" => false,
                _ => return None,
            },
        };
        token::verify(secret, &link.signed(), field("s")?).then_some(link)
    }
}

/// A meeting's time in `zone`, e.g. "2026-12-10 10:00-11:00 (Europe/Paris)".
pub fn when(m: &Meeting, zone: &str) -> String {
    let tz: Tz = zone.parse().unwrap_or(Tz::UTC);
    let at = |ms: i64| {
        tz.from_utc_datetime(
            &DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap_or_default()
                .naive_utc(),
        )
    };
    let (s, e) = (at(m.start_ms), at(m.end_ms));
    let end = if s.date_naive() == e.date_naive() {
        e.format("%H:%M").to_string()
    } else {
        e.format("%Y-%m-%d %H:%M").to_string()
    };
    format!(
        "{} {}-{end} ({})",
        s.format("%Y-%m-%d"),
        s.format("%H:%M"),
        tz.name()
    )
}

fn place(m: &Meeting) -> String {
    match (m.location.is_empty(), m.video_link.is_empty()) {
        (false, _) => m.location.clone(),
        (true, false) => m.video_link.clone(),
        (true, true) => "to be confirmed".into(),
    }
}

fn person(c: Option<&Contact>, id: &str) -> Person {
    Person {
        name: c
            .map(|c| c.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| id.to_string()),
        email: c
            .and_then(|c| c.email.clone())
            .unwrap_or_else(|| format!("{id}@invalid")),
    }
}

impl Escalator {
    fn answer_links(&self, case_id: &str, m: &Meeting, contact: &str) -> (String, String) {
        let link = |accept| {
            Link {
                case_id: case_id.to_string(),
                meeting_id: m.id.clone(),
                sequence: m.sequence,
                contact_id: contact.to_string(),
                accept,
            }
            .url(self.survey_secret.as_bytes(), &self.public_url)
        };
        (link(true), link(false))
    }

    /// Sends each attendee the meeting's invitation as it stands (or its
    /// cancellation), with their own `.ics`, and documents it.
    pub(crate) async fn invite(
        &self,
        case_id: &str,
        st: &CaseState,
        m: &Meeting,
        cancel: bool,
    ) -> anyhow::Result<()> {
        let organizer = self.directory.get(&m.organizer).await?;
        let org = person(organizer.as_ref(), &m.organizer);
        for a in &m.attendees {
            let contact = self.directory.get(&a.contact).await?;
            let zone = contact
                .as_ref()
                .map(|c| c.time_zone.clone())
                .unwrap_or_default();
            let (accept, decline) = self.answer_links(case_id, m, &a.contact);
            let description = format!(
                "{}{} ({}). Accept: {accept} Decline: {decline}",
                if a.interpreter { "Interpreting: " } else { "" },
                m.title,
                st.reference(case_id)
            );
            let file = ics::write(
                &Invite {
                    meeting: m,
                    case_id,
                    organizer: org.clone(),
                    attendee: person(contact.as_ref(), &a.contact),
                    answer: if cancel {
                        a.answer
                    } else {
                        Answer::NeedsAction
                    },
                    time_zone: &zone,
                    description: if cancel { m.title.clone() } else { description },
                },
                cancel,
            );
            let mut params = BTreeMap::from([
                ("reference".to_string(), st.reference(case_id)),
                ("title".to_string(), m.title.clone()),
                ("when".to_string(), when(m, &zone)),
                ("organizer".to_string(), org.name.clone()),
            ]);
            if !cancel {
                params.insert("where".into(), place(m));
                params.insert("updated".into(), (m.sequence > 0).to_string());
                params.insert("interpreting".into(), a.interpreter.to_string());
                params.insert("accept_link".into(), accept);
                params.insert("decline_link".into(), decline);
            }
            let req = NotificationRequest {
                idempotency_key: format!("mtg:{case_id}:{}:{}:{}", m.id, m.sequence, a.contact),
                template_id: if cancel {
                    MEETING_CANCELLED
                } else {
                    MEETING_INVITATION
                }
                .into(),
                params,
                attachments: vec![Attachment {
                    filename: if cancel { "cancel.ics" } else { "invite.ics" }.into(),
                    content_type: ics::content_type(cancel),
                    content: file.into_bytes(),
                }],
                ..self.meeting_request(case_id, st, contact.as_ref(), &a.contact)
            };
            let what = if cancel {
                "cancellation".to_string()
            } else if m.sequence == 0 {
                "invitation".to_string()
            } else {
                format!("updated invitation (sequence {})", m.sequence)
            };
            let summary = match self.submit(&req).await? {
                Ok(_) => format!("meeting {}: {what} sent to {}", m.id, a.contact),
                Err(r) => format!(
                    "meeting {}: {what} to {} refused: {} {}",
                    m.id, a.contact, r.field, r.message
                ),
            };
            self.meeting_note(
                case_id,
                m,
                &a.contact,
                &format!("{}-{}", m.sequence, a.contact),
                summary,
            )
            .await?;
        }
        Ok(())
    }

    /// Reminds `to` (the attendees who have not declined) of the meeting.
    pub(crate) async fn remind_meeting(
        &self,
        case_id: &str,
        st: &CaseState,
        m: &Meeting,
        round: u32,
        to: &[String],
    ) -> anyhow::Result<()> {
        let organizer = self.directory.get(&m.organizer).await?;
        let org = person(organizer.as_ref(), &m.organizer);
        let before = round
            .checked_sub(1)
            .and_then(|i| self.policies.meeting_reminders.get(i as usize))
            .map(|d| humantime::format_duration(*d).to_string())
            .unwrap_or_default();
        for id in to {
            let contact = self.directory.get(id).await?;
            let zone = contact
                .as_ref()
                .map(|c| c.time_zone.clone())
                .unwrap_or_default();
            let req = NotificationRequest {
                idempotency_key: format!("mtg:{case_id}:{}:{}:r{round}:{id}", m.id, m.sequence),
                template_id: MEETING_REMINDER.into(),
                params: BTreeMap::from([
                    ("reference".to_string(), st.reference(case_id)),
                    ("title".to_string(), m.title.clone()),
                    ("when".to_string(), when(m, &zone)),
                    ("where".to_string(), place(m)),
                    ("organizer".to_string(), org.name.clone()),
                ]),
                ..self.meeting_request(case_id, st, contact.as_ref(), id)
            };
            let summary = match self.submit(&req).await? {
                Ok(_) => format!(
                    "meeting {}: reminder sent to {id}, {before} before it starts",
                    m.id
                ),
                Err(r) => format!(
                    "meeting {}: reminder to {id} refused: {} {}",
                    m.id, r.field, r.message
                ),
            };
            self.meeting_note(
                case_id,
                m,
                id,
                &format!("{}-r{round}-{id}", m.sequence),
                summary,
            )
            .await?;
        }
        Ok(())
    }

    fn meeting_request(
        &self,
        case_id: &str,
        st: &CaseState,
        contact: Option<&Contact>,
        id: &str,
    ) -> NotificationRequest {
        NotificationRequest {
            communication_type: CommunicationType::FollowUp as i32,
            priority: Priority::Normal as i32,
            recipients: vec![Recipient::contact(id)],
            // The calendar file goes by email; someone without an address
            // is told on their usual channel.
            channel_override: if contact.is_some_and(|c| c.email.is_some()) {
                vec![Channel::Email as i32]
            } else {
                Vec::new()
            },
            case_id: case_id.to_string(),
            requester: "escalation".into(),
            responsible_staff: st.staff.clone(),
            ..Default::default()
        }
    }

    pub(crate) async fn meeting_note(
        &self,
        case_id: &str,
        m: &Meeting,
        contact: &str,
        tag: &str,
        summary: String,
    ) -> anyhow::Result<()> {
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: contact.to_string(),
                record_id: Some(format!("mtg-{case_id}-{}-{tag}", m.id)),
                ..Entry::new(AuditStep::FollowUp, summary)
            }
            .attr("meeting_id", &m.id)
            .attr("sequence", m.sequence),
        )
        .await
    }

    /// What an answer does (`how` it came: pressing a link, a calendar's
    /// reply): the page's status and words.
    pub(crate) async fn answer(&self, link: &Link, how: &str) -> (StatusCode, String) {
        let stored = match self.store.get(&link.case_id).await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "meeting answer: case unreadable");
                return unavailable();
            }
        };
        let meeting = stored
            .as_ref()
            .and_then(|s| s.state.meetings.iter().find(|m| m.id == link.meeting_id));
        let Some(m) = meeting else {
            return (StatusCode::NOT_FOUND, "This meeting is not known.".into());
        };
        if m.cancelled {
            return (
                StatusCode::GONE,
                format!("{} was cancelled. Nothing was answered.", m.title),
            );
        }
        if m.sequence != link.sequence {
            return (
                StatusCode::CONFLICT,
                format!(
                    "{} has changed since this invitation; please answer the latest one we sent you.",
                    m.title
                ),
            );
        }
        let said = if link.accept { "accepted" } else { "declined" };
        let Some(a) = m.attendees.iter().find(|a| a.contact == link.contact_id) else {
            return (
                StatusCode::NOT_FOUND,
                "You are not invited to this meeting.".into(),
            );
        };
        let want = if link.accept {
            Answer::Accepted
        } else {
            Answer::Declined
        };
        if a.answer == want {
            return (
                StatusCode::OK,
                format!("You have {said} {}. Thank you.", m.title),
            );
        }
        let ev = CaseEvent {
            event_id: format!(
                "answer-{}-{}-{}-{}-{}",
                m.id,
                m.sequence,
                link.contact_id,
                a.answers + 1,
                if link.accept { "accept" } else { "decline" }
            ),
            case_id: link.case_id.clone(),
            kind: CaseEventKind::MeetingAnswered as i32,
            actor: link.contact_id.clone(),
            reason: how.into(),
            meeting_answer: Some(MeetingAnswer {
                meeting_id: m.id.clone(),
                contact_id: link.contact_id.clone(),
                accepted: link.accept,
            }),
            ..Default::default()
        };
        match self.submit_case(&ev).await {
            Ok(Ok(_)) => (
                StatusCode::OK,
                format!("You have {said} {}. Thank you.", m.title),
            ),
            Ok(Err(why)) => (
                StatusCode::CONFLICT,
                format!("Your answer was not recorded: {why}"),
            ),
            Err(e) => {
                error!(error = %e, "meeting answer not recorded");
                unavailable()
            }
        }
    }
}

fn unavailable() -> (StatusCode, String) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "Your answer could not be recorded just now. Please press the button again in a moment."
            .into(),
    )
}

pub(crate) fn routes(esc: Escalator) -> Router {
    Router::new()
        .route(PATH, get(answer_page).post(answer_post))
        .with_state(esc)
}

fn read(e: &Escalator, uri: &Uri) -> Option<Link> {
    Link::read(e.survey_secret.as_bytes(), uri.query().unwrap_or_default())
}

fn refused() -> Response {
    herald_runtime::public::link_page(
        StatusCode::FORBIDDEN,
        "Link not valid",
        "This meeting link is not valid.",
        None,
    )
}

async fn answer_page(State(e): State<Escalator>, uri: Uri) -> Response {
    let Some(link) = read(&e, &uri) else {
        return refused();
    };
    let (title, button) = if link.accept {
        ("Accept the meeting", "Accept")
    } else {
        ("Decline the meeting", "Decline")
    };
    herald_runtime::public::link_page(
        StatusCode::OK,
        title,
        "Press the button to send your answer to the organiser.",
        Some(button),
    )
}

async fn answer_post(State(e): State<Escalator>, uri: Uri) -> Response {
    let Some(link) = read(&e, &uri) else {
        return refused();
    };
    let (code, text) = e
        .answer(&link, "answered by the link in the invitation")
        .await;
    let title = if code == StatusCode::OK {
        "Thank you"
    } else {
        "Not answered"
    };
    herald_runtime::public::link_page(code, title, &text, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_answers_only_what_it_names() {
        let link = Link {
            case_id: "C-1".into(),
            meeting_id: "m-1".into(),
            sequence: 2,
            contact_id: "client-0".into(),
            accept: true,
        };
        let url = link.url(b"secret", "https://herald.example.org/");
        let query = url.split_once('?').map(|q| q.1).unwrap_or_default();
        assert_eq!(Link::read(b"secret", query), Some(link));
        assert_eq!(Link::read(b"other", query), None);
        for (from, to) in [
            ("d=accept", "d=decline"),
            ("c=client-0", "c=client-1"),
            ("seq=2", "seq=3"),
        ] {
            assert_eq!(
                Link::read(b"secret", &query.replace(from, to)),
                None,
                "{from}"
            );
        }
    }

    #[test]
    fn the_time_is_said_in_the_attendees_zone() {
        let m = Meeting {
            id: "m".into(),
            title: "t".into(),
            organizer: "o".into(),
            attendees: vec![],
            start_ms: 1_796_893_200_000,
            end_ms: 1_796_893_200_000 + 5_400_000,
            location: String::new(),
            video_link: String::new(),
            sequence: 0,
            cancelled: false,
            reminders_passed: 0,
            changed_ms: 0,
        };
        assert_eq!(
            when(&m, "Europe/Paris"),
            "2026-12-10 10:00-11:30 (Europe/Paris)"
        );
        assert_eq!(when(&m, ""), "2026-12-10 09:00-10:30 (UTC)");
    }
}
