//! The NATS side of every service: connecting as its identity
//! ([`connect`]), declaring Herald's JetStream streams and waiting for them
//! ([`topology`]), publishing protobuf messages
//! with trace context and asking other services ([`publish`]), consumer
//! loops with bounded concurrency and a graceful drain ([`consume`]), and
//! the in-order consumers of the case stream ([`partitions`]).

mod connect;
mod consume;
mod partitions;
mod publish;
mod topology;

use async_nats::{Client, jetstream};
use herald_config::NatsConfig;

/// Span helpers handlers use on each message (they live with telemetry).
pub use crate::telemetry::spans::{in_span, process_span, publish_span};
pub use consume::{
    ConsumerSpec, Disposition, Gate, bind_consumer, consume, consume_batches, consume_gated,
    delivery_count, settle,
};
pub use partitions::{Permanent, consume_case_partitions};
pub use publish::confirm;
pub use topology::stream_configs;

/// A connection to NATS and its JetStream context.
#[derive(Clone)]
pub struct Bus {
    pub client: Client,
    pub js: jetstream::Context,
    pub cfg: NatsConfig,
    /// Who this connection is (a service's name, or a role's identity):
    /// the name its requests are addressed under.
    pub identity: String,
}

/// The JetStream publish failed or was not confirmed in time; the caller
/// should treat the message as not written and retry or refuse.
#[derive(Debug, thiserror::Error)]
#[error("publish to {subject} not confirmed: {reason}")]
pub struct PublishError {
    pub subject: String,
    pub reason: String,
}

/// Why [`Bus::ask`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing is subscribed to the subject: no instance of the service
    /// is running (NATS says so at once).
    #[error("{0}")]
    NoResponders(String),
    /// Nobody answered in time: the service is down or overloaded.
    #[error("{0}")]
    NoAnswer(String),
    /// An answer came that is not the expected message.
    #[error("{0}")]
    Garbled(String),
}
