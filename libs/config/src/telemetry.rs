//! The `[telemetry]` section: how every service logs and how often it
//! measures its queues.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// How often a service asks JetStream for the depth of its streams and
    /// the lag of its consumers (the `herald_stream_*` and
    /// `herald_consumer_*` gauges).
    #[serde(with = "humantime_serde")]
    pub queue_poll_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Plain,
            log_level: "info".into(),
            queue_poll_interval: Duration::from_secs(5),
        }
    }
}
