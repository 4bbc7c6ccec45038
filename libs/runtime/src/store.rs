//! Redis connections. Every service uses one multiplexed, self-reconnecting
//! connection, so concurrent commands are pipelined on one socket, sent
//! without delay (`TCP_NODELAY`). A `redis+sentinel://` URL connects
//! through [`crate::sentinel`], which follows the primary.

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

/// Where and how to connect: the URL, as `service`'s own ACL user when
/// `redis.credentials_dir` holds its password, and with `TCP_NODELAY` on.
/// Redis traffic is request and reply, many small commands from many tasks
/// on one multiplexed socket; with Nagle's algorithm (redis-rs's default) a
/// command written while an earlier one is unanswered waits for that
/// reply's acknowledgement before it leaves.
fn connection_info(
    cfg: &RedisConfig,
    service: Option<&str>,
) -> anyhow::Result<redis::ConnectionInfo> {
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
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(tcp))
}

/// Connects as `service`'s own ACL user when `redis.credentials_dir` holds
/// its password (else with the URL as it is), retrying until Redis answers
/// or `shutdown` fires.
pub async fn connect_as(
    cfg: &RedisConfig,
    service: Option<&str>,
    shutdown: &CancellationToken,
) -> anyhow::Result<ConnectionManager> {
    let forwarded;
    let cfg = if cfg.is_sentinel() {
        forwarded = RedisConfig {
            url: crate::sentinel::forward(cfg).await?.into(),
            ..cfg.clone()
        };
        &forwarded
    } else {
        cfg
    };
    let info = connection_info(cfg, service)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_string().into(),
            ..RedisConfig::default()
        }
    }

    #[test]
    fn connections_send_each_command_at_once_without_nagle() {
        for url in ["redis://127.0.0.1:6379/0", "rediss://redis.internal:6380"] {
            let info = connection_info(&cfg(url), None).unwrap();
            assert!(info.tcp_settings().nodelay(), "{url}");
        }
    }

    #[test]
    fn a_service_connects_as_its_own_user_with_the_password_setup_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = herald_config::redis_password_path(dir.path(), "router");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut c = cfg("redis://127.0.0.1:6379/0");
        c.credentials_dir = Some(dir.path().to_path_buf());
        let info = connection_info(&c, Some("router")).unwrap();
        assert_eq!(info.redis_settings().username(), Some("router"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert!(info.tcp_settings().nodelay());
    }
}
