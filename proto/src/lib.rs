//! The `herald.v1` contract shared by every Herald service and by the
//! systems that publish to Herald.
//!
//! Types are generated from `proto/herald/v1/*.proto`. Subject and stream
//! names live in [`subjects`] and nowhere else.

pub mod subjects;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("herald.v1");

    /// Encoded `FileDescriptorSet` of every herald.v1 file, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/herald_descriptor.bin"));
}

pub use prost::Message;
pub use prost_types::Timestamp;

use v1::{CaseChannel, CaseEventKind, Channel, ClockKind, Lane, Priority, Severity};

impl Channel {
    /// Lower-case name used in config files, subjects and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Unspecified => "unspecified",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            "voice" | "phone" | "call" => Some(Channel::Voice),
            _ => None,
        }
    }

    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Voice];
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::Normal => "normal",
            Lane::Emergency => "emergency",
        }
    }

    pub const ALL: [Lane; 2] = [Lane::Normal, Lane::Emergency];
}

impl Severity {
    /// Lower-case name, as the command line and the trail write it.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Unspecified => "unspecified",
            Severity::Minor => "minor",
            Severity::Moderate => "moderate",
            Severity::Severe => "severe",
            Severity::Extreme => "extreme",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "minor" => Some(Severity::Minor),
            "moderate" => Some(Severity::Moderate),
            "severe" => Some(Severity::Severe),
            "extreme" => Some(Severity::Extreme),
            _ => None,
        }
    }
}

impl Priority {
    /// Lower-case name: low, normal, high, critical.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Unspecified => "unspecified",
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl CaseChannel {
    /// Lower-case name used in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CaseChannel::Unspecified => "unspecified",
            CaseChannel::Email => "email",
            CaseChannel::LiveChat => "live_chat",
            CaseChannel::Phone => "phone",
            CaseChannel::SupportTicket => "support_ticket",
            CaseChannel::Portal => "portal",
        }
    }

    pub fn parse(s: &str) -> Option<CaseChannel> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "email" => CaseChannel::Email,
            "live_chat" | "chat" => CaseChannel::LiveChat,
            "phone" => CaseChannel::Phone,
            "support_ticket" | "ticket" => CaseChannel::SupportTicket,
            "portal" => CaseChannel::Portal,
            _ => return None,
        })
    }
}

impl ClockKind {
    pub fn name(self) -> &'static str {
        match self {
            ClockKind::Unspecified => "unspecified",
            ClockKind::Acknowledgement => "acknowledgement",
            ClockKind::Response => "response",
            ClockKind::Resolution => "resolution",
        }
    }
}

impl CaseEventKind {
    /// Lower-case name, as the trail and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            CaseEventKind::Unspecified => "unspecified",
            CaseEventKind::Opened => "opened",
            CaseEventKind::Acknowledged => "acknowledged",
            CaseEventKind::Responded => "responded",
            CaseEventKind::Updated => "updated",
            CaseEventKind::Resolved => "resolved",
            CaseEventKind::Reopened => "reopened",
            CaseEventKind::EscalateNow => "escalate_now",
            CaseEventKind::FeedbackReceived => "feedback_received",
            CaseEventKind::WaitingOnClient => "waiting_on_client",
            CaseEventKind::ClientReplied => "client_replied",
        }
    }
}

/// A protobuf timestamp for a wall-clock instant.
pub fn timestamp(t: std::time::SystemTime) -> Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The wall-clock instant a protobuf timestamp names (the epoch when absent).
pub fn system_time(t: Option<&Timestamp>) -> std::time::SystemTime {
    match t {
        Some(t) if t.seconds >= 0 => {
            std::time::UNIX_EPOCH
                + std::time::Duration::new(t.seconds as u64, t.nanos.clamp(0, 999_999_999) as u32)
        }
        _ => std::time::UNIX_EPOCH,
    }
}

pub fn now() -> Timestamp {
    timestamp(std::time::SystemTime::now())
}
