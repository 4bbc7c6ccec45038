//! What an operator counts on the broadcast service: broadcasts by what
//! happened to them, jobs and confirmations by channel, refused callbacks.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabel {
    pub(crate) event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ChannelLabel {
    pub(crate) channel: String,
}

pub(crate) struct Metrics {
    pub(crate) broadcasts: Family<EventLabel, Counter>,
    pub(crate) jobs: Family<ChannelLabel, Counter>,
    pub(crate) confirmations: Family<ChannelLabel, Counter>,
    pub(crate) refused: Family<EventLabel, Counter>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            broadcasts: Family::default(),
            jobs: Family::default(),
            confirmations: Family::default(),
            refused: Family::default(),
        };
        registry.register(
            "broadcasts",
            "Broadcasts started, recalled (a call cycle), updated, finished and cancelled",
            m.broadcasts.clone(),
        );
        registry.register(
            "broadcast_jobs",
            "Delivery jobs a broadcast put on the emergency lane, by channel",
            m.jobs.clone(),
        );
        registry.register(
            "broadcast_confirmations",
            "Recipients who confirmed receipt, by how (email link, voice key press, SMS reply)",
            m.confirmations.clone(),
        );
        registry.register(
            "broadcast_webhooks_refused",
            "Confirmation requests refused for a bad signature, by endpoint",
            m.refused.clone(),
        );
        m
    }

    pub(crate) fn event(&self, event: &str) {
        self.broadcasts
            .get_or_create(&EventLabel {
                event: event.into(),
            })
            .inc();
    }
}
