//! The `[nats]` section: where the JetStream server is and how Herald's
//! streams and consumers are set up on it. Read by every service.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checks;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    pub url: String,
    /// JetStream replicas for every Herald stream (1 on a single server).
    pub replicas: usize,
    /// How long JetStream remembers message ids to drop duplicate publishes.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long the audit trail is kept before it is destroyed (SOP 003 §6.5).
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// How long a consumer waits for an ack before JetStream redelivers.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// How long to wait for JetStream to confirm a publish.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(10 * 60),
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            ack_wait: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(5),
        }
    }
}

impl NatsConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::url_scheme("nats.url", &self.url, &["nats", "tls"], problems);
        if self.replicas == 0 || self.replicas > 5 {
            problems.push("`nats.replicas` must be between 1 and 5".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_and_replicas_are_checked() {
        let mut problems = Vec::new();
        NatsConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = NatsConfig {
            url: "http://x".into(),
            replicas: 7,
            ..NatsConfig::default()
        };
        bad.validate(&mut problems);
        assert!(problems[0].contains("nats.url"), "{problems:?}");
        assert!(problems[1].contains("nats.replicas"), "{problems:?}");
    }
}
