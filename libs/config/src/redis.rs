//! The `[redis]` section: the store every service keeps its state in. Its
//! URL may carry a password, so it is a [`Secret`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Secret, checks};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS) or `unix://`, optionally with
    /// `:password@` or `user:password@`.
    pub url: Secret,
    /// Prefix of every key Herald writes, so one Redis can serve several
    /// deployments.
    pub prefix: String,
    /// The folder holding each service's Redis password as
    /// `<service>.password`, as `herald setup` writes it. Set, a service
    /// connects as the ACL user named after it with that password,
    /// whatever user the URL names; the command line and tools use the
    /// URL as it is.
    pub credentials_dir: Option<PathBuf>,
    /// The certificate authority that signed the Redis server's
    /// certificate, for a `rediss://` URL (unset: the system's roots).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald:".into(),
            credentials_dir: None,
            tls_ca_file: None,
        }
    }
}

impl RedisConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::secret_url_scheme(
            "redis.url",
            &self.url,
            &["redis", "rediss", "unix"],
            problems,
        );
        if self.tls_ca_file.is_some() && !self.url.expose_secret().starts_with("rediss://") {
            problems.push(
                "`redis.tls_ca_file` is for a TLS connection: the URL must start with rediss://"
                    .into(),
            );
        }
    }
}

/// The file `herald setup` keeps the Redis password of `service` in.
pub fn redis_password_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let mut problems = Vec::new();
        RedisConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = RedisConfig {
            url: "http://:s3cret-pass@redis:6379".into(),
            ..RedisConfig::default()
        };
        bad.validate(&mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("redis.url"), "{problems:?}");
        assert!(!problems[0].contains("s3cret-pass"), "{problems:?}");
    }
}
