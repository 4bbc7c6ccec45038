//! A case event checked field by field: pure, so that every refusal and the
//! field it names is tested here without a directory, a bus or Redis.

use std::time::{Duration, SystemTime};

use herald_proto::{
    Message, subjects,
    v1::{
        CaseChannel, CaseDetails, CaseEvent, CaseEventKind, Channel, ErrorCode, FeedbackStatus,
        Priority, Rejected,
    },
};

use crate::validate::reject;

const MAX_CASE_ID: usize = 100;
const MAX_EVENT_ID: usize = 255;
const MAX_TEXT: usize = 200;
const MAX_REASON: usize = 500;
const MAX_REFERENCE: usize = 64;
const MAX_COMMENT: usize = 4000;
const MAX_CATEGORY: usize = 32;
/// How far in the future `occurred_at` may be (clocks of other systems
/// drift a little).
const FUTURE_SLACK: Duration = Duration::from_secs(5 * 60);

/// Reads an event as it arrives on `herald.v1.intake.case`. Both refusals
/// are about the payload as a whole, so they name no field.
pub fn decode(payload: &[u8], max_payload: usize) -> Result<CaseEvent, Rejected> {
    if payload.len() > max_payload {
        return Err(reject(
            ErrorCode::PayloadTooLarge,
            "",
            format!(
                "event is {} bytes; the limit is {max_payload}",
                payload.len()
            ),
        ));
    }
    CaseEvent::decode(payload).map_err(|e| {
        reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.CaseEvent: {e}"),
        )
    })
}

/// Checks every field of an event; fills in the default priority.
pub fn check(mut ev: CaseEvent, now: SystemTime) -> Result<CaseEvent, Rejected> {
    use ErrorCode as E;
    let event_id = ev.event_id.trim();
    if event_id.is_empty() {
        return Err(reject(
            E::InvalidArgument,
            "event_id",
            "is required: choose an id that stays the same when you retry this event",
        ));
    }
    if event_id.len() > MAX_EVENT_ID || event_id.chars().any(char::is_control) {
        return Err(reject(
            E::InvalidArgument,
            "event_id",
            format!("must be at most {MAX_EVENT_ID} printable characters"),
        ));
    }
    if ev.case_id.is_empty() {
        return Err(reject(E::InvalidArgument, "case_id", "is required"));
    }
    if ev.case_id.len() > MAX_CASE_ID || !subjects::is_subject_token(&ev.case_id) {
        return Err(reject(
            E::InvalidArgument,
            "case_id",
            format!("must be 1-{MAX_CASE_ID} letters, digits or - _ : @ + = (no dots or spaces)"),
        ));
    }
    let kind = match CaseEventKind::try_from(ev.kind) {
        Ok(CaseEventKind::Unspecified) => {
            return Err(reject(
                E::InvalidArgument,
                "kind",
                "is required (opened, acknowledged, responded, updated, resolved, reopened, escalate_now, feedback_received, waiting_on_client, client_replied, interaction_logged, action_done, feedback_updated, meeting_scheduled, meeting_rescheduled, meeting_cancelled, meeting_answered)",
            ));
        }
        Ok(k) => k,
        Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "kind",
                format!("{} is not a known case event kind", ev.kind),
            ));
        }
    };
    if let Some(t) = &ev.occurred_at {
        if t.seconds < 0 || !(0..1_000_000_000).contains(&t.nanos) {
            return Err(reject(
                E::InvalidArgument,
                "occurred_at",
                "is not a valid timestamp",
            ));
        }
        if herald_proto::system_time(Some(t)) > now + FUTURE_SLACK {
            return Err(reject(
                E::InvalidArgument,
                "occurred_at",
                "is in the future (more than 5 minutes ahead of Herald's clock)",
            ));
        }
    }
    if let Some(reply) = &ev.reply {
        if kind != CaseEventKind::ClientReplied {
            return Err(reject(
                E::InvalidArgument,
                "reply",
                "is only for client_replied events",
            ));
        }
        if !matches!(
            Channel::try_from(reply.channel),
            Ok(Channel::Email | Channel::Sms | Channel::Voice)
        ) {
            return Err(reject(
                E::InvalidArgument,
                "reply.channel",
                "must be email, sms or voice",
            ));
        }
        if reply.contact_id.is_empty()
            || reply.contact_id.len() > 128
            || reply
                .contact_id
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(reject(
                E::InvalidArgument,
                "reply.contact_id",
                "must be the client's contact id (1-128 characters, no spaces)",
            ));
        }
        if reply.message_id.len() > 1000 {
            return Err(reject(
                E::InvalidArgument,
                "reply.message_id",
                "is longer than 1000 characters",
            ));
        }
    }
    if ev.actor.chars().count() > MAX_TEXT {
        return Err(reject(
            E::InvalidArgument,
            "actor",
            format!("is longer than {MAX_TEXT} characters"),
        ));
    }
    if ev.reason.chars().count() > MAX_REASON {
        return Err(reject(
            E::InvalidArgument,
            "reason",
            format!("is longer than {MAX_REASON} characters"),
        ));
    }

    match (kind, ev.details.as_mut()) {
        (CaseEventKind::Opened, None) => {
            return Err(reject(
                E::InvalidArgument,
                "details",
                "is required to open a case (channel, client_contact_id, ...)",
            ));
        }
        (CaseEventKind::Opened, Some(d)) => check_opened(d)?,
        (CaseEventKind::Updated, None) => {
            return Err(reject(
                E::InvalidArgument,
                "details",
                "is required: give the fields that change",
            ));
        }
        (CaseEventKind::Updated, Some(d)) => check_update(d)?,
        (_, Some(_)) => {
            return Err(reject(
                E::InvalidArgument,
                "details",
                "only opened and updated events carry details",
            ));
        }
        (_, None) => {}
    }
    match (kind, &ev.feedback) {
        (CaseEventKind::FeedbackReceived, None) => {
            return Err(reject(
                E::InvalidArgument,
                "feedback",
                "is required: the rating (1-5) and any comment",
            ));
        }
        (CaseEventKind::FeedbackReceived, Some(f)) => {
            if !(1..=5).contains(&f.rating) {
                return Err(reject(
                    E::InvalidArgument,
                    "feedback.rating",
                    format!("{} is not between 1 and 5", f.rating),
                ));
            }
            if f.comment.chars().count() > MAX_COMMENT {
                return Err(reject(
                    E::InvalidArgument,
                    "feedback.comment",
                    format!("is longer than {MAX_COMMENT} characters"),
                ));
            }
            if !f.category.is_empty()
                && (f.category.len() > MAX_CATEGORY
                    || !f
                        .category
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            {
                return Err(reject(
                    E::InvalidArgument,
                    "feedback.category",
                    format!(
                        "must be at most {MAX_CATEGORY} lower-case letters, digits or _ (e.g. billing)"
                    ),
                ));
            }
        }
        (_, Some(_)) => {
            return Err(reject(
                E::InvalidArgument,
                "feedback",
                "only feedback_received events carry feedback",
            ));
        }
        (_, None) => {}
    }
    match (kind, &ev.feedback_update) {
        (CaseEventKind::FeedbackUpdated, None) => {
            return Err(reject(
                E::InvalidArgument,
                "feedback_update",
                "is required: the new status (in_progress or resolved) and a note for the client",
            ));
        }
        (CaseEventKind::FeedbackUpdated, Some(u)) => {
            if !matches!(
                FeedbackStatus::try_from(u.status),
                Ok(FeedbackStatus::InProgress | FeedbackStatus::Resolved)
            ) {
                return Err(reject(
                    E::InvalidArgument,
                    "feedback_update.status",
                    "must be in_progress or resolved",
                ));
            }
            if u.note.chars().count() > MAX_REASON || u.note.chars().any(char::is_control) {
                return Err(reject(
                    E::InvalidArgument,
                    "feedback_update.note",
                    format!("must be at most {MAX_REASON} printable characters"),
                ));
            }
        }
        (_, Some(_)) => {
            return Err(reject(
                E::InvalidArgument,
                "feedback_update",
                "only feedback_updated events carry a feedback update",
            ));
        }
        (_, None) => {}
    }
    super::interaction::check(kind, &mut ev)?;
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    super::meeting::check(kind, &mut ev, now_s)?;
    Ok(ev)
}

fn check_opened(d: &mut CaseDetails) -> Result<(), Rejected> {
    use ErrorCode as E;
    match CaseChannel::try_from(d.channel) {
        Ok(CaseChannel::Unspecified) => {
            return Err(reject(
                E::InvalidArgument,
                "details.channel",
                "is required (email, live_chat, phone, support_ticket or portal)",
            ));
        }
        Ok(_) => {}
        Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "details.channel",
                format!("{} is not a known case channel", d.channel),
            ));
        }
    }
    if d.client_contact_id.is_empty() {
        return Err(reject(
            E::InvalidArgument,
            "details.client_contact_id",
            "is required: the client, by contact id",
        ));
    }
    check_detail_fields(d)?;
    if d.priority == Priority::Unspecified as i32 {
        d.priority = Priority::Normal as i32;
    }
    Ok(())
}

fn check_update(d: &CaseDetails) -> Result<(), Rejected> {
    use ErrorCode as E;
    if d.channel != CaseChannel::Unspecified as i32 {
        return Err(reject(
            E::InvalidArgument,
            "details.channel",
            "cannot change once the case is open",
        ));
    }
    if !d.client_contact_id.is_empty() {
        return Err(reject(
            E::InvalidArgument,
            "details.client_contact_id",
            "cannot change once the case is open",
        ));
    }
    if d.priority == Priority::Unspecified as i32
        && d.responsible_staff.is_empty()
        && d.team.is_empty()
        && d.reference.is_empty()
    {
        return Err(reject(
            E::InvalidArgument,
            "details",
            "changes nothing: set priority, responsible_staff, team or reference",
        ));
    }
    check_detail_fields(d)
}

fn check_detail_fields(d: &CaseDetails) -> Result<(), Rejected> {
    use ErrorCode as E;
    if Priority::try_from(d.priority).is_err() {
        return Err(reject(
            E::InvalidArgument,
            "details.priority",
            format!("{} is not a known priority", d.priority),
        ));
    }
    for (field, value) in [
        ("details.client_contact_id", &d.client_contact_id),
        ("details.responsible_staff", &d.responsible_staff),
        ("details.team", &d.team),
    ] {
        if !value.is_empty() && !subjects::is_subject_token(value) {
            return Err(reject(
                E::InvalidArgument,
                field,
                "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
            ));
        }
    }
    if d.reference.chars().count() > MAX_REFERENCE || d.reference.chars().any(char::is_control) {
        return Err(reject(
            E::InvalidArgument,
            "details.reference",
            format!("must be at most {MAX_REFERENCE} printable characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::ClientReply;
    use herald_proto::v1::Feedback;

    fn opened() -> CaseEvent {
        CaseEvent {
            event_id: "e1".into(),
            case_id: "CASE-1".into(),
            kind: CaseEventKind::Opened as i32,
            details: Some(CaseDetails {
                channel: CaseChannel::Email as i32,
                client_contact_id: "alice".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field_of(r: Result<CaseEvent, Rejected>) -> String {
        r.expect_err("refused").field
    }

    #[test]
    fn every_bad_field_is_named() {
        let now = SystemTime::now();
        let with = |f: &dyn Fn(&mut CaseEvent)| {
            let mut e = opened();
            f(&mut e);
            check(e, now)
        };
        assert_eq!(field_of(with(&|e| e.event_id.clear())), "event_id");
        assert_eq!(field_of(with(&|e| e.case_id = "a.b".into())), "case_id");
        assert_eq!(field_of(with(&|e| e.case_id = "x".repeat(101))), "case_id");
        assert_eq!(field_of(with(&|e| e.kind = 0)), "kind");
        assert_eq!(field_of(with(&|e| e.kind = 99)), "kind");
        assert_eq!(
            field_of(with(
                &|e| e.occurred_at = Some(herald_proto::timestamp(now + Duration::from_secs(3600)))
            )),
            "occurred_at"
        );
        assert_eq!(field_of(with(&|e| e.details = None)), "details");
        let reply = |channel: Channel, contact: &str| {
            Some(ClientReply {
                channel: channel as i32,
                contact_id: contact.into(),
                message_id: "sms:SM1".into(),
            })
        };
        assert_eq!(
            field_of(with(&|e| e.reply = reply(Channel::Sms, "client-1"))),
            "reply",
            "a reply belongs to client_replied only"
        );
        let replied = |f: &dyn Fn(&mut CaseEvent)| {
            let mut e = opened();
            e.kind = CaseEventKind::ClientReplied as i32;
            e.details = None;
            f(&mut e);
            check(e, now)
        };
        assert!(replied(&|e| e.reply = reply(Channel::Sms, "client-1")).is_ok());
        assert_eq!(
            field_of(replied(
                &|e| e.reply = reply(Channel::Unspecified, "client-1")
            )),
            "reply.channel"
        );
        assert_eq!(
            field_of(replied(&|e| e.reply = reply(Channel::Email, "a b"))),
            "reply.contact_id"
        );
        assert_eq!(
            field_of(with(&|e| e.details.as_mut().unwrap().channel = 0)),
            "details.channel"
        );
        assert_eq!(
            field_of(with(&|e| e
                .details
                .as_mut()
                .unwrap()
                .client_contact_id
                .clear())),
            "details.client_contact_id"
        );
        assert_eq!(
            field_of(with(&|e| e.details.as_mut().unwrap().team = "a b".into())),
            "details.team"
        );
        assert_eq!(
            field_of(with(&|e| e.details.as_mut().unwrap().priority = 42)),
            "details.priority"
        );
        assert_eq!(
            field_of(with(&|e| e.kind = CaseEventKind::Acknowledged as i32)),
            "details",
            "an acknowledgement carries no details"
        );
        assert_eq!(
            field_of(with(&|e| {
                e.kind = CaseEventKind::FeedbackReceived as i32;
                e.details = None;
                e.feedback = Some(Feedback {
                    rating: 6,
                    ..Default::default()
                });
            })),
            "feedback.rating"
        );
        assert_eq!(
            field_of(with(&|e| {
                e.kind = CaseEventKind::Updated as i32;
                e.details = Some(CaseDetails::default());
            })),
            "details"
        );
        let ok = check(opened(), now).unwrap();
        assert_eq!(ok.details.unwrap().priority, Priority::Normal as i32);
    }
}
