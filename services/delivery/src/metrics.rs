//! Delivery's Prometheus metrics, in one place so the names and help texts
//! the dashboards and alerts depend on are registered once and read the
//! same by the worker, the hand-on and the status callbacks.

use herald_runtime::metrics::{ChannelOutcome, LaneLabel, ReasonLabel};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// An inbound message's channel and what became of it (matched,
/// unmatched, rejected: bad signature, invalid).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct InboundLabel {
    pub(crate) channel: String,
    pub(crate) outcome: String,
}

pub(crate) struct Metrics {
    pub(crate) inbound: Family<InboundLabel, Counter>,
    pub(crate) deliveries: Family<ChannelOutcome, Counter>,
    pub(crate) retries: Family<ChannelOutcome, Counter>,
    pub(crate) suppressed: Family<LaneLabel, Counter>,
    pub(crate) interrupted: Family<LaneLabel, Counter>,
    pub(crate) held: Family<ReasonLabel, Counter>,
    pub(crate) callbacks: Family<ChannelOutcome, Counter>,
    pub(crate) end_to_end: Family<LaneLabel, Histogram>,
    pub(crate) attempt: Family<ChannelOutcome, Histogram>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            inbound: Family::default(),
            deliveries: Family::default(),
            retries: Family::default(),
            suppressed: Family::default(),
            interrupted: Family::default(),
            held: Family::default(),
            callbacks: Family::default(),
            end_to_end: herald_runtime::metrics::latency_family(),
            attempt: herald_runtime::metrics::latency_family(),
        };
        registry.register(
            "delivery_jobs",
            "Jobs finished, by channel and outcome (sent, fallback, dead_lettered)",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_retries",
            "Attempts that will be retried",
            m.retries.clone(),
        );
        registry.register(
            "delivery_duplicates_suppressed",
            "Redelivered jobs recognised as already sent",
            m.suppressed.clone(),
        );
        registry.register(
            "delivery_interrupted_takeovers",
            "Jobs taken over after their previous holder died mid-attempt; each may have reached the provider twice (same idempotency key)",
            m.interrupted.clone(),
        );
        registry.register(
            "delivery_held",
            "Jobs made to wait by a rate limit, by reason",
            m.held.clone(),
        );
        registry.register(
            "delivery_status_callbacks",
            "Provider status callbacks, by channel and reported state (rejected: bad signature)",
            m.callbacks.clone(),
        );
        registry.register(
            "delivery_inbound_messages",
            "Replies people sent (SMS, email), by channel and outcome (matched to what Herald sent, unmatched, rejected: bad signature, invalid)",
            m.inbound.clone(),
        );
        registry.register(
            "delivery_end_to_end_seconds",
            "From intake accepting the notification to the provider taking the message",
            m.end_to_end.clone(),
        );
        registry.register(
            "delivery_attempt_seconds",
            "Duration of one provider attempt",
            m.attempt.clone(),
        );
        m
    }
}
