//! Case lifecycle events: opened, acknowledged, responded, updated,
//! resolved, reopened, escalate-now, feedback received, waiting on the
//! client and the client's reply.
//!
//! They arrive like notification requests (NATS request/reply on
//! `herald.v1.intake.case`, gRPC `herald.v1.Intake/SubmitCaseEvent`) and get
//! the same guarantees: every field checked and a refusal naming it; a
//! retried event (same case and event id) accepted once; "accepted" only
//! once the event is stored in the case stream (`HERALD_CASES`, subject per
//! case) and documented in the case's trail. The sla and escalation
//! services read the stream from there.
//!
//! Intake also keeps whether each case is open or resolved, to refuse an
//! event that makes no sense (acknowledging a case never opened, reopening
//! one that is open).
//!
//! An acknowledgement, response or resolution stops the case's escalations
//! here, before the caller hears "accepted": the escalation cancel family
//! is stopped at the event's stream position and intake waits for any send
//! already at a provider to finish. From the moment the caller has the
//! answer, no escalation notification of the case begun before the event
//! reaches anyone, whatever the escalation service is doing.

use std::time::{Duration, SystemTime};

use herald_durable::stop::Stop;
use herald_proto::cancel_keys::{escalation_family, follow_up_family};
use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedCaseEvent, AuditStep, CaseAccepted, CaseChannel, CaseDetails, CaseEvent,
        CaseEventKind, CaseReply, ErrorCode, Lane, Priority, Rejected, case_reply,
    },
};
use herald_runtime::{audit::Entry, metrics::ReasonLabel};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use redis::{AsyncCommands, aio::ConnectionManager};
use tracing::{error, info, warn};

use crate::{
    Intake,
    dedupe::{Claim, fingerprint},
    unavailable,
    validate::reject,
};

const MAX_CASE_ID: usize = 100;
const MAX_EVENT_ID: usize = 255;
const MAX_TEXT: usize = 200;
const MAX_REASON: usize = 500;
const MAX_REFERENCE: usize = 64;
const MAX_COMMENT: usize = 4000;
/// How far in the future `occurred_at` may be (clocks of other systems
/// drift a little).
const FUTURE_SLACK: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// What intake keeps for cases: whether each is open, and counters.
#[derive(Clone)]
pub(crate) struct Cases {
    redis: ConnectionManager,
    prefix: String,
    /// How long an acknowledgement waits for escalation sends already at a
    /// provider before answering.
    stop_wait: Duration,
    accepted: Family<KindLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
}

/// Where a case stands, as far as events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unknown,
    Open,
    Resolved,
}

impl Cases {
    pub(crate) fn new(
        redis: ConnectionManager,
        prefix: &str,
        stop_wait: Duration,
        registry: &mut Registry,
    ) -> Cases {
        let c = Cases {
            redis,
            prefix: herald_proto::keyspace::INTAKE.prefix(prefix),
            stop_wait,
            accepted: Family::default(),
            rejected: Family::default(),
        };
        registry.register(
            "intake_case_events",
            "Case events accepted, by kind",
            c.accepted.clone(),
        );
        registry.register(
            "intake_case_events_rejected",
            "Case events refused, by reason",
            c.rejected.clone(),
        );
        c
    }

    pub(crate) fn stop_wait(&self) -> Duration {
        self.stop_wait
    }

    fn status_key(&self, case_id: &str) -> String {
        format!("{}case:{case_id}", self.prefix)
    }

    async fn status(&self, case_id: &str) -> redis::RedisResult<Status> {
        let mut r = self.redis.clone();
        let v: Option<String> = r.get(self.status_key(case_id)).await?;
        Ok(match v.as_deref() {
            None => Status::Unknown,
            Some("resolved") => Status::Resolved,
            Some(_) => Status::Open,
        })
    }

    async fn set_status(&self, case_id: &str, status: Status) -> redis::RedisResult<()> {
        let value = match status {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Unknown => return Ok(()),
        };
        let mut r = self.redis.clone();
        r.set(self.status_key(case_id), value).await
    }
}

impl Intake {
    /// Handles one case event from NATS.
    pub(crate) async fn handle_case_nats(&self, msg: async_nats::Message) -> CaseReply {
        let span = herald_runtime::bus::process_span("intake case", &msg);
        if msg.payload.len() > self.max_payload {
            self.case_refused(reject(
                ErrorCode::PayloadTooLarge,
                "",
                format!(
                    "event is {} bytes; the limit is {}",
                    msg.payload.len(),
                    self.max_payload
                ),
            ))
        } else {
            match CaseEvent::decode(msg.payload.clone()) {
                Ok(ev) => tracing::Instrument::instrument(self.submit_case(ev), span.clone()).await,
                Err(e) => self.case_refused(reject(
                    ErrorCode::Undecodable,
                    "",
                    format!("not a herald.v1.CaseEvent: {e}"),
                )),
            }
        }
    }

    fn case_refused(&self, r: Rejected) -> CaseReply {
        crate::note_refusal(&self.cases.rejected, Lane::Normal, &r, "case event");
        CaseReply {
            result: Some(case_reply::Result::Rejected(r)),
        }
    }

    /// Checks, deduplicates, stores and documents one case event.
    pub(crate) async fn submit_case(&self, ev: CaseEvent) -> CaseReply {
        let now = SystemTime::now();
        let mut ev = match check(ev, now) {
            Ok(ev) => ev,
            Err(r) => return self.case_refused(r),
        };
        let span = tracing::Span::current();
        span.record("case_id", ev.case_id.as_str());
        let kind = ev.kind();

        // People named must be in the directory: the client is told of
        // escalations and the responsible staff member is the first level.
        if let Some(d) = &ev.details {
            let mut named = Vec::new();
            if !d.client_contact_id.is_empty() {
                named.push(("details.client_contact_id", d.client_contact_id.clone()));
            }
            if !d.responsible_staff.is_empty() {
                named.push(("details.responsible_staff", d.responsible_staff.clone()));
            }
            let ids: Vec<String> = named.iter().map(|(_, id)| id.clone()).collect();
            match self.directory.get_many(&ids).await {
                Ok(found) => {
                    if let Some(((field, id), _)) =
                        named.iter().zip(&found).find(|(_, c)| c.is_none())
                    {
                        return self.case_refused(reject(
                            ErrorCode::UnknownContact,
                            *field,
                            format!("no contact with id {id:?} in the directory"),
                        ));
                    }
                }
                Err(e) => {
                    error!(error = %e, "contact lookup failed");
                    return self.case_refused(unavailable());
                }
            }
        }

        let scope = format!("case\u{0}{}\u{0}{}", ev.case_id, ev.event_id);
        let fp = fingerprint(&ev);
        let repeat = match self.dedupe.claim_key(&scope, &fp, "-").await {
            Ok(Claim::New) => false,
            Ok(Claim::Pending(_)) => true,
            Ok(Claim::Done(seq)) => {
                span.record("outcome", "duplicate");
                info!("duplicate case event answered from the first");
                return accepted(&ev, seq.parse().unwrap_or(0), true);
            }
            Ok(Claim::Conflict) => {
                return self.case_refused(reject(
                    ErrorCode::IdempotencyConflict,
                    "event_id",
                    "was already used for a different event of this case; use a new id for a new event",
                ));
            }
            Err(e) => {
                error!(error = %e, "idempotency check failed");
                return self.case_refused(unavailable());
            }
        };

        // A repeat of an event whose first attempt did not finish is
        // stored again under the same message id (JetStream keeps one);
        // the state check would wrongly refuse it (the case already moved).
        if !repeat {
            let status = match self.cases.status(&ev.case_id).await {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "case state unreadable");
                    return self.case_refused(unavailable());
                }
            };
            if let Err(r) = allowed(kind, status, &ev.case_id) {
                // The claim is released so that the same event can be sent
                // again once it makes sense (the case opened meanwhile).
                let _ = self.dedupe.release_key(&scope).await;
                return self.case_refused(r);
            }
        }

        if ev.occurred_at.is_none() {
            // Fixed once, so that a retry stores the same instant: the
            // fingerprint was taken before.
            ev.occurred_at = Some(herald_proto::timestamp(now));
        }
        let record = AcceptedCaseEvent {
            event: Some(ev.clone()),
            accepted_at: Some(herald_proto::timestamp(now)),
        };
        let msg_id = format!("case:{}:{}", ev.case_id, ev.event_id);
        let stored = match self
            .bus
            .publish(subjects::case_event(&ev.case_id), &record, Some(&msg_id))
            .await
        {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let seq = match stored {
            Ok(ack) => ack.sequence,
            Err(e) => {
                error!(error = %e, "case event not stored");
                return self.case_refused(unavailable());
            }
        };
        span.record("outcome", if repeat { "duplicate" } else { "accepted" });

        let audit = self
            .auditor
            .record(case_audit(&ev, seq))
            .await
            .map_err(|e| e.to_string());
        let audit = match audit {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = audit {
            error!(error = %e, "case event stored but its audit record was not");
        }

        let next = match kind {
            CaseEventKind::Opened | CaseEventKind::Reopened => Status::Open,
            CaseEventKind::Resolved => Status::Resolved,
            _ => Status::Unknown,
        };
        if let Err(e) = self.cases.set_status(&ev.case_id, next).await {
            // The event is stored: consumers act on it. Only the next
            // event's state check may be wrong, so it is not refused.
            warn!(error = %e, "case state not updated");
        }

        if let Err(e) = self.stop_pending(&ev, kind, seq).await {
            error!(error = %e, "could not stop the case's pending escalations");
            return self.case_refused(unavailable());
        }

        if let Err(e) = self
            .dedupe
            .complete_key(&scope, &fp, &seq.to_string())
            .await
        {
            warn!(error = %e, "could not mark the case event done");
        }
        self.cases
            .accepted
            .get_or_create(&KindLabel {
                kind: kind.name().into(),
            })
            .inc();
        accepted(&ev, seq, repeat)
    }

    /// An acknowledgement, response or resolution stops every escalation
    /// of the case begun before it (and waits for a send already at a
    /// provider); reopening or feedback stops what is left of the
    /// follow-up.
    async fn stop_pending(
        &self,
        ev: &CaseEvent,
        kind: CaseEventKind,
        seq: u64,
    ) -> anyhow::Result<()> {
        let who = if ev.actor.is_empty() {
            String::new()
        } else {
            format!(" by {}", ev.actor)
        };
        match kind {
            CaseEventKind::Acknowledged | CaseEventKind::Responded | CaseEventKind::Resolved => {
                let stopped = Stop::family(
                    escalation_family(&ev.case_id),
                    seq,
                    format!("{}{who}", kind.name()),
                )
                .and_wait(self.cases.stop_wait)
                .send(&self.bus)
                .await?;
                if !stopped.idle {
                    warn!("an escalation send was still at a provider when the wait ran out");
                }
            }
            CaseEventKind::Reopened | CaseEventKind::FeedbackReceived => {
                Stop::family(
                    follow_up_family(&ev.case_id),
                    seq,
                    format!("{}{who}", kind.name()),
                )
                .send(&self.bus)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn accepted(ev: &CaseEvent, sequence: u64, duplicate: bool) -> CaseReply {
    CaseReply {
        result: Some(case_reply::Result::Accepted(CaseAccepted {
            case_id: ev.case_id.clone(),
            event_id: ev.event_id.clone(),
            sequence,
            duplicate,
        })),
    }
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
                "is required (opened, acknowledged, responded, updated, resolved, reopened, escalate_now, feedback_received, waiting_on_client, client_replied)",
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

/// Whether an event fits where the case stands.
fn allowed(kind: CaseEventKind, status: Status, case_id: &str) -> Result<(), Rejected> {
    use CaseEventKind as K;
    let problem = match (kind, status) {
        (K::Opened, Status::Unknown) => None,
        (K::Opened, _) => Some(format!(
            "case {case_id} is already open or was resolved; reopen it instead"
        )),
        (_, Status::Unknown) => {
            return Err(reject(
                ErrorCode::NotFound,
                "case_id",
                format!("case {case_id} was never opened; send an opened event first"),
            ));
        }
        (K::Reopened, Status::Open) => Some(format!(
            "case {case_id} is open; only a resolved case can be reopened"
        )),
        (K::Reopened, _) | (K::FeedbackReceived, _) => None,
        (_, Status::Resolved) => Some(format!(
            "case {case_id} is resolved; reopen it before sending {}",
            kind.name()
        )),
        _ => None,
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(reject(ErrorCode::InvalidState, "kind", p)),
    }
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::dedupe::hex(&Sha256::digest(s.as_bytes())[..10])
}

/// The trail's record of an event: what happened and who did it, with
/// identifiers only (never the feedback comment).
fn case_audit(ev: &CaseEvent, seq: u64) -> Entry {
    let kind = ev.kind();
    let mut summary = kind.name().replace('_', " ");
    let mut entry = Entry {
        case_id: ev.case_id.clone(),
        actor: (!ev.actor.is_empty()).then(|| ev.actor.clone()),
        record_id: Some(format!("case-{}-{}", ev.case_id, short_hash(&ev.event_id))),
        ..Entry::new(AuditStep::CaseEvent, String::new())
    };
    if let Some(d) = &ev.details {
        let mut parts = Vec::new();
        if d.channel != 0 {
            parts.push(format!(
                "channel {}",
                CaseChannel::try_from(d.channel).unwrap_or_default().name()
            ));
        }
        if d.priority != 0 {
            parts.push(format!(
                "priority {}",
                Priority::try_from(d.priority).unwrap_or_default().name()
            ));
        }
        if !d.team.is_empty() {
            parts.push(format!("team {}", d.team));
        }
        if !d.responsible_staff.is_empty() {
            parts.push(format!("responsible {}", d.responsible_staff));
            entry.responsible_staff = d.responsible_staff.clone();
        }
        if !d.reference.is_empty() {
            parts.push(format!("reference {}", d.reference));
        }
        if !parts.is_empty() {
            summary = format!("{summary}: {}", parts.join(", "));
        }
        entry.contact_id = d.client_contact_id.clone();
    }
    if let Some(f) = &ev.feedback {
        summary = format!("{summary}: rating {}/5", f.rating);
    }
    entry.summary = summary;
    let mut entry = entry
        .attr("event_id", &ev.event_id)
        .attr("kind", kind.name())
        .attr("sequence", seq);
    if !ev.reason.is_empty() {
        entry = entry.attr("reason", &ev.reason);
    }
    if let Some(t) = &ev.occurred_at {
        let at = chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(Some(t)));
        entry = entry.attr("occurred_at", at.to_rfc3339());
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
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
                    comment: String::new(),
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

    #[test]
    fn events_must_fit_the_case_state() {
        use CaseEventKind as K;
        assert!(allowed(K::Opened, Status::Unknown, "C").is_ok());
        assert_eq!(
            allowed(K::Acknowledged, Status::Unknown, "C")
                .unwrap_err()
                .code,
            ErrorCode::NotFound as i32
        );
        assert_eq!(
            allowed(K::Opened, Status::Open, "C").unwrap_err().code,
            ErrorCode::InvalidState as i32
        );
        assert!(allowed(K::Reopened, Status::Open, "C").is_err());
        assert!(allowed(K::Reopened, Status::Resolved, "C").is_ok());
        assert!(allowed(K::Acknowledged, Status::Resolved, "C").is_err());
        assert!(allowed(K::FeedbackReceived, Status::Resolved, "C").is_ok());
    }

    #[test]
    fn the_trail_never_holds_the_feedback_comment() {
        let ev = CaseEvent {
            event_id: "f1".into(),
            case_id: "CASE-1".into(),
            kind: CaseEventKind::FeedbackReceived as i32,
            feedback: Some(Feedback {
                rating: 4,
                comment: "call me on +447700900123".into(),
            }),
            ..Default::default()
        };
        let e = case_audit(&ev, 7);
        assert_eq!(e.summary, "feedback received: rating 4/5");
        let all = format!("{e:?}");
        assert!(!all.contains("+4477"), "{all}");
    }
}
