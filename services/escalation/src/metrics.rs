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

/// Steps up an escalation chain, for the service that walks it.
#[derive(Clone, Default)]
pub struct EscalationMetrics {
    pub escalations: Family<EscalationLabel, Counter>,
}

impl EscalationMetrics {
    pub fn register(registry: &mut Registry) -> EscalationMetrics {
        let m = EscalationMetrics::default();
        registry.register(
            "escalations",
            "Escalations, by the level reached",
            m.escalations.clone(),
        );
        m
    }
}
