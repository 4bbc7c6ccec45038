//! Layered configuration: compiled-in defaults, then an optional TOML file,
//! then `HERALD_<SECTION>_<KEY>` environment variables.
//!
//! The environment is passed in rather than read here, so tests can load a
//! configuration without touching the process environment. Every problem
//! (unknown keys, values of the wrong type, invalid values) is collected and
//! reported at once, so an operator fixes a file in one pass.
//!
//! Each section lives in its own module with its defaults and its checks;
//! rules that relate sections are in `across_sections`, and how the file and
//! the environment are layered over the defaults is in `layers`. Passwords,
//! keys and URLs that may carry them are [`Secret`]s, redacted when printed.
//!
//! `config/herald.example.toml` documents every key.

mod across_sections;
mod approvals;
mod broadcast;
mod checks;
mod content;
mod delivery;
mod escalation;
mod intake;
mod integrations;
mod layers;
mod nats;
mod redis;
mod reports;
mod retention;
mod router;
mod secret;
mod sla;
mod telemetry;

use std::{fmt, path::Path, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use approvals::{ApprovalRule, ApprovalsConfig};
pub use broadcast::{BroadcastConfig, Coordinator, MAX_CYCLES};
pub use content::ContentConfig;
pub use delivery::{DeliveryConfig, EncryptedFrom};
pub use escalation::EscalationConfig;
pub use intake::{IntakeConfig, SystemKeys};
pub use integrations::{Integration, IntegrationKind};
pub use nats::{NatsConfig, seed_path};
pub use redis::{RedisConfig, SentinelUrl, redis_password_path};
pub use reports::{CADENCES, ClientReport, ReportsConfig, WEEKDAYS, parse_date, parse_hh_mm};
pub use retention::RetentionConfig;
pub use router::RouterConfig;
pub use secret::Secret;

/// Where a service's public endpoints (provider callbacks, confirmation
/// links) listen when they are not on its health-and-metrics port, and
/// the TLS certificate they are served with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicListener {
    pub addr: Option<String>,
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
}
pub use sla::SlaConfig;
pub use telemetry::{LogFormat, TelemetryConfig};

/// The whole system's configuration. Each service reads its own section and
/// the shared ones (`nats`, `redis`, `telemetry`, `content`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub content: ContentConfig,
    pub intake: IntakeConfig,
    pub router: RouterConfig,
    pub delivery: DeliveryConfig,
    pub broadcast: BroadcastConfig,
    pub sla: SlaConfig,
    pub escalation: EscalationConfig,
    pub approvals: ApprovalsConfig,
    pub reports: ReportsConfig,
    pub retention: RetentionConfig,
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Loads the configuration from the optional file and the given
    /// environment (pass `std::env::vars()` in a binary).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut table = match toml::Table::try_from(Config::default()) {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("defaults: {e}")],
                });
            }
        };
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(t) => layers::merge(&mut table, t),
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                },
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        layers::apply_env(&mut table, env, &mut problems);

        let mut unknown = Vec::new();
        let config: Option<Config> =
            match serde_ignored::deserialize(toml::Value::Table(table), |path| {
                unknown.push(path.to_string())
            }) {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            };
        for key in unknown {
            problems.push(format!("unknown key `{key}`"));
        }
        if let Some(c) = &config {
            c.validate(&mut problems);
        }
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(ConfigError { problems }),
        }
    }

    /// Loads from `HERALD_CONFIG` (if set) and the process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        let file = std::env::var_os("HERALD_CONFIG").map(PathBuf::from);
        Config::load(file.as_deref(), std::env::vars())
    }

    /// Each section's own checks, then those that relate sections.
    fn validate(&self, problems: &mut Vec<String>) {
        self.nats.validate(problems);
        self.redis.validate(problems);
        self.intake.validate(problems);
        self.router.validate(problems);
        self.delivery.validate(problems);
        self.broadcast.validate(problems);
        self.sla.validate(problems);
        self.escalation.validate(problems);
        self.approvals.validate(problems);
        self.reports.validate(problems);
        self.retention.validate(problems);
        across_sections::validate(self, problems);
    }
}

/// The text of a rules file shipped in `config/` and compiled in, or of
/// the file a deployment gives instead, with the name to report problems
/// under. `what` names it for people ("SLA policies").
pub fn built_in_or_file(
    path: Option<&Path>,
    built_in: &'static str,
    what: &str,
) -> Result<(std::borrow::Cow<'static, str>, String), Vec<String>> {
    match path {
        None => Ok((built_in.into(), format!("built-in {what}"))),
        Some(p) => std::fs::read_to_string(p)
            .map(|t| (t.into(), p.display().to_string()))
            .map_err(|e| vec![format!("{}: {e}", p.display())]),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_a_file() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert!(c.delivery.smtp_url.is_none());
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/herald.example.toml");
        let loaded = Config::load(Some(&example), env(&[])).unwrap();
        assert_eq!(
            toml::to_string(&loaded).unwrap(),
            toml::to_string(&Config::default()).unwrap()
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[nats]\nurl = \"http://x\"\nsurl = 1\n[router]\ncolour = \"red\"\nhttp_addr = \"nowhere\"\n",
        )
        .unwrap();
        let err =
            Config::load(Some(&file), env(&[("HERALD_INTAKE_CONCURRENCY", "many")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("nats.surl"), "{text}");
        assert!(text.contains("router.colour"), "{text}");
        assert!(text.contains("nats.url"), "{text}");
        assert!(text.contains("router.http_addr"), "{text}");
        assert!(text.contains("HERALD_INTAKE_CONCURRENCY"), "{text}");
    }

    const SECRETS: [(&str, &str); 5] = [
        ("HERALD_REDIS_URL", "redis://:redis-pass-7f3a@redis:6379/0"),
        (
            "HERALD_DELIVERY_SMTP_URL",
            "smtps://herald:smtp-pass-9c1e@mail.example:465",
        ),
        ("HERALD_DELIVERY_PROVIDER_TOKEN", "provider-token-51d0e8"),
        ("HERALD_BROADCAST_LINK_SECRET", "link-secret-0b6f2a4c"),
        ("HERALD_ESCALATION_SURVEY_SECRET", "survey-secret-d83e17a9"),
    ];

    #[test]
    fn printing_a_config_shows_none_of_its_secrets() {
        let mut vars = env(&SECRETS);
        vars.push(("HERALD_DELIVERY_PROVIDER_ACCOUNT".into(), "AC123".into()));
        let c = Config::load(None, vars).unwrap();
        let printed = format!("{c:?}\n{c:#?}");
        for (name, value) in SECRETS {
            assert!(!printed.contains(value), "{name} printed: {printed}");
        }
        for needle in ["redis-pass", "smtp-pass"] {
            assert!(!printed.contains(needle), "{needle} printed: {printed}");
        }
        assert!(printed.contains("[redacted]"), "{printed}");
        // Still there for the code that uses them, and for a child process.
        assert_eq!(c.redis.url.expose_secret(), SECRETS[0].1);
        let written = toml::to_string(&c).unwrap();
        let reread: Config = toml::from_str(&written).unwrap();
        assert_eq!(
            reread
                .broadcast
                .link_secret
                .as_ref()
                .map(Secret::expose_secret),
            Some(SECRETS[3].1)
        );
    }

    #[test]
    fn a_bad_secret_is_named_but_not_shown() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_REDIS_URL", "http://:redis-pass-7f3a@redis:6379"),
                ("HERALD_DELIVERY_SMTP_URL", "mail://u:smtp-pass-9c1e@mail"),
                ("HERALD_ESCALATION_SURVEY_SECRET", "short-d83e"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in ["redis.url", "delivery.smtp_url", "escalation.survey_secret"] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        for value in ["redis-pass", "smtp-pass", "short-d83e"] {
            assert!(!err.contains(value), "{value} shown in: {err}");
        }
        // A variable that reads as a number is not a string: refused, and
        // not repeated.
        let err = Config::load(
            None,
            env(&[("HERALD_DELIVERY_PROVIDER_TOKEN", "7461203958")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("provider_token"), "{err}");
        assert!(!err.contains("7461203958"), "{err}");
    }
}
