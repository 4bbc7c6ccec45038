//! The `[router]` section: the service that renders notifications and
//! turns them into delivery jobs.

use serde::{Deserialize, Serialize};

use crate::checks;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    pub http_addr: String,
    /// Notifications routed at once per lane.
    pub concurrency: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9102".into(),
            concurrency: 256,
        }
    }
}

impl RouterConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("router.http_addr", &self.http_addr, problems);
        checks::at_least_one(&[("router.concurrency", self.concurrency)], problems);
    }
}
