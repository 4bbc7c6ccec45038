//! What an operator counts on the escalation service: steps up the chain,
//! by the level reached and what started it.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EscalationLabel {
    pub lane: String,
    /// The level reached, `1` for the first step up the chain.
    pub level: String,
    /// What started it: `breach` or `request`.
    pub trigger: String,
}

/// How an acknowledgement from a page came and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabel {
    /// `link`, `key` or `sms`.
    pub via: String,
    /// `acknowledged`, `already`, `over` (the escalation had ended),
    /// `unknown_code`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// Steps up an escalation chain, for the service that walks it, and what
/// people answered from their pages.
#[derive(Clone, Default)]
pub struct EscalationMetrics {
    pub escalations: Family<EscalationLabel, Counter>,
    pub acks: Family<AckLabel, Counter>,
    pub ack_refused: Family<EndpointLabel, Counter>,
    pub replies: Family<ChannelLabel, Counter>,
}

impl EscalationMetrics {
    pub fn register(registry: &mut Registry) -> EscalationMetrics {
        let m = EscalationMetrics::default();
        registry.register(
            "escalations",
            "Escalations, by the level reached",
            m.escalations.clone(),
        );
        registry.register(
            "escalation_acknowledgements",
            "Acknowledgements from an escalation alert (link, key press, SMS code), by outcome",
            m.acks.clone(),
        );
        registry.register(
            "escalation_acknowledgements_refused",
            "Acknowledgement requests refused: a forged link or key press, or a provider signature that does not hold",
            m.ack_refused.clone(),
        );
        registry.register(
            "escalation_client_replies",
            "Clients' replies to messages about their case, by channel",
            m.replies.clone(),
        );
        m
    }
}
