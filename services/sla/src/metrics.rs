//! What an operator counts on the sla service: clocks that reached their
//! warning point and clocks that ran out, by lane, channel and clock.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlaLabel {
    pub lane: String,
    pub channel: String,
    /// Which response-time clock: `first_response`, `acknowledgement`,
    /// `resolution`, …
    pub clock: String,
}

/// Response-time clocks running out, for the service that keeps them.
#[derive(Clone, Default)]
pub struct SlaMetrics {
    /// A clock passed its warning point (still time to act).
    pub warnings: Family<SlaLabel, Counter>,
    /// A clock ran out.
    pub breaches: Family<SlaLabel, Counter>,
}

impl SlaMetrics {
    pub fn register(registry: &mut Registry) -> SlaMetrics {
        let m = SlaMetrics::default();
        registry.register(
            "sla_warnings",
            "Response-time clocks that reached their warning point",
            m.warnings.clone(),
        );
        registry.register(
            "sla_breaches",
            "Response-time clocks that ran out",
            m.breaches.clone(),
        );
        m
    }
}
