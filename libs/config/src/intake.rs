//! The `[intake]` section: the gRPC front door's listeners and the limits
//! it holds every request to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checks;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IntakeConfig {
    /// gRPC listener (tonic, with reflection and health).
    pub grpc_addr: String,
    /// Health and metrics listener.
    pub http_addr: String,
    /// Largest encoded request accepted, in bytes.
    pub max_payload_bytes: usize,
    pub max_recipients: usize,
    /// How long an idempotency key is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Requests handled at once per lane.
    pub concurrency: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:9101".into(),
            max_payload_bytes: 64 * 1024,
            max_recipients: 1000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            concurrency: 512,
        }
    }
}

impl IntakeConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("intake.grpc_addr", &self.grpc_addr, problems);
        checks::listen_addr("intake.http_addr", &self.http_addr, problems);
        checks::at_least_one(
            &[
                ("intake.concurrency", self.concurrency),
                ("intake.max_recipients", self.max_recipients),
                ("intake.max_payload_bytes", self.max_payload_bytes),
            ],
            problems,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_limits_are_checked_by_name() {
        let mut problems = Vec::new();
        IntakeConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = IntakeConfig {
            grpc_addr: "localhost".into(),
            max_recipients: 0,
            ..IntakeConfig::default()
        };
        bad.validate(&mut problems);
        let text = problems.join("\n");
        assert!(text.contains("intake.grpc_addr"), "{text}");
        assert!(text.contains("intake.max_recipients"), "{text}");
        assert_eq!(problems.len(), 2, "{text}");
    }
}
