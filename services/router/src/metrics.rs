//! Router's Prometheus metrics, registered in one place so the names and
//! help texts dashboards depend on do not drift with the routing code.

use herald_runtime::metrics::{ChannelOutcome, LaneLabel, ReasonLabel};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

pub(crate) struct Metrics {
    pub(crate) routed: Family<LaneLabel, Counter>,
    pub(crate) jobs: Family<ChannelOutcome, Counter>,
    pub(crate) skipped: Family<ReasonLabel, Counter>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            routed: Family::default(),
            jobs: Family::default(),
            skipped: Family::default(),
        };
        registry.register("router_routed", "Notifications routed", m.routed.clone());
        registry.register(
            "router_jobs",
            "Delivery jobs emitted, by channel",
            m.jobs.clone(),
        );
        registry.register(
            "router_skipped",
            "Recipients or channels skipped, by reason",
            m.skipped.clone(),
        );
        m
    }
}
