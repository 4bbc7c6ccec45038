//! What a service's `start` returns: where it listens and its task, which
//! the binary waits on and tests stop through their shutdown token.

use std::net::SocketAddr;

use tokio::task::JoinHandle;

use crate::health::Health;

pub struct Running {
    /// Health, readiness and metrics (and any routes the service adds).
    pub http_addr: SocketAddr,
    pub health: Health,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn new(
        http_addr: SocketAddr,
        health: Health,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Running {
        Running {
            http_addr,
            health,
            task,
        }
    }

    /// Waits until the service has stopped, with its outcome.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}
