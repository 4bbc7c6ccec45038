//! The `[nats]` section: where the JetStream server is and how Herald's
//! streams and consumers are set up on it. Read by every service.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::checks;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    /// The server, or several servers of one cluster separated by commas
    /// (`tls://n1:4222,tls://n2:4222`). One is enough while it is up: the
    /// client learns the cluster's other servers from it and reconnects to
    /// them when it goes; listing more lets a process start while its
    /// first server is down.
    pub url: String,
    /// The identity this process connects as. Services always connect as
    /// themselves (`intake`, `router`, …); this names the command line's
    /// identity. Empty: each command uses the identity named after the
    /// role it needs (`publisher`, `operator`, `coordinator`, …), as
    /// `herald setup` makes them.
    pub identity: String,
    /// The folder holding each identity's nkey seed as `<name>.nk`, as
    /// `herald setup` writes it (owner-only). Unset, and with no
    /// `nkey_file`, the connection is anonymous, which Herald's shipped
    /// server configuration refuses.
    pub credentials_dir: Option<PathBuf>,
    /// This process's nkey seed, when it is not in `credentials_dir`.
    pub nkey_file: Option<PathBuf>,
    /// The certificate authority that signed the server's certificate.
    /// Set, the connection is TLS and the server must prove its name
    /// against it; unset, the connection is plain unless the URL says
    /// `tls://` (then the system's roots are used).
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Lets the connection be plain text (no `tls_ca_file`, a `nats://`
    /// URL): for a development machine only, chosen on purpose. Without
    /// it a plain-text connection is refused before it is made.
    pub allow_plain: bool,
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
            identity: String::new(),
            credentials_dir: None,
            nkey_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            allow_plain: false,
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
        if self.urls().next().is_none() {
            problems.push("`nats.url` is empty: name at least one server".into());
        }
        for url in self.urls() {
            checks::url_scheme("nats.url", url, &["nats", "tls"], problems);
        }
        if !self.identity.is_empty() && !herald_proto::access::is_identity_name(&self.identity) {
            problems.push(
                "`nats.identity` must be lowercase letters, digits and `-`, starting with a letter"
                    .into(),
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            problems.push(
                "`nats.tls_cert_file` and `nats.tls_key_file` go together: set both or neither"
                    .into(),
            );
        }
        if self.replicas == 0 || self.replicas > 5 {
            problems.push("`nats.replicas` must be between 1 and 5".into());
        }
    }
}

impl NatsConfig {
    /// Whether the connection is TLS: a CA to check the server against, or
    /// a `tls://` URL (the system's roots).
    pub fn is_tls(&self) -> bool {
        self.tls_ca_file.is_some() || self.urls().any(|u| u.starts_with("tls://"))
    }

    /// Each server `url` names, in order, without blanks around the commas.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }

    /// Where the nkey seed of `identity` is: `nkey_file`, else
    /// `<credentials_dir>/<identity>.nk`; `None` for an anonymous
    /// connection.
    pub fn seed_file(&self, identity: &str) -> Option<PathBuf> {
        self.nkey_file.clone().or_else(|| {
            self.credentials_dir
                .as_deref()
                .map(|d| seed_path(d, identity))
        })
    }
}

/// The file `herald setup` keeps the seed of `identity` in.
pub fn seed_path(dir: &Path, identity: &str) -> PathBuf {
    dir.join(format!("{identity}.nk"))
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

    #[test]
    fn a_cluster_is_named_by_its_servers_each_checked() {
        let cluster = NatsConfig {
            url: "tls://127.0.0.1:4222, tls://127.0.0.1:4223,tls://127.0.0.1:4224".into(),
            ..NatsConfig::default()
        };
        let mut problems = Vec::new();
        cluster.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cluster.urls().count(), 3);
        assert!(cluster.is_tls());
        for bad in ["nats://127.0.0.1:4222,http://127.0.0.1:4223", " , "] {
            let mut problems = Vec::new();
            NatsConfig {
                url: bad.into(),
                ..NatsConfig::default()
            }
            .validate(&mut problems);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].contains("nats.url"), "{problems:?}");
        }
    }

    #[test]
    fn an_identity_s_key_is_found_in_the_credentials_folder() {
        let cfg = NatsConfig {
            credentials_dir: Some("/secrets/nats".into()),
            ..NatsConfig::default()
        };
        assert_eq!(
            cfg.seed_file("router"),
            Some(PathBuf::from("/secrets/nats/router.nk"))
        );
        assert_eq!(NatsConfig::default().seed_file("router"), None);
        let mut problems = Vec::new();
        NatsConfig {
            identity: "Not.A.Name".into(),
            tls_cert_file: Some("c.pem".into()),
            ..NatsConfig::default()
        }
        .validate(&mut problems);
        assert!(problems[0].contains("nats.identity"), "{problems:?}");
        assert!(problems[1].contains("nats.tls_key_file"), "{problems:?}");
    }
}
