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

mod calendar;
pub(crate) mod check;
pub(crate) mod interaction;
mod interpreters;
pub(crate) mod meeting;
mod status;

use std::time::{Duration, SystemTime};

use herald_durable::stop::Stop;
use herald_proto::cancel_keys::{escalation_family, follow_up_family};
use herald_proto::{
    subjects,
    v1::{
        AcceptedCaseEvent, AuditStep, CaseAccepted, CaseChannel, CaseEvent, CaseEventKind,
        CaseReply, Channel, ErrorCode, Lane, Priority, Rejected, case_reply,
    },
};
use herald_runtime::{audit::Entry, metrics::ReasonLabel};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use redis::aio::ConnectionManager;
use tracing::{error, info, warn};

use crate::{
    Intake,
    dedupe::{Claim, fingerprint},
    unavailable,
    validate::reject,
};

use check::check;
pub(crate) use status::Status;
use status::allowed;

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
    /// How long a case's status outlives its last event
    /// (`retention.case_state`).
    keep: Duration,
    accepted: Family<KindLabel, Counter>,
    pub(crate) rejected: Family<ReasonLabel, Counter>,
}

impl Cases {
    pub(crate) fn new(
        redis: ConnectionManager,
        prefix: &str,
        stop_wait: Duration,
        keep: Duration,
        registry: &mut Registry,
    ) -> Cases {
        let c = Cases {
            redis,
            prefix: herald_proto::keyspace::INTAKE.prefix(prefix),
            stop_wait,
            keep,
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
}

impl Intake {
    /// Handles one case event from NATS.
    pub(crate) async fn handle_case_nats(&self, msg: async_nats::Message) -> CaseReply {
        let span = herald_runtime::bus::process_span("intake case", &msg);
        let Some(caller) = crate::caller(&msg) else {
            return self.case_refused(crate::unnamed_caller());
        };
        match check::decode(&msg.payload, self.max_payload) {
            Ok(ev) => {
                tracing::Instrument::instrument(self.submit_case(ev, caller), span.clone()).await
            }
            Err(r) => self.case_refused(r),
        }
    }

    fn case_refused(&self, r: Rejected) -> CaseReply {
        crate::note_refusal(&self.cases.rejected, Lane::Normal, &r, "case event");
        CaseReply {
            result: Some(case_reply::Result::Rejected(r)),
        }
    }

    /// Checks, deduplicates, stores and documents one case event from
    /// `caller` (the identity NATS or the gRPC key vouches for).
    pub(crate) async fn submit_case(&self, ev: CaseEvent, caller: &str) -> CaseReply {
        let now = SystemTime::now();
        let mut ev = match check(ev, now) {
            Ok(ev) => ev,
            Err(r) => return self.case_refused(r),
        };
        let span = tracing::Span::current();
        span.record("case_id", ev.case_id.as_str());
        let kind = ev.kind();

        // People named must be in the directory: the client is told of
        // escalations, the responsible staff member is the first level and
        // an action's owner is reminded of it.
        let mut named: Vec<(String, String)> = interaction::named(&ev);
        named.extend(meeting::named(&ev));
        if let Some(d) = &ev.details {
            if !d.client_contact_id.is_empty() {
                named.push((
                    "details.client_contact_id".into(),
                    d.client_contact_id.clone(),
                ));
            }
            if !d.responsible_staff.is_empty() {
                named.push((
                    "details.responsible_staff".into(),
                    d.responsible_staff.clone(),
                ));
            }
        }
        let mut people: Vec<herald_directory::contacts::Contact> = Vec::new();
        if !named.is_empty() {
            let ids: Vec<String> = named.iter().map(|(_, id)| id.clone()).collect();
            match self.directory.get_many(&ids).await {
                Ok(found) => {
                    if let Some(((field, id), _)) =
                        named.iter().zip(&found).find(|(_, c)| c.is_none())
                    {
                        return self.case_refused(reject(
                            ErrorCode::UnknownContact,
                            field.as_str(),
                            format!("no contact with id {id:?} in the directory"),
                        ));
                    }
                    people = found.into_iter().flatten().collect();
                }
                Err(e) => {
                    error!(error = %e, "contact lookup failed");
                    return self.case_refused(unavailable());
                }
            }
        }
        // A meeting that asks for interpreters: who could come, for each
        // attendee's language other than the organiser's.
        let mut needs = Vec::new();
        if let Some(m) = ev.meeting.as_ref().filter(|m| m.interpreter)
            && kind == CaseEventKind::MeetingScheduled
        {
            let Some(organiser) = people.iter().find(|c| c.id == ev.actor) else {
                return self.case_refused(unavailable());
            };
            let guests: Vec<herald_directory::contacts::Contact> = people
                .iter()
                .filter(|c| m.attendees.contains(&c.id))
                .cloned()
                .collect();
            let pool = match interpreters::pool(&self.directory).await {
                Ok(p) => p,
                Err(e) => {
                    error!(error = %e, "interpreters unreadable");
                    return self.case_refused(unavailable());
                }
            };
            match interpreters::needs(organiser, &guests, &pool) {
                Ok(n) => needs = n,
                Err(r) => return self.case_refused(r),
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
            let now_ms = herald_runtime::clock::millis(now.into());
            match self.cases.fit_meeting(&ev, &needs, now_ms).await {
                Ok(Ok(chosen)) => {
                    if let Some(m) = ev.meeting.as_mut() {
                        m.interpreters = chosen;
                    }
                }
                Ok(Err(r)) => {
                    let _ = self.dedupe.release_key(&scope).await;
                    return self.case_refused(r);
                }
                Err(e) => {
                    error!(error = %e, "meetings unreadable");
                    let _ = self.dedupe.release_key(&scope).await;
                    return self.case_refused(unavailable());
                }
            }
        } else if kind == CaseEventKind::MeetingScheduled
            && let Some(m) = ev.meeting.as_mut()
        {
            // The first attempt booked the meeting and its interpreters;
            // the repeat stores the same.
            match self.cases.booked(&ev.case_id, &m.meeting_id).await {
                Ok(b) => m.interpreters = b.map(|b| b.interpreters).unwrap_or_default(),
                Err(e) => {
                    error!(error = %e, "meetings unreadable");
                    return self.case_refused(unavailable());
                }
            }
        }

        if kind == CaseEventKind::ClientReplied
            && let Some(reply) = &ev.reply
            && let Ok(channel @ (Channel::Email | Channel::Sms | Channel::Voice)) =
                Channel::try_from(reply.channel)
            && !reply.contact_id.is_empty()
            && let Err(e) = self
                .cases
                .set_answer(&ev.case_id, &reply.contact_id, channel)
                .await
        {
            error!(error = %e, "the client's channel not remembered");
            return self.case_refused(unavailable());
        }
        if ev.occurred_at.is_none() {
            // Fixed once, so that a retry stores the same instant: the
            // fingerprint was taken before.
            ev.occurred_at = Some(herald_proto::timestamp(now));
        }
        let record = AcceptedCaseEvent {
            event: Some(ev.clone()),
            accepted_at: Some(herald_proto::timestamp(now)),
            caller: caller.to_string(),
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
            .record(Entry {
                caller: caller.to_string(),
                ..case_audit(&ev, seq)
            })
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

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.as_bytes())[..10])
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
            // What reports name the case by.
            entry
                .attributes
                .insert("reference".into(), d.reference.clone());
        }
        if !parts.is_empty() {
            summary = format!("{summary}: {}", parts.join(", "));
        }
        entry.contact_id = d.client_contact_id.clone();
    }
    if let Some(f) = &ev.feedback {
        summary = format!("{summary}: rating {}/5", f.rating);
        if !f.category.is_empty() {
            summary = format!("{summary}, about {}", f.category);
        }
    }
    if let Some(u) = &ev.feedback_update {
        summary = format!(
            "feedback {}",
            herald_proto::v1::FeedbackStatus::name_of(u.status).replace('_', " ")
        );
        if !u.note.is_empty() {
            entry.attributes.insert("note".into(), u.note.clone());
        }
    }
    let (said, entry) = interaction::document(ev, entry);
    if !said.is_empty() {
        summary = said;
    }
    let (said, mut entry) = meeting::document(ev, entry);
    if !said.is_empty() {
        summary = said;
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

    #[test]
    fn the_trail_never_holds_the_feedback_comment() {
        let ev = CaseEvent {
            event_id: "f1".into(),
            case_id: "CASE-1".into(),
            kind: CaseEventKind::FeedbackReceived as i32,
            feedback: Some(Feedback {
                rating: 4,
                comment: "call me on +447700900123".into(),
                category: "billing".into(),
            }),
            ..Default::default()
        };
        let e = case_audit(&ev, 7);
        assert_eq!(e.summary, "feedback received: rating 4/5, about billing");
        let all = format!("{e:?}");
        assert!(!all.contains("+4477"), "{all}");
    }
}
