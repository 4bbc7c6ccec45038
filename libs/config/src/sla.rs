//! The `[sla]` section: response-time clocks on business-hours calendars,
//! and the timer loops that fire them.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::checks;

/// The sla service: response-time clocks on business-hours calendars.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SlaConfig {
    pub http_addr: String,
    /// SLA policies; the policies shipped in `config/sla.toml` (the SOPs'
    /// response times) are compiled in and used when this is empty.
    pub policy_file: Option<PathBuf>,
    /// Business-hours calendars and which team uses which; the calendars
    /// shipped in `config/calendars.toml` are used when this is empty.
    pub calendars_file: Option<PathBuf>,
    /// Timer loops per instance, each claiming `batch` due clocks at a time.
    pub runners: usize,
    pub batch: usize,
    /// How long a claimed clock is this instance's before another takes it
    /// over; shorter than `nats.duplicate_window`, which drops a repeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The longest a timer loop sleeps without looking at Redis.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9104".into(),
            policy_file: None,
            calendars_file: None,
            runners: 2,
            batch: 500,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
        }
    }
}

impl SlaConfig {
    /// The lease is also held to `nats.duplicate_window`, in
    /// [`crate::across_sections`].
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("sla.http_addr", &self.http_addr, problems);
        checks::at_least_one(
            &[("sla.runners", self.runners), ("sla.batch", self.batch)],
            problems,
        );
        checks::more_than_zero(
            &[("sla.lease", self.lease), ("sla.poll", self.poll)],
            problems,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_loops_need_runners_a_batch_a_lease_and_a_poll() {
        let mut problems = Vec::new();
        SlaConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = SlaConfig {
            runners: 0,
            batch: 0,
            lease: Duration::ZERO,
            poll: Duration::ZERO,
            ..SlaConfig::default()
        };
        bad.validate(&mut problems);
        let text = problems.join("\n");
        for key in ["sla.runners", "sla.batch", "sla.lease", "sla.poll"] {
            assert!(text.contains(key), "{key} not named in: {text}");
        }
    }
}
