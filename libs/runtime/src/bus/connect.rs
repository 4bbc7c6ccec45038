//! Connecting to NATS, retrying until it answers, with JetStream set up
//! for confirmed publishes.

use std::time::Duration;

use async_nats::jetstream;
use herald_config::NatsConfig;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Bus;
use crate::retry::Backoff;

impl Bus {
    /// Connects, retrying until NATS answers or `shutdown` fires.
    pub async fn connect(
        cfg: &NatsConfig,
        name: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Bus> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let opts = async_nats::ConnectOptions::new()
                .name(name)
                .max_reconnects(None)
                .connection_timeout(Duration::from_secs(3))
                .client_capacity(65_536)
                .reconnect_delay_callback(|attempts| {
                    Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
                        .nth(u32::try_from(attempts).unwrap_or(u32::MAX))
                });
            match opts.connect(cfg.url.as_str()).await {
                Ok(client) => {
                    let js = jetstream::ContextBuilder::new()
                        .timeout(cfg.publish_timeout)
                        .ack_timeout(cfg.publish_timeout)
                        .max_ack_inflight(20_000)
                        .backpressure_on_inflight(true)
                        .build(client.clone());
                    return Ok(Bus {
                        client,
                        js,
                        cfg: cfg.clone(),
                    });
                }
                Err(e) => {
                    warn!(error = %e, "NATS not reachable yet; retrying");
                    if !backoff.wait(shutdown).await {
                        anyhow::bail!("shut down before NATS was reachable");
                    }
                }
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
