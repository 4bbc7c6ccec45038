//! Every NATS subject and JetStream stream name Herald uses, versioned under
//! `herald.v1`. Services import these; nobody spells a subject by hand.
//!
//! Emergency traffic has its own subjects and streams (the `emergency` lane)
//! so that no consumer ever has to read past ordinary traffic to reach it.

mod streams;
mod templates;
mod trail;

pub use streams::*;
pub use templates::*;
pub use trail::*;

use crate::v1::{Channel, Lane};

/// Request/reply: a `NotificationRequest` in, an `IntakeReply` out.
pub const INTAKE_NOTIFY: &str = "herald.v1.intake.notify";
/// Request/reply for emergency traffic, served by intake's own workers.
pub const INTAKE_NOTIFY_EMERGENCY: &str = "herald.v1.emergency.intake.notify";

/// Request/reply: a `CancelRequest` in, a `CancelReply` out.
pub const INTAKE_CANCEL: &str = "herald.v1.intake.cancel";

/// Request/reply: a `CaseEvent` in, a `CaseReply` out.
pub const INTAKE_CASE: &str = "herald.v1.intake.case";

/// Request/reply: a `StopRequest` in, a `StopReply` out. Delivery keeps
/// the cancel keys; intake, escalation and the broadcast service ask it to
/// stop what must not go out.
pub const DELIVERY_STOP: &str = "herald.v1.delivery.stop";
/// The same stops, kept until delivery has applied them (`StopRequest`):
/// a stop asked for while no delivery runs is applied before the next one
/// sends anything.
pub const STREAM_STOPS: &str = "HERALD_STOPS";
pub const DELIVERY_STOPS: &str = "herald.v1.delivery.stops";

/// What people send back (`InboundMessage`), stored by delivery once per
/// message and read by every service a reply may be for: limits retention,
/// so the broadcast and escalation services each read all of it.
pub const STREAM_INBOUND: &str = "HERALD_INBOUND";

/// `herald.v1.inbound.<channel>`: one person's reply on that channel.
pub fn inbound(channel: Channel) -> String {
    format!("herald.v1.inbound.{}", channel.name())
}

/// Every inbound message.
pub fn inbound_all() -> &'static str {
    "herald.v1.inbound.>"
}

/// Request/reply: a `DirectoryRequest` in, a `DirectoryReply` out. Intake
/// keeps the contact directory; the command line imports and reads it
/// here.
pub const INTAKE_DIRECTORY: &str = "herald.v1.intake.directory";
/// Request/reply (`herald.v1.BreachRelease`): the Data Protection Officer
/// releases a data breach's containment.
pub const INTAKE_BREACH: &str = "herald.v1.intake.breach";
/// Request/reply (`herald.v1.ApprovalRequest`): approvers list, read and
/// decide the first contacts an approval rule holds.
pub const INTAKE_APPROVALS: &str = "herald.v1.intake.approvals";
/// Request/reply (`herald.v1.TrailQuery`): operators ask for the trail of
/// a client, a member of staff or a case over a span of time.
pub const INTAKE_TRAIL: &str = "herald.v1.intake.trail";
/// Request/reply (`herald.v1.ReportRequest` in, `herald.v1.ReportReply`
/// out): operators send a client's report or a case's incident report now,
/// and read a client's report schedule (SOP 002 §5).
pub const INTAKE_REPORTS: &str = "herald.v1.intake.reports";
/// Request/reply (`herald.v1.EraseContact` in, `herald.v1.EraseReply`
/// out): the Data Protection Officer erases a person (SOP 003 §6.5).
pub const INTAKE_ERASE: &str = "herald.v1.intake.erase";

/// The services that keep data about people besides intake, each asked
/// by intake to erase its part of a person.
pub const ERASING_SERVICES: [&str; 4] = ["delivery", "broadcast", "sla", "escalation"];

/// Request/reply (`herald.v1.ErasePerson` in, `herald.v1.ErasePartReply`
/// out): intake asks `service` to erase a person from what it keeps.
pub fn erase_part(service: &str) -> String {
    format!("herald.v1.{service}.erase")
}

/// The requests that come from outside Herald's services are addressed
/// under the caller's own name: `<request subject>.<identity>`. The NATS
/// server lets each identity publish only under its own name (see
/// [`crate::access`]), so the last token tells intake who asked, as NATS
/// verified it rather than as the request claims.
pub const FROM_CALLERS: [&str; 15] = [
    INTAKE_NOTIFY,
    INTAKE_NOTIFY_EMERGENCY,
    INTAKE_CANCEL,
    INTAKE_CASE,
    INTAKE_DIRECTORY,
    INTAKE_BREACH,
    INTAKE_APPROVALS,
    INTAKE_TRAIL,
    INTAKE_REPORTS,
    INTAKE_ERASE,
    INTAKE_TEMPLATES,
    INTAKE_TEMPLATE_DECISIONS,
    BROADCAST_START,
    BROADCAST_UPDATE,
    BROADCAST_CANCEL,
];

/// `request` (one of [`FROM_CALLERS`]) as `caller` sends it.
pub fn from_caller(request: &str, caller: &str) -> String {
    format!("{request}.{caller}")
}

/// What intake listens on for `request`: every caller's copy of it.
pub fn from_any_caller(request: &str) -> String {
    format!("{request}.*")
}

/// Which of [`FROM_CALLERS`] a subject is, and who sent it.
pub fn caller_of(subject: &str) -> Option<(&'static str, &str)> {
    FROM_CALLERS.iter().find_map(|base| {
        let caller = subject.strip_prefix(base)?.strip_prefix('.')?;
        is_subject_token(caller).then_some((*base, caller))
    })
}

/// Queue groups, so that several instances of a service share the work.
pub const QUEUE_INTAKE: &str = "herald-intake";
pub const QUEUE_DELIVERY: &str = "herald-delivery";
pub const QUEUE_SLA: &str = "herald-sla";
pub const QUEUE_ESCALATION: &str = "herald-escalation";

/// Request/reply: a `CaseQuery` in, an `SlaQueryReply` out (the clocks of a
/// case, for `herald case show`).
pub const SLA_QUERY: &str = "herald.v1.sla.query";
/// Request/reply: a `CaseQuery` in, an `EscalationQueryReply` out.
pub const ESCALATION_QUERY: &str = "herald.v1.escalation.query";
/// Request/reply: a `FeedbackListRequest` in, a `FeedbackListReply` out
/// (every case's feedback, for `herald feedback list`).
pub const ESCALATION_FEEDBACK: &str = "herald.v1.escalation.feedback";

/// Everything that happens to cases, in one stream so that it has one
/// order: lifecycle events accepted by intake (`AcceptedCaseEvent`,
/// subject `herald.v1.case.<partition>.<case>.event`) and the sla
/// service's warnings and breaches (`SlaEvent`, `….<case>.sla`).
///
/// One stream gives every message a sequence number comparable with every
/// other: an acknowledgement stored after a breach cancels the escalation
/// that breach started, whichever service reads them first. Consumers read
/// one partition each, in order, so a case's events are applied in the
/// order they were stored while different cases proceed in parallel.
pub const STREAM_CASES: &str = "HERALD_CASES";
const CASE_PREFIX: &str = "herald.v1.case";
/// How many partitions case subjects are spread over. Changing it moves
/// cases to other subjects: only on an empty stream.
pub const CASE_PARTITIONS: u32 = 16;

/// Accepted notifications (`AcceptedNotification`), one stream per lane.
pub const STREAM_NOTIFY: &str = "HERALD_NOTIFY";
pub const STREAM_NOTIFY_EMERGENCY: &str = "HERALD_EMERGENCY_NOTIFY";
pub const NOTIFY_ACCEPTED: &str = "herald.v1.notify.accepted";
pub const NOTIFY_ACCEPTED_EMERGENCY: &str = "herald.v1.emergency.notify.accepted";

/// Delivery jobs (`DeliveryJob`), one stream per lane, one subject per channel.
pub const STREAM_DELIVERY: &str = "HERALD_DELIVERY";
pub const STREAM_DELIVERY_EMERGENCY: &str = "HERALD_EMERGENCY_DELIVERY";
const DELIVERY_JOB_PREFIX: &str = "herald.v1.delivery.job";
const DELIVERY_JOB_PREFIX_EMERGENCY: &str = "herald.v1.emergency.delivery.job";

/// Delivery status events (`DeliveryStatus`).
pub const STREAM_STATUS: &str = "HERALD_STATUS";
const STATUS_PREFIX: &str = "herald.v1.delivery.status";

/// The audit trail (`AuditRecord`), all in one stream. A record's subject
/// names the bucket of its case and the bucket of its notification
/// (`herald.v1.audit.<case bucket>.<notification bucket>`, `_` where there
/// is none), so one filter reads a notification's trail and another a
/// whole case's, after dropping the other ids that share the bucket
/// ([`Trail`]). The subjects are bounded (at most 257 × 257 of them), so
/// nats-server keeps no per-notification subject state for the years the
/// trail is kept.
pub const STREAM_AUDIT: &str = "HERALD_AUDIT";
pub(crate) const AUDIT_PREFIX: &str = "herald.v1.audit";
/// Stands for "no case" or "no notification" in an audit subject.
pub const AUDIT_NONE: &str = "_";

/// Dead letters: jobs that could not be delivered and have no fallback
/// (`DeadLetter`, `….dlq.job.<channel>`), and messages a consumer can never
/// handle as they are, set aside so the rest flows (`DeadMessage`,
/// `….dlq.message.<consumer>`).
pub const STREAM_DLQ: &str = "HERALD_DLQ";
const DLQ_PREFIX: &str = "herald.v1.dlq";

/// Emergency broadcasts. Coordinators ask intake by request/reply
/// (`StartBroadcast`, `UpdateBroadcast`, `CancelBroadcast` in, a
/// `BroadcastReply` out); intake writes each authorised command
/// (`BroadcastCommand`) to the broadcast stream, which the broadcast service
/// works through. The status of a broadcast is asked of the broadcast
/// service directly (`BroadcastStatusRequest` in, `BroadcastStatusReply`
/// out).
pub const BROADCAST_START: &str = "herald.v1.emergency.broadcast.start";
pub const BROADCAST_UPDATE: &str = "herald.v1.emergency.broadcast.update";
pub const BROADCAST_CANCEL: &str = "herald.v1.emergency.broadcast.cancel";
pub const BROADCAST_STATUS: &str = "herald.v1.emergency.broadcast.status";
pub const STREAM_BROADCAST: &str = "HERALD_EMERGENCY_BROADCAST";
pub const BROADCAST_COMMANDS: &str = "herald.v1.emergency.broadcast.command";
/// Queue group of the broadcast service's request/reply subjects.
pub const QUEUE_BROADCAST: &str = "herald-broadcast";
/// Delivery status events of broadcast jobs, kept in `HERALD_STATUS` with
/// every other status but under their own subjects, so the broadcast
/// service reads only its own.
const BROADCAST_STATUS_PREFIX: &str = "herald.v1.delivery.status.broadcast";

/// Core NATS (no stream): a service with emergency work under way says so
/// here a few times a second, and every service holds back its normal lane
/// while it hears it (see `herald_runtime::priority`).
pub const EMERGENCY_BUSY: &str = "herald.v1.emergency.busy";

pub fn notify_accepted(lane: Lane) -> &'static str {
    match lane {
        Lane::Normal => NOTIFY_ACCEPTED,
        Lane::Emergency => NOTIFY_ACCEPTED_EMERGENCY,
    }
}

pub fn notify_stream(lane: Lane) -> &'static str {
    match lane {
        Lane::Normal => STREAM_NOTIFY,
        Lane::Emergency => STREAM_NOTIFY_EMERGENCY,
    }
}

pub fn intake_notify(lane: Lane) -> &'static str {
    match lane {
        Lane::Normal => INTAKE_NOTIFY,
        Lane::Emergency => INTAKE_NOTIFY_EMERGENCY,
    }
}

pub fn delivery_stream(lane: Lane) -> &'static str {
    match lane {
        Lane::Normal => STREAM_DELIVERY,
        Lane::Emergency => STREAM_DELIVERY_EMERGENCY,
    }
}

/// Subject of a delivery job for one channel on one lane.
pub fn delivery_job(lane: Lane, channel: Channel) -> String {
    format!("{}.{}", delivery_job_prefix(lane), channel.name())
}

/// Wildcard covering every channel's jobs on a lane.
pub fn delivery_jobs(lane: Lane) -> String {
    format!("{}.*", delivery_job_prefix(lane))
}

fn delivery_job_prefix(lane: Lane) -> &'static str {
    match lane {
        Lane::Normal => DELIVERY_JOB_PREFIX,
        Lane::Emergency => DELIVERY_JOB_PREFIX_EMERGENCY,
    }
}

pub fn delivery_status(channel: Channel) -> String {
    format!("{STATUS_PREFIX}.{}", channel.name())
}

pub fn delivery_statuses() -> String {
    format!("{STATUS_PREFIX}.>")
}

/// Subject of a status event of a broadcast job.
pub fn broadcast_delivery_status(channel: Channel) -> String {
    format!("{BROADCAST_STATUS_PREFIX}.{}", channel.name())
}

/// Filter for the status events of every broadcast job.
pub fn broadcast_delivery_statuses() -> String {
    format!("{BROADCAST_STATUS_PREFIX}.>")
}

pub fn dlq(channel: Channel) -> String {
    format!("{DLQ_PREFIX}.job.{}", channel.name())
}

/// Every undeliverable job, whatever its channel.
pub fn dlq_jobs() -> String {
    format!("{DLQ_PREFIX}.job.>")
}

/// A message `consumer` could not handle.
pub fn dlq_message(consumer: &str) -> String {
    format!("{DLQ_PREFIX}.message.{consumer}")
}

pub fn dlq_messages() -> String {
    format!("{DLQ_PREFIX}.message.>")
}

/// Everything in the dead-letter stream.
pub fn dlq_all() -> String {
    format!("{DLQ_PREFIX}.>")
}

/// The partition a case's subjects are in (FNV-1a of the id).
pub fn case_partition(case_id: &str) -> u32 {
    crate::ids::fnv1a32(case_id.as_bytes()) % CASE_PARTITIONS
}

/// Subject of a lifecycle event of one case.
pub fn case_event(case_id: &str) -> String {
    format!("{CASE_PREFIX}.{}.{case_id}.event", case_partition(case_id))
}

/// Subject of a warning or breach of one case's clock.
pub fn sla_event(case_id: &str) -> String {
    format!("{CASE_PREFIX}.{}.{case_id}.sla", case_partition(case_id))
}

/// Every case subject, for the stream.
pub fn case_all() -> String {
    format!("{CASE_PREFIX}.>")
}

/// Every case's lifecycle events, whatever the partition (what intake
/// alone may write).
pub fn case_events_all() -> String {
    format!("{CASE_PREFIX}.*.*.event")
}

/// Every case's clock events (what the sla service alone may write).
pub fn sla_events_all() -> String {
    format!("{CASE_PREFIX}.*.*.sla")
}

/// The lifecycle events of one partition (what the sla service reads).
pub fn case_events_in(partition: u32) -> String {
    format!("{CASE_PREFIX}.{partition}.*.event")
}

/// Lifecycle events and clock events of one partition, interleaved in
/// stream order (what the escalation service reads).
pub fn case_all_in(partition: u32) -> String {
    format!("{CASE_PREFIX}.{partition}.>")
}

/// What a case subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseSubject<'a> {
    Event(&'a str),
    Sla(&'a str),
}

/// Reads a case subject back: the case id and whether it is a lifecycle
/// event or a clock event.
pub fn parse_case_subject(subject: &str) -> Option<CaseSubject<'_>> {
    let rest = subject.strip_prefix(CASE_PREFIX)?.strip_prefix('.')?;
    let (_partition, rest) = rest.split_once('.')?;
    let (case, kind) = rest.rsplit_once('.')?;
    match kind {
        "event" => Some(CaseSubject::Event(case)),
        "sla" => Some(CaseSubject::Sla(case)),
        _ => None,
    }
}

/// Whether a caller-chosen id can be one token of a subject: no dots,
/// wildcards or whitespace, and of a sane length.
pub fn is_subject_token(s: &str) -> bool {
    !s.is_empty()
        && s != AUDIT_NONE
        && s.len() <= 128
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@' | b'+' | b'=')
        })
}

/// The low-cardinality form of a subject: audit subjects carry case and
/// notification buckets, every other Herald subject is already a fixed name.
pub fn destination_template(subject: &str) -> &str {
    const AUDIT: &str = "herald.v1.audit.";
    if subject.starts_with(AUDIT) {
        "herald.v1.audit.{case bucket}.{notification bucket}"
    } else {
        match parse_case_subject(subject) {
            Some(CaseSubject::Event(_)) => "herald.v1.case.{partition}.{case}.event",
            Some(CaseSubject::Sla(_)) => "herald.v1.case.{partition}.{case}.sla",
            None => subject,
        }
    }
}

/// Channel of a delivery-job subject (`….job.<channel>`).
pub fn channel_of_subject(subject: &str) -> Channel {
    subject
        .rsplit('.')
        .next()
        .and_then(Channel::parse)
        .unwrap_or(Channel::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_never_share_subjects_or_streams() {
        assert_ne!(
            notify_accepted(Lane::Normal),
            notify_accepted(Lane::Emergency)
        );
        assert_ne!(notify_stream(Lane::Normal), notify_stream(Lane::Emergency));
        assert_ne!(delivery_jobs(Lane::Normal), delivery_jobs(Lane::Emergency));
        // The normal wildcard must not match an emergency job subject.
        let emergency = delivery_job(Lane::Emergency, Channel::Email);
        assert!(!emergency.starts_with(DELIVERY_JOB_PREFIX));
        assert!(!INTAKE_NOTIFY_EMERGENCY.starts_with(INTAKE_NOTIFY));
    }

    #[test]
    fn broadcast_statuses_stay_in_the_status_stream_and_apart_from_the_rest() {
        let all = delivery_statuses();
        let stream_prefix = all.trim_end_matches('>');
        assert!(broadcast_delivery_status(Channel::Voice).starts_with(stream_prefix));
        // No ordinary status subject falls under the broadcast filter.
        let filter = broadcast_delivery_statuses();
        for ch in Channel::ALL {
            assert!(!delivery_status(ch).starts_with(filter.trim_end_matches('>')));
        }
        for s in [
            BROADCAST_START,
            BROADCAST_UPDATE,
            BROADCAST_CANCEL,
            BROADCAST_STATUS,
            BROADCAST_COMMANDS,
            EMERGENCY_BUSY,
        ] {
            assert!(s.starts_with("herald.v1.emergency."), "{s}");
        }
    }

    #[test]
    fn audit_subjects_filter_by_notification_and_by_case() {
        // Stored subjects depend on these buckets: they must never move.
        assert_eq!(audit_bucket("ntf_1"), "a7");
        assert_eq!(audit_bucket("C-9"), "dc");
        assert_eq!(audit("", "ntf_1"), "herald.v1.audit._.a7");
        assert_eq!(audit("C-9", "ntf_1"), "herald.v1.audit.dc.a7");
        assert_eq!(audit("C-9", ""), "herald.v1.audit.dc._");
        assert_eq!(
            audit_of_notification("ntf_1").filter,
            "herald.v1.audit.*.a7"
        );
        assert_eq!(audit_of_case("C-9").filter, "herald.v1.audit.dc.*");
    }

    #[test]
    fn a_trail_keeps_its_own_records_of_a_shared_bucket() {
        use crate::v1::AuditRecord;
        // Two ids in one bucket: each trail keeps only its own.
        let (a, b) = (0..)
            .map(|i| format!("ntf_{i}"))
            .try_fold(std::collections::HashMap::new(), |mut seen, id| match seen
                .insert(audit_bucket(&id), id.clone())
            {
                Some(other) => Err((other, id)),
                None => Ok(seen),
            })
            .unwrap_err();
        assert_eq!(audit("", &a), audit("", &b));
        let of = |id: &str, case: &str| AuditRecord {
            notification_id: id.into(),
            case_id: case.into(),
            ..Default::default()
        };
        let trail = audit_of_notification(&a);
        assert!(trail.holds(&of(&a, "")) && !trail.holds(&of(&b, "")));
        let case = audit_of_case("C-9");
        assert!(case.holds(&of(&a, "C-9")) && !case.holds(&of(&a, "C-10")));
    }

    #[test]
    fn audit_subjects_are_bounded_whatever_the_ids() {
        let subjects: std::collections::HashSet<String> = (0..20_000)
            .map(|i| audit(&format!("C-{}", i % 700), &format!("ntf_{i}")))
            .collect();
        assert!(subjects.len() <= 257 * 257, "{}", subjects.len());
        let buckets: std::collections::HashSet<String> = (0..20_000)
            .map(|i| audit_bucket(&format!("ntf_{i}")))
            .collect();
        assert_eq!(buckets.len(), 256, "every bucket used");
    }

    #[test]
    fn case_subjects_round_trip_and_partitions_cover_them() {
        let e = case_event("CASE-42");
        let s = sla_event("CASE-42");
        assert_eq!(parse_case_subject(&e), Some(CaseSubject::Event("CASE-42")));
        assert_eq!(parse_case_subject(&s), Some(CaseSubject::Sla("CASE-42")));
        let p = case_partition("CASE-42");
        assert!(p < CASE_PARTITIONS);
        assert!(e.starts_with(case_all_in(p).trim_end_matches('>')));
        assert_eq!(
            case_events_in(p).replace('*', "CASE-42"),
            e,
            "the sla filter matches the event subject"
        );
        // Spread: a thousand ids use every partition.
        let used: std::collections::HashSet<u32> = (0..1000)
            .map(|i| case_partition(&format!("C-{i}")))
            .collect();
        assert_eq!(used.len() as u32, CASE_PARTITIONS);
    }

    #[test]
    fn a_request_names_its_caller_and_intake_reads_it_back() {
        for base in FROM_CALLERS {
            let s = from_caller(base, "crm-eu");
            assert_eq!(caller_of(&s), Some((base, "crm-eu")), "{s}");
            assert_eq!(from_any_caller(base).replace('*', "crm-eu"), s);
        }
        // No request subject is a prefix of another's caller form.
        assert_eq!(caller_of("herald.v1.intake.notify"), None);
        assert_eq!(caller_of("herald.v1.intake.notify.a.b"), None);
        assert_eq!(caller_of("herald.v1.intake.notifyx.a"), None);
    }

    #[test]
    fn subject_tokens_reject_wildcards_and_dots() {
        assert!(is_subject_token("CASE-2026-001"));
        for bad in ["", "a.b", "a*", ">", "a b", "ü"] {
            assert!(!is_subject_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn span_names_stay_few_while_audit_subjects_carry_ids() {
        assert_eq!(
            destination_template("herald.v1.audit.dc.a7"),
            "herald.v1.audit.{case bucket}.{notification bucket}"
        );
        assert_eq!(
            destination_template("herald.v1.delivery.job.email"),
            "herald.v1.delivery.job.email"
        );
        assert_eq!(
            destination_template(&sla_event("CASE-7")),
            "herald.v1.case.{partition}.{case}.sla"
        );
    }

    #[test]
    fn every_stream_has_one_owner_among_its_writers_or_readers() {
        let mut seen = std::collections::HashSet::new();
        for t in STREAMS {
            assert!(seen.insert(t.stream), "{} listed twice", t.stream);
            assert!(
                t.writers.contains(&t.owner) || t.readers.contains(&t.owner),
                "{t:?}"
            );
        }
    }
}
