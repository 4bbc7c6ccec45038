//! Who owns each of Herald's JetStream streams: the table the NATS
//! permissions and the README follow.

use super::*;

/// Who a stream belongs to: the one service that owns its contract (and
/// its consumer of record), who else writes to it and who reads it. The
/// NATS permissions of each service follow from this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOwner {
    pub stream: &'static str,
    pub owner: &'static str,
    pub writers: &'static [&'static str],
    pub readers: &'static [&'static str],
}

/// Every stream Herald declares, each once.
pub const STREAMS: [StreamOwner; 12] = [
    StreamOwner {
        stream: STREAM_NOTIFY,
        owner: "intake",
        writers: &["intake"],
        readers: &["router"],
    },
    StreamOwner {
        stream: STREAM_NOTIFY_EMERGENCY,
        owner: "intake",
        writers: &["intake"],
        readers: &["router"],
    },
    StreamOwner {
        stream: STREAM_DELIVERY,
        owner: "delivery",
        writers: &["router", "delivery"],
        readers: &["delivery"],
    },
    StreamOwner {
        stream: STREAM_DELIVERY_EMERGENCY,
        owner: "delivery",
        writers: &["router", "delivery", "broadcast"],
        readers: &["delivery"],
    },
    StreamOwner {
        stream: STREAM_STOPS,
        owner: "delivery",
        writers: &["intake", "escalation", "broadcast"],
        readers: &["delivery"],
    },
    StreamOwner {
        stream: STREAM_STATUS,
        owner: "delivery",
        writers: &["delivery"],
        readers: &["broadcast"],
    },
    StreamOwner {
        stream: STREAM_INBOUND,
        owner: "delivery",
        writers: &["delivery"],
        readers: &["broadcast", "escalation"],
    },
    StreamOwner {
        stream: STREAM_BROADCAST,
        owner: "broadcast",
        writers: &["intake"],
        readers: &["broadcast"],
    },
    StreamOwner {
        stream: STREAM_CASES,
        owner: "intake",
        writers: &["intake", "sla"],
        readers: &["sla", "escalation"],
    },
    StreamOwner {
        stream: STREAM_AUDIT,
        owner: "intake",
        writers: &[
            "intake",
            "router",
            "delivery",
            "broadcast",
            "sla",
            "escalation",
        ],
        readers: &["operators"],
    },
    StreamOwner {
        stream: STREAM_DLQ,
        owner: "delivery",
        writers: &["delivery", "sla", "escalation"],
        readers: &["operators"],
    },
    StreamOwner {
        stream: STREAM_TEMPLATES,
        owner: "intake",
        writers: &["intake"],
        readers: &["intake", "router"],
    },
];

/// Streams that hold nothing about any person, which an erasure leaves
/// alone: approved template versions are the organisation's wording, and
/// deleting one because its text shares a word with someone's name would
/// take it out of use.
pub const NAMES_NOBODY: [&str; 1] = [STREAM_TEMPLATES];

impl StreamOwner {
    /// Whether messages of this stream may name a person, so an erasure
    /// must look through it.
    pub fn may_name_people(&self) -> bool {
        !NAMES_NOBODY.contains(&self.stream)
    }
}
