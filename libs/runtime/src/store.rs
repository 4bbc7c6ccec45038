//! Redis connections. Every service uses one multiplexed, self-reconnecting
//! connection, so concurrent commands are pipelined on one socket.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use herald_config::RedisConfig;

use crate::retry::Backoff;

/// Connects, retrying until Redis answers or `shutdown` fires.
pub async fn connect(
    cfg: &RedisConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(cfg.url.expose_secret())
        .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(6)
        .set_max_delay(Duration::from_secs(2));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match client
            .get_connection_manager_with_config(config.clone())
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) => {
                warn!(error = %e, "Redis not reachable yet; retrying");
                if !backoff.wait(shutdown).await {
                    anyhow::bail!("shut down before Redis was reachable");
                }
            }
        }
    }
}
