//! The `[redis]` section: the store every service keeps its state in. Its
//! URL may carry a password, so it is a [`Secret`].
//!
//! Redis that must survive losing a machine is a primary with replicas
//! watched by Sentinels; the URL then names the Sentinels and the primary's
//! name among them, `redis+sentinel://[user:password@]host:port[,host:port…]/<name>[/<db>]`,
//! and every connection goes to whichever server the Sentinels say is the
//! primary at the moment it is made (see `herald_runtime::sentinel`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Secret, checks};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS) or `unix://`, optionally with
    /// `:password@` or `user:password@`; or
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/<name>[/<db>]`
    /// for the primary the Sentinels at those addresses know as `<name>`
    /// (the user and password are the data servers', not the Sentinels').
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
    /// The user Sentinel knows Herald as (unset: Sentinel's default user),
    /// for a `redis+sentinel://` URL.
    pub sentinel_username: Option<String>,
    /// Its password (unset: Sentinel asks for none).
    pub sentinel_password: Option<Secret>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald:".into(),
            credentials_dir: None,
            tls_ca_file: None,
            sentinel_username: None,
            sentinel_password: None,
        }
    }
}

impl RedisConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::secret_url_scheme(
            "redis.url",
            &self.url,
            &["redis", "rediss", "unix", SENTINEL_SCHEME],
            problems,
        );
        if self.url.expose_secret().starts_with(SENTINEL_SCHEME) {
            if let Err(e) = self.sentinel_url() {
                problems.push(format!(
                    "`redis.url`: {e} (the value is not shown, as it may hold a password)"
                ));
            }
            if self.tls_ca_file.is_some() {
                problems.push(
                    "`redis.tls_ca_file`: a redis+sentinel:// connection is not TLS; \
                     reach Sentinel and the servers over a private network"
                        .into(),
                );
            }
        } else if self.sentinel_username.is_some() || self.sentinel_password.is_some() {
            problems.push(
                "`redis.sentinel_username` and `redis.sentinel_password` are for a \
                 redis+sentinel:// URL"
                    .into(),
            );
        }
        if self.tls_ca_file.is_some() && !self.url.expose_secret().starts_with("rediss://") {
            problems.push(
                "`redis.tls_ca_file` is for a TLS connection: the URL must start with rediss://"
                    .into(),
            );
        }
    }
}

/// The scheme of a URL naming Sentinels rather than a server.
pub const SENTINEL_SCHEME: &str = "redis+sentinel";

/// A `redis+sentinel://` URL, read.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelUrl {
    /// Each Sentinel's host and port, in the order named.
    pub sentinels: Vec<(String, u16)>,
    /// The primary's name among the Sentinels (`sentinel monitor <name> …`).
    pub primary: String,
    /// The data servers' user and password, as a `redis://` URL carries them.
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

impl RedisConfig {
    /// Whether the URL names Sentinels.
    pub fn is_sentinel(&self) -> bool {
        self.url
            .expose_secret()
            .starts_with(&format!("{SENTINEL_SCHEME}://"))
    }

    /// The URL read as `redis+sentinel://`; the error names what is wrong
    /// without quoting the URL.
    pub fn sentinel_url(&self) -> Result<SentinelUrl, String> {
        let url = self.url.expose_secret();
        let rest = url
            .strip_prefix(&format!("{SENTINEL_SCHEME}://"))
            .ok_or("not a redis+sentinel:// URL")?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (username, password) = match auth.map(|a| a.split_once(':').unwrap_or((a, ""))) {
            Some((u, p)) => (
                (!u.is_empty()).then(|| u.to_string()),
                (!p.is_empty()).then(|| p.to_string()),
            ),
            None => (None, None),
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("a redis+sentinel:// URL ends in /<primary name>")?;
        let sentinels = hosts
            .split(',')
            .map(|h| {
                let (host, port) = h.rsplit_once(':').ok_or("each Sentinel is host:port")?;
                let port = port.parse().map_err(|_| "a Sentinel's port is a number")?;
                if host.is_empty() {
                    return Err("each Sentinel is host:port");
                }
                Ok((host.to_string(), port))
            })
            .collect::<Result<Vec<_>, &str>>()?;
        let mut parts = path.split('/');
        let primary = parts.next().unwrap_or_default().to_string();
        if primary.is_empty() {
            return Err("a redis+sentinel:// URL ends in /<primary name>".into());
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d
                .parse()
                .map_err(|_| "the database after the primary's name is a number")?,
        };
        if parts.next().is_some() {
            return Err("a redis+sentinel:// URL's path is /<primary name>[/<db>]".into());
        }
        Ok(SentinelUrl {
            sentinels,
            primary,
            username,
            password,
            db,
        })
    }
}

/// The file `herald setup` keeps the Redis password of `service` in.
pub fn redis_password_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        }
    }

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_primary_and_the_servers_user() {
        let c = sentinel("redis+sentinel://router:pw@127.0.0.1:26379,127.0.0.1:26380/herald/2");
        let mut problems = Vec::new();
        c.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(c.is_sentinel());
        assert_eq!(
            c.sentinel_url(),
            Ok(SentinelUrl {
                sentinels: vec![("127.0.0.1".into(), 26379), ("127.0.0.1".into(), 26380)],
                primary: "herald".into(),
                username: Some("router".into()),
                password: Some("pw".into()),
                db: 2,
            })
        );
        let bare = sentinel("redis+sentinel://127.0.0.1:26379/herald").sentinel_url();
        assert_eq!(bare.map(|u| (u.username, u.db)), Ok((None, 0)));
    }

    #[test]
    fn a_bad_sentinel_url_or_setting_is_named_without_the_password() {
        for bad in [
            "redis+sentinel://u:s3cret-pass@127.0.0.1:26379",
            "redis+sentinel://u:s3cret-pass@127.0.0.1/herald",
            "redis+sentinel://u:s3cret-pass@127.0.0.1:x/herald",
            "redis+sentinel://u:s3cret-pass@127.0.0.1:26379/herald/x",
            "redis+sentinel://u:s3cret-pass@:26379/herald",
        ] {
            let mut problems = Vec::new();
            sentinel(bad).validate(&mut problems);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].contains("redis.url"), "{problems:?}");
            assert!(!problems[0].contains("s3cret-pass"), "{problems:?}");
        }
        let mut problems = Vec::new();
        RedisConfig {
            sentinel_username: Some("herald".into()),
            ..RedisConfig::default()
        }
        .validate(&mut problems);
        assert!(problems[0].contains("sentinel_username"), "{problems:?}");
        let mut problems = Vec::new();
        RedisConfig {
            tls_ca_file: Some("ca.pem".into()),
            ..sentinel("redis+sentinel://127.0.0.1:26379/herald")
        }
        .validate(&mut problems);
        assert!(
            problems.iter().any(|p| p.contains("tls_ca_file")),
            "{problems:?}"
        );
    }

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
