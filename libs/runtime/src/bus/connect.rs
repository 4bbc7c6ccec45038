//! Connecting to NATS as one identity, retrying until it answers, with
//! JetStream set up for confirmed publishes.
//!
//! Each identity proves itself with its nkey (the server holds only the
//! public key), receives replies on its own inbox prefix (the server lets
//! nobody else subscribe there), and, when a CA is configured, talks TLS
//! and checks the server's certificate.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use herald_config::NatsConfig;
use herald_proto::access;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Bus;
use crate::retry::Backoff;

impl Bus {
    /// Connects as `identity`, retrying until NATS answers or `shutdown`
    /// fires. A refused credential is not retried: it will not get better.
    pub async fn connect(
        cfg: &NatsConfig,
        identity: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Bus> {
        if !cfg.is_tls() && !cfg.allow_plain {
            anyhow::bail!(
                "refusing a plain-text connection to NATS at {}: set nats.tls_ca_file (herald setup writes one), or nats.allow_plain = true on a development machine",
                cfg.url
            );
        }
        let seed = read_seed(cfg, identity)?;
        // Every server named: the first that answers tells of the rest of
        // its cluster, and the client moves among them all on reconnects.
        let servers = cfg
            .urls()
            .map(|u| {
                u.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("nats.url: {u:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let opts = options(cfg, identity, seed.clone());
            match opts.connect(servers.clone()).await {
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
                        identity: identity.to_string(),
                    });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::ConnectErrorKind::AuthorizationViolation
                            | async_nats::ConnectErrorKind::Authentication
                    ) =>
                {
                    anyhow::bail!(
                        "NATS refused the credential of {identity:?} ({e}); check nats.credentials_dir or nats.nkey_file (herald setup writes them)"
                    );
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

/// The nkey seed of `identity`, if the configuration names one.
fn read_seed(cfg: &NatsConfig, identity: &str) -> anyhow::Result<Option<String>> {
    let Some(path) = cfg.seed_file(identity) else {
        return Ok(None);
    };
    let seed = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the NATS key of {identity:?} from {} (herald setup writes it)",
            path.display()
        )
    })?;
    Ok(Some(seed.trim().to_string()))
}

/// The connection options of `identity`: its name, its key, its inbox, TLS.
fn options(cfg: &NatsConfig, identity: &str, seed: Option<String>) -> async_nats::ConnectOptions {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("herald-{identity}"))
        .custom_inbox_prefix(access::inbox_prefix(identity))
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .client_capacity(65_536)
        .reconnect_delay_callback(|attempts| {
            Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
                .nth(u32::try_from(attempts).unwrap_or(u32::MAX))
        });
    if let Some(seed) = seed {
        opts = opts.nkey(seed);
    }
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    opts
}
