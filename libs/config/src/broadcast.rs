//! The `[broadcast]` section: emergency broadcasts — who may start them, how
//! unconfirmed recipients are called again, and where confirmations come
//! back. The key that signs confirmation links is a [`Secret`].

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Secret, checks};

/// The most call cycles a broadcast may have.
pub const MAX_CYCLES: u32 = 20;

/// Emergency broadcasts: who may start them, how unconfirmed recipients are
/// called again, and where confirmations come back. Read by intake (to
/// authorise and validate) and by the broadcast service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BroadcastConfig {
    /// The broadcast service's HTTP port: health, metrics, and the
    /// confirmation endpoints (email link, key press, SMS reply).
    pub http_addr: String,
    /// Where the confirmation endpoints (email link, key press, SMS reply) listen apart from
    /// health and metrics (which stay on `http_addr`, open). Unset, they
    /// share `http_addr`.
    pub public_addr: Option<String>,
    /// The certificate and key (PEM) the public listener serves TLS with.
    pub public_tls_cert_file: Option<PathBuf>,
    pub public_tls_key_file: Option<PathBuf>,
    /// Public base URL leading to the root of `http_addr`; confirmation
    /// links, the call's key-press action and the SMS reply webhook are
    /// under it, and provider signatures are checked against it.
    pub public_url: String,
    /// Key that signs confirmation links (HMAC-SHA256). Required by the
    /// broadcast service; keep it in the environment.
    pub link_secret: Option<Secret>,
    /// Who may start, update and cancel broadcasts. Tokens are never
    /// stored: only their SHA-256, compared in constant time.
    pub coordinators: Vec<Coordinator>,
    /// Defaults for a broadcast that does not set them: time between call
    /// cycles, call cycles in all, and how long it runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub cycles: u32,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Roles a data-breach notification reaches by broadcast (SOP 003 §8).
    pub breach_roles: Vec<String>,
    /// Most people one broadcast may reach.
    pub max_recipients: usize,
    /// Commands and status events handled at once.
    pub concurrency: usize,
    /// As `sla.lease`, for call cycles and a broadcast's end: how long a
    /// claimed timer is this instance's before another takes it over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

/// A coordinator's id and the SHA-256 (hex) of their token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Coordinator {
    pub id: String,
    pub token_sha256: String,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9106".into(),
            public_addr: None,
            public_tls_cert_file: None,
            public_tls_key_file: None,
            public_url: "http://127.0.0.1:9106".into(),
            link_secret: None,
            coordinators: Vec::new(),
            interval: Duration::from_secs(5 * 60),
            cycles: 3,
            duration: Duration::from_secs(3600),
            breach_roles: vec!["dpo".into(), "management".into()],
            max_recipients: 10_000,
            concurrency: 16,
            lease: Duration::from_secs(120),
        }
    }
}

impl BroadcastConfig {
    /// The public listener's settings.
    pub fn public(&self) -> crate::PublicListener {
        crate::PublicListener {
            addr: self.public_addr.clone(),
            tls_cert_file: self.public_tls_cert_file.clone(),
            tls_key_file: self.public_tls_key_file.clone(),
        }
    }

    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("broadcast.http_addr", &self.http_addr, problems);
        checks::public_listener("broadcast", &self.public(), problems);
        checks::url_scheme(
            "broadcast.public_url",
            &self.public_url,
            &["http", "https"],
            problems,
        );
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.coordinators.iter().enumerate() {
            if !herald_proto::subjects::is_subject_token(&c.id) {
                problems.push(format!(
                    "`broadcast.coordinators[{i}].id` must be 1-128 letters, digits or - _ : @ + ="
                ));
            } else if !seen.insert(c.id.as_str()) {
                problems.push(format!(
                    "`broadcast.coordinators[{i}].id` {:?} appears twice",
                    c.id
                ));
            }
            let hex = c.token_sha256.trim();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "`broadcast.coordinators[{i}].token_sha256` must be the 64 hex digits of the token's SHA-256 (`herald broadcast credential` makes one)"
                ));
            }
        }
        checks::more_than_zero(
            &[
                ("broadcast.interval", self.interval),
                ("broadcast.lease", self.lease),
            ],
            problems,
        );
        if !(1..=MAX_CYCLES).contains(&self.cycles) {
            problems.push(format!(
                "`broadcast.cycles` must be between 1 and {MAX_CYCLES}"
            ));
        }
        // A product too large for a Duration is longer than any duration.
        let needed = self.interval.checked_mul(self.cycles.saturating_sub(1));
        if needed.is_none_or(|needed| self.duration < needed) {
            problems.push(
                "`broadcast.duration` must be at least `broadcast.interval` × (`broadcast.cycles` − 1), or the last cycles never run".into(),
            );
        }
        for (i, r) in self.breach_roles.iter().enumerate() {
            if !herald_proto::subjects::is_subject_token(r) {
                problems.push(format!(
                    "`broadcast.breach_roles[{i}]` {r:?} is not a role name (letters, digits, - _)"
                ));
            }
        }
        if self.max_recipients == 0 || self.concurrency == 0 {
            problems.push(
                "`broadcast.max_recipients` and `broadcast.concurrency` must be at least 1".into(),
            );
        }
        if let Some(s) = &self.link_secret
            && s.expose_secret().len() < 16
        {
            problems.push(
                "`broadcast.link_secret` must be at least 16 characters (a long random string)"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Config;
    use crate::tests::env;

    #[test]
    fn broadcast_settings_are_checked_and_coordinators_come_from_the_environment() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_BROADCAST_CYCLES", "0"),
                (
                    "HERALD_BROADCAST_COORDINATORS",
                    r#"[{ id = "anna", token_sha256 = "abc" }]"#,
                ),
                ("HERALD_BROADCAST_PUBLIC_URL", "herald.example.org"),
                ("HERALD_BROADCAST_LINK_SECRET", "short"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in [
            "broadcast.cycles",
            "broadcast.coordinators[0].token_sha256",
            "broadcast.public_url",
            "broadcast.link_secret",
        ] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        let hash = "a".repeat(64);
        let ok = Config::load(
            None,
            env(&[
                (
                    "HERALD_BROADCAST_COORDINATORS",
                    &format!(r#"[{{ id = "anna", token_sha256 = "{hash}" }}]"#),
                ),
                ("HERALD_BROADCAST_INTERVAL", "2m"),
                ("HERALD_BROADCAST_DURATION", "4m"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.broadcast.coordinators[0].id, "anna");
        assert_eq!(ok.broadcast.interval, Duration::from_secs(120));
        let short = Config::load(None, env(&[("HERALD_BROADCAST_DURATION", "1m")]))
            .unwrap_err()
            .to_string();
        assert!(short.contains("broadcast.duration"), "{short}");
    }

    #[test]
    fn an_interval_too_long_to_multiply_is_refused_not_a_panic() {
        let err = Config::load(
            None,
            env(&[("HERALD_BROADCAST_INTERVAL", "2600000000000000h")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("broadcast.duration"), "{err}");
    }
}
