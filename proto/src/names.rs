//! The lower-case names of the contract's enums, as config files, subjects,
//! metric labels, the trail and the command line spell them. Each enum's
//! table is written once, here, with [`names!`]; `parse` also takes the
//! aliases people type (`phone` for voice, `ticket` for support_ticket).

use crate::v1::{
    AuditStep, BroadcastState, CaseChannel, CaseEventKind, Channel, ClockKind, ClockState,
    CommunicationType, Confidentiality, DeliveryState, ErrorCode, FeedbackStatus, InteractionKind,
    Lane, Priority, ReportKind, Severity, SlaEventKind,
};

/// Implements `name()` (the canonical lower-case name) and `parse()`
/// (canonical names and aliases, any case, surrounding space ignored) for
/// a generated enum. Every variant must be listed (the `match` checks it);
/// an `unspecified` value has a name but is never parsed.
macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// Lower-case name, as Herald writes it everywhere.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            /// The value a name (or an alias) stands for.
            pub fn parse(s: &str) -> Option<$ty> {
                const TABLE: &[($ty, &str)] = &[$(($ty::$variant, $name), $(($ty::$variant, $alias),)*)+];
                let s = s.trim();
                TABLE
                    .iter()
                    .find(|(_, n)| *n != "unspecified" && n.eq_ignore_ascii_case(s))
                    .map(|(v, _)| *v)
            }

            /// The name of a value carried as a number in a message
            /// (an unknown number reads as the enum's zero value).
            pub fn name_of(value: i32) -> &'static str {
                $ty::try_from(value).unwrap_or_default().name()
            }
        }
    };
}

names!(AuditStep {
    Unspecified => "unspecified",
    Accepted => "accepted",
    Routed => "routed",
    Rendered => "rendered",
    Sent => "sent",
    Failed => "failed",
    RetryScheduled => "retry_scheduled",
    Fallback => "fallback",
    DeadLettered => "dead_lettered",
    Status => "status",
    Skipped => "skipped",
    CaseEvent => "case_event",
    ClockStarted => "clock_started",
    ClockStopped => "clock_stopped",
    ClockPaused => "clock_paused",
    SlaWarning => "sla_warning",
    SlaBreach => "sla_breach",
    Escalated => "escalated",
    EscalationStopped => "escalation_stopped",
    FollowUp => "follow_up",
    Broadcast => "broadcast",
    Confirmed => "confirmed",
    Replayed => "replayed",
    Cancelled => "cancelled",
    ReplyReceived => "reply_received",
    Held => "held",
    AwaitingApproval => "awaiting_approval",
    ApprovalDecided => "approval_decided",
    Erased => "erased",
    TemplateProposed => "template_proposed",
    TemplateApproved => "template_approved",
    TemplateRejected => "template_rejected",
    ReportSent => "report_sent",
    ReportScheduled => "report_scheduled",
    ReportFailed => "report_failed",
    FeedbackTrendSent => "feedback_trend_sent",
});

names!(Channel {
    Unspecified => "unspecified",
    Email => "email",
    Sms => "sms",
    Voice => "voice" | "phone" | "call",
});

names!(Lane {
    Normal => "normal",
    Emergency => "emergency",
});

names!(Severity {
    Unspecified => "unspecified",
    Minor => "minor",
    Moderate => "moderate",
    Severe => "severe",
    Extreme => "extreme",
});

names!(Priority {
    Unspecified => "unspecified",
    Low => "low",
    Normal => "normal",
    High => "high",
    Critical => "critical",
});

names!(Confidentiality {
    Unspecified => "unspecified",
    Standard => "standard",
    Confidential => "confidential",
    Sensitive => "sensitive",
});

names!(CommunicationType {
    Unspecified => "unspecified",
    InitialInquiry => "initial_inquiry" | "inquiry" | "initial-inquiry",
    ServiceUpdate => "service_update" | "update" | "service-update",
    FeedbackComplaint => "feedback_complaint" | "complaint" | "feedback" | "feedback-complaint",
    Resolution => "resolution" | "closure",
    Incident => "incident",
    EscalationNotice => "escalation_notice" | "escalation" | "escalation-notice",
    FollowUp => "follow_up" | "followup" | "follow-up",
    DataBreach => "data_breach" | "breach" | "data-breach",
    Emergency => "emergency",
    StatusReport => "status_report" | "report" | "status-report",
});

names!(CaseChannel {
    Unspecified => "unspecified",
    Email => "email",
    LiveChat => "live_chat" | "chat",
    Phone => "phone",
    SupportTicket => "support_ticket" | "ticket",
    Portal => "portal",
});

names!(CaseEventKind {
    Unspecified => "unspecified",
    Opened => "opened",
    Acknowledged => "acknowledged",
    Responded => "responded",
    Updated => "updated",
    Resolved => "resolved",
    Reopened => "reopened",
    EscalateNow => "escalate_now",
    FeedbackReceived => "feedback_received",
    WaitingOnClient => "waiting_on_client",
    ClientReplied => "client_replied",
    InteractionLogged => "interaction_logged",
    ActionDone => "action_done",
    FeedbackUpdated => "feedback_updated",
    MeetingScheduled => "meeting_scheduled",
    MeetingRescheduled => "meeting_rescheduled",
    MeetingCancelled => "meeting_cancelled",
    MeetingAnswered => "meeting_answered",
});

names!(ReportKind {
    Unspecified => "unspecified",
    Weekly => "weekly",
    Biweekly => "biweekly" | "fortnightly",
    Monthly => "monthly",
    Incident => "incident",
    FeedbackTrend => "feedback_trend" | "feedback-trend" | "trend",
});

names!(FeedbackStatus {
    Unspecified => "unspecified",
    Received => "received",
    InProgress => "in_progress" | "in-progress",
    Resolved => "resolved",
});

names!(InteractionKind {
    Unspecified => "unspecified",
    Call => "call",
    Meeting => "meeting",
    Email => "email",
    InPerson => "in_person" | "in-person",
});

names!(ClockKind {
    Unspecified => "unspecified",
    Acknowledgement => "acknowledgement",
    Response => "response",
    Resolution => "resolution",
});

names!(ClockState {
    Unspecified => "unspecified",
    Running => "running",
    Paused => "paused",
    Stopped => "stopped",
});

names!(SlaEventKind {
    Unspecified => "unspecified",
    Warning => "warning",
    Breach => "breach",
});

names!(BroadcastState {
    Unspecified => "unspecified",
    Starting => "starting",
    Active => "active",
    Finished => "finished",
    Cancelled => "cancelled",
});

names!(DeliveryState {
    Unspecified => "unspecified",
    Sent => "sent",
    Queued => "queued",
    Delivered => "delivered",
    Undelivered => "undelivered",
    Failed => "failed",
    Retrying => "retrying",
    Initiated => "initiated",
    Ringing => "ringing",
    Answered => "answered",
    Completed => "completed",
    Busy => "busy",
    NoAnswer => "no_answer",
    DeadLettered => "dead_lettered",
    Cancelled => "cancelled",
});

names!(ErrorCode {
    Unspecified => "unspecified",
    InvalidArgument => "invalid_argument",
    Undecodable => "undecodable",
    PayloadTooLarge => "payload_too_large",
    EmptyRecipients => "empty_recipients",
    UnknownTemplate => "unknown_template",
    UnknownContact => "unknown_contact",
    MissingConsent => "missing_consent",
    ChannelNotAllowed => "channel_not_allowed",
    IdempotencyConflict => "idempotency_conflict",
    Unauthorized => "unauthorized",
    Unavailable => "unavailable",
    Internal => "internal",
    NotFound => "not_found",
    InvalidState => "invalid_state",
});

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Voice];
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Normal, Lane::Emergency];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each canonical name is the protobuf name without its enum prefix,
    /// lower-cased: the tables cannot drift from the contract.
    fn agrees<E: Copy + PartialEq + std::fmt::Debug>(
        all: impl IntoIterator<Item = E>,
        name: fn(E) -> &'static str,
        proto: fn(E) -> &'static str,
        parse: fn(&str) -> Option<E>,
        prefix: &str,
    ) {
        for v in all {
            let expected = proto(v).trim_start_matches(prefix).to_ascii_lowercase();
            assert_eq!(name(v), expected, "{v:?}");
            if expected != "unspecified" {
                assert_eq!(parse(&name(v).to_ascii_uppercase()), Some(v), "{v:?}");
            }
        }
    }

    #[test]
    fn names_follow_the_protobuf_names_and_parse_back() {
        agrees(
            (0..40).filter_map(|i| AuditStep::try_from(i).ok()),
            AuditStep::name,
            |v| v.as_str_name(),
            AuditStep::parse,
            "AUDIT_STEP_",
        );
        agrees(
            (0..4).filter_map(|i| Channel::try_from(i).ok()),
            Channel::name,
            |v| v.as_str_name(),
            Channel::parse,
            "CHANNEL_",
        );
        agrees(
            (0..2).filter_map(|i| Lane::try_from(i).ok()),
            Lane::name,
            |v| v.as_str_name(),
            Lane::parse,
            "LANE_",
        );
        agrees(
            (0..5).filter_map(|i| Severity::try_from(i).ok()),
            Severity::name,
            |v| v.as_str_name(),
            Severity::parse,
            "SEVERITY_",
        );
        agrees(
            (0..5).filter_map(|i| Priority::try_from(i).ok()),
            Priority::name,
            |v| v.as_str_name(),
            Priority::parse,
            "PRIORITY_",
        );
        agrees(
            (0..4).filter_map(|i| Confidentiality::try_from(i).ok()),
            Confidentiality::name,
            |v| v.as_str_name(),
            Confidentiality::parse,
            "CONFIDENTIALITY_",
        );
        agrees(
            (0..11).filter_map(|i| CommunicationType::try_from(i).ok()),
            CommunicationType::name,
            |v| v.as_str_name(),
            CommunicationType::parse,
            "COMMUNICATION_TYPE_",
        );
        agrees(
            (0..6).filter_map(|i| CaseChannel::try_from(i).ok()),
            CaseChannel::name,
            |v| v.as_str_name(),
            CaseChannel::parse,
            "CASE_CHANNEL_",
        );
        agrees(
            (0..11).filter_map(|i| CaseEventKind::try_from(i).ok()),
            CaseEventKind::name,
            |v| v.as_str_name(),
            CaseEventKind::parse,
            "CASE_EVENT_KIND_",
        );
        agrees(
            (0..4).filter_map(|i| ClockKind::try_from(i).ok()),
            ClockKind::name,
            |v| v.as_str_name(),
            ClockKind::parse,
            "CLOCK_KIND_",
        );
        agrees(
            (0..4).filter_map(|i| ClockState::try_from(i).ok()),
            ClockState::name,
            |v| v.as_str_name(),
            ClockState::parse,
            "CLOCK_STATE_",
        );
        agrees(
            (0..3).filter_map(|i| SlaEventKind::try_from(i).ok()),
            SlaEventKind::name,
            |v| v.as_str_name(),
            SlaEventKind::parse,
            "SLA_EVENT_KIND_",
        );
        agrees(
            (0..5).filter_map(|i| BroadcastState::try_from(i).ok()),
            BroadcastState::name,
            |v| v.as_str_name(),
            BroadcastState::parse,
            "BROADCAST_STATE_",
        );
        agrees(
            (0..15).filter_map(|i| DeliveryState::try_from(i).ok()),
            DeliveryState::name,
            |v| v.as_str_name(),
            DeliveryState::parse,
            "DELIVERY_STATE_",
        );
        agrees(
            (0..15).filter_map(|i| ErrorCode::try_from(i).ok()),
            ErrorCode::name,
            |v| v.as_str_name(),
            ErrorCode::parse,
            "ERROR_CODE_",
        );
    }

    #[test]
    fn aliases_and_odd_spelling_parse_and_unspecified_does_not() {
        assert_eq!(Channel::parse(" Phone "), Some(Channel::Voice));
        assert_eq!(
            CaseChannel::parse("ticket"),
            Some(CaseChannel::SupportTicket)
        );
        assert_eq!(
            CommunicationType::parse("data-breach"),
            Some(CommunicationType::DataBreach)
        );
        assert_eq!(Priority::parse("unspecified"), None);
        assert_eq!(Channel::parse("fax"), None);
        assert_eq!(Priority::name_of(99), "unspecified");
    }
}
