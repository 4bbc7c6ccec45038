//! Redis connections. Every service uses one multiplexed, self-reconnecting
//! connection, so concurrent commands are pipelined on one socket.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use herald_config::RedisConfig;

use crate::retry::Backoff;

/// Connects with the URL as it is, retrying until Redis answers or
/// `shutdown` fires.
pub async fn connect(
    cfg: &RedisConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<ConnectionManager> {
    connect_as(cfg, None, shutdown).await
}

/// Connects as `service`'s own ACL user when `redis.credentials_dir` holds
/// its password (else with the URL as it is), retrying until Redis answers
/// or `shutdown` fires.
pub async fn connect_as(
    cfg: &RedisConfig,
    service: Option<&str>,
    shutdown: &CancellationToken,
) -> anyhow::Result<ConnectionManager> {
    use redis::IntoConnectionInfo;
    let mut info = cfg
        .url
        .expose_secret()
        .into_connection_info()
        .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
    if let (Some(dir), Some(service)) = (&cfg.credentials_dir, service) {
        let path = herald_config::redis_password_path(dir, service);
        let password = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "reading the Redis password of {service} from {} (herald setup writes it): {e}",
                path.display()
            )
        })?;
        let settings = info
            .redis_settings()
            .clone()
            .set_username(service)
            .set_password(password.trim());
        info = info.set_redis_settings(settings);
    }
    let client = match &cfg.tls_ca_file {
        // TLS checked against the deployment's own CA.
        Some(ca) => {
            let root = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("reading redis.tls_ca_file {}: {e}", ca.display()))?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
        }
        None => redis::Client::open(info),
    }
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
