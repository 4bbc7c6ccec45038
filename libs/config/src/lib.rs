//! Layered configuration: compiled-in defaults, then an optional TOML file,
//! then `HERALD_<SECTION>_<KEY>` environment variables.
//!
//! The environment is passed in rather than read here, so tests can load a
//! configuration without touching the process environment. Every problem
//! (unknown keys, values of the wrong type, invalid values) is collected and
//! reported at once, so an operator fixes a file in one pass.
//!
//! `config/herald.example.toml` documents every key.

use std::{collections::BTreeMap, fmt, path::Path, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    pub url: String,
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
            replicas: 1,
            duplicate_window: Duration::from_secs(10 * 60),
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            ack_wait: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key Herald writes, so one Redis can serve several
    /// deployments.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald:".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// How often a service asks JetStream for the depth of its streams and
    /// the lag of its consumers (the `herald_stream_*` and
    /// `herald_consumer_*` gauges).
    #[serde(with = "humantime_serde")]
    pub queue_poll_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Plain,
            log_level: "info".into(),
            queue_poll_interval: Duration::from_secs(5),
        }
    }
}

/// Templates and routing rules, read by intake (to validate) and the router
/// (to render and route).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ContentConfig {
    /// Folder of versioned templates: `<template_id>/v<N>.toml`.
    pub templates_dir: PathBuf,
    /// Routing rules; the rules shipped in `config/routing.toml` are compiled
    /// in and used when this is empty.
    pub routing_file: Option<PathBuf>,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            templates_dir: PathBuf::from("config/templates"),
            routing_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IntakeConfig {
    /// gRPC listener (tonic, with reflection and health).
    pub grpc_addr: String,
    /// Health and metrics listener.
    pub http_addr: String,
    /// Largest encoded request accepted, in bytes.
    pub max_payload_bytes: usize,
    pub max_recipients: usize,
    /// How long an idempotency key is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Requests handled at once per lane.
    pub concurrency: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:9101".into(),
            max_payload_bytes: 64 * 1024,
            max_recipients: 1000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            concurrency: 512,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    pub http_addr: String,
    /// Notifications routed at once per lane.
    pub concurrency: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9102".into(),
            concurrency: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    pub http_addr: String,
    /// Jobs sent at once per lane.
    pub concurrency: usize,
    /// Where messages go when a channel has no endpoint configured.
    pub outbox_dir: PathBuf,
    /// `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://host:port` (TLS), optionally with
    /// `user:password@`. Empty: emails go to the outbox.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// PEM certificates to trust for SMTP over TLS besides the public web
    /// roots: the authority of a private relay.
    pub smtp_ca_file: Option<PathBuf>,
    /// Pooled SMTP connections.
    pub smtp_pool_size: u32,
    /// Provider endpoint for SMS (form-encoded To, From, Body,
    /// StatusCallback). Empty: SMS go to the outbox.
    pub sms_url: Option<String>,
    pub sms_from: String,
    /// Provider endpoint for calls (form-encoded To, From, Twiml,
    /// StatusCallback). Empty: calls go to the outbox.
    pub voice_url: Option<String>,
    pub voice_from: String,
    /// Basic-auth account id and secret for the SMS and voice provider; the
    /// secret also signs status callbacks.
    pub provider_account: Option<String>,
    pub provider_token: Option<String>,
    /// Public base URL of the status-callback endpoint given to providers.
    pub status_callback_base: Option<String>,
    /// Time limit for one attempt.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Delays before the 2nd, 3rd, ... attempt of a transient failure.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// After this long since a job was created, a transient failure is
    /// treated as permanent (fallback or dead letter).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// How long a job is remembered as sent, so a redelivery never sends it
    /// again.
    #[serde(with = "humantime_serde")]
    pub sent_ttl: Duration,
    /// Messages per second handed to each provider, paced through Redis so
    /// the figure holds across every delivery instance; 0 means no limit.
    /// Messages over the rate wait their turn; none is dropped.
    pub email_rate: f64,
    pub sms_rate: f64,
    pub voice_rate: f64,
    /// Requests in flight at once to the SMS and the voice provider, per
    /// delivery instance (email is bounded by `smtp_pool_size`).
    pub sms_connections: usize,
    pub voice_connections: usize,
    /// Per-person limits: at most `contact_max_<channel>` messages on that
    /// channel to one person within `contact_window`; 0 means no limit.
    /// Later messages wait for the window to make room. The emergency lane
    /// is never held back.
    #[serde(with = "humantime_serde")]
    pub contact_window: Duration,
    pub contact_max_email: u32,
    pub contact_max_sms: u32,
    pub contact_max_voice: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9103".into(),
            concurrency: 256,
            outbox_dir: PathBuf::from("run/outbox"),
            smtp_url: None,
            smtp_from: "Herald <herald@localhost>".into(),
            smtp_ca_file: None,
            smtp_pool_size: 16,
            sms_url: None,
            sms_from: "+15550100000".into(),
            voice_url: None,
            voice_from: "+15550100000".into(),
            provider_account: None,
            provider_token: None,
            status_callback_base: None,
            attempt_timeout: Duration::from_secs(15),
            retry_schedule: [1, 5, 30, 120, 600, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            give_up_after: Duration::from_secs(6 * 3600),
            sent_ttl: Duration::from_secs(7 * 24 * 3600),
            email_rate: 0.0,
            sms_rate: 0.0,
            voice_rate: 0.0,
            sms_connections: 32,
            voice_connections: 32,
            contact_window: Duration::from_secs(15 * 60),
            contact_max_email: 0,
            contact_max_sms: 5,
            contact_max_voice: 3,
        }
    }
}

impl DeliveryConfig {
    /// Retry, time-limit and rate-limit settings that would make delivery
    /// drop work or never stop retrying.
    fn validate(&self, problems: &mut Vec<String>) {
        if self.retry_schedule.is_empty() {
            problems.push(
                "`delivery.retry_schedule` is empty: give at least one delay, or transient failures are never retried".into(),
            );
        }
        if self.give_up_after.is_zero() {
            problems.push("`delivery.give_up_after` must be more than zero".into());
        }
        if self.sent_ttl < self.give_up_after {
            problems.push(
                "`delivery.sent_ttl` must be at least `delivery.give_up_after`, or a late redelivery could send a job twice".into(),
            );
        }
        for (key, rate) in [
            ("delivery.email_rate", self.email_rate),
            ("delivery.sms_rate", self.sms_rate),
            ("delivery.voice_rate", self.voice_rate),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                problems.push(format!(
                    "`{key}` = {rate}: expected messages per second, 0 or more"
                ));
            }
        }
        for (key, n) in [
            ("delivery.sms_connections", self.sms_connections),
            ("delivery.voice_connections", self.voice_connections),
            ("delivery.smtp_pool_size", self.smtp_pool_size as usize),
        ] {
            if n == 0 {
                problems.push(format!("`{key}` must be at least 1"));
            }
        }
        let limited = self.contact_max_email + self.contact_max_sms + self.contact_max_voice > 0;
        if limited && self.contact_window.is_zero() {
            problems.push(
                "`delivery.contact_window` must be more than zero while a `delivery.contact_max_*` limit is set".into(),
            );
        }
    }
}

/// Emergency broadcasts: who may start them, how unconfirmed recipients are
/// called again, and where confirmations come back. Read by intake (to
/// authorise and validate) and by the broadcast service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BroadcastConfig {
    /// The broadcast service's HTTP port: health, metrics, and the
    /// confirmation endpoints (email link, key press, SMS reply).
    pub http_addr: String,
    /// Public base URL leading to the root of `http_addr`; confirmation
    /// links, the call's key-press action and the SMS reply webhook are
    /// under it, and provider signatures are checked against it.
    pub public_url: String,
    /// Key that signs confirmation links (HMAC-SHA256). Required by the
    /// broadcast service; keep it in the environment.
    pub link_secret: Option<String>,
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
            public_url: "http://127.0.0.1:9106".into(),
            link_secret: None,
            coordinators: Vec::new(),
            interval: Duration::from_secs(5 * 60),
            cycles: 3,
            duration: Duration::from_secs(3600),
            breach_roles: vec!["dpo".into(), "management".into()],
            max_recipients: 10_000,
            concurrency: 16,
        }
    }
}

/// The sla service: response-time clocks on business-hours calendars.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SlaConfig {
    pub http_addr: String,
    /// SLA policies; the policies shipped in `config/sla.toml` (the SOPs'
    /// response times) are compiled in and used when this is empty.
    pub policy_file: Option<PathBuf>,
    /// Business-hours calendars and which team uses which; the calendars
    /// shipped in `config/calendars.toml` are used when this is empty.
    pub calendars_file: Option<PathBuf>,
    /// Timer loops per instance, each claiming `batch` due clocks at a time.
    pub runners: usize,
    pub batch: usize,
    /// How long a claimed clock is this instance's before another takes it
    /// over; shorter than `nats.duplicate_window`, which drops a repeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The longest a timer loop sleeps without looking at Redis.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9104".into(),
            policy_file: None,
            calendars_file: None,
            runners: 2,
            batch: 500,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
        }
    }
}

/// The most call cycles a broadcast may have.
pub const MAX_CYCLES: u32 = 20;

impl BroadcastConfig {
    fn validate(&self, problems: &mut Vec<String>) {
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
        if self.interval.is_zero() {
            problems.push("`broadcast.interval` must be more than zero".into());
        }
        if !(1..=MAX_CYCLES).contains(&self.cycles) {
            problems.push(format!(
                "`broadcast.cycles` must be between 1 and {MAX_CYCLES}"
            ));
        }
        if self.duration < self.interval * self.cycles.saturating_sub(1) {
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
            && s.len() < 16
        {
            problems.push(
                "`broadcast.link_secret` must be at least 16 characters (a long random string)"
                    .into(),
            );
        }
    }
}

/// The escalation service: escalation policies and the follow-up after
/// resolution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EscalationConfig {
    pub http_addr: String,
    /// Escalation policies and the follow-up; the ones shipped in
    /// `config/escalation.toml` are used when this is empty.
    pub policy_file: Option<PathBuf>,
    /// Where the follow-up survey is answered; each client gets a signed
    /// link `<survey_url>?case=<id>&token=<hmac>`.
    pub survey_url: String,
    /// Signs survey links (HMAC-SHA256); required to start the service.
    /// Keep it in the environment: `HERALD_ESCALATION_SURVEY_SECRET`.
    pub survey_secret: Option<String>,
    /// As `sla.lease` and `sla.poll`, for escalation and follow-up timers.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9105".into(),
            policy_file: None,
            survey_url: "https://feedback.example.org/survey".into(),
            survey_secret: None,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
        }
    }
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
                    Ok(t) => merge(&mut table, t),
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                },
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        apply_env(&mut table, env, &mut problems);

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

    fn validate(&self, problems: &mut Vec<String>) {
        let url_scheme = |key: &str, value: &str, schemes: &[&str], problems: &mut Vec<String>| {
            if !schemes
                .iter()
                .any(|s| value.starts_with(&format!("{s}://")))
            {
                problems.push(format!(
                    "`{key}` = {value:?}: expected a URL starting with {}",
                    schemes
                        .iter()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
        };
        url_scheme("nats.url", &self.nats.url, &["nats", "tls"], problems);
        url_scheme(
            "redis.url",
            &self.redis.url,
            &["redis", "rediss", "unix"],
            problems,
        );
        if self.nats.replicas == 0 || self.nats.replicas > 5 {
            problems.push("`nats.replicas` must be between 1 and 5".into());
        }
        for (key, addr) in [
            ("intake.grpc_addr", &self.intake.grpc_addr),
            ("intake.http_addr", &self.intake.http_addr),
            ("router.http_addr", &self.router.http_addr),
            ("delivery.http_addr", &self.delivery.http_addr),
            ("broadcast.http_addr", &self.broadcast.http_addr),
            ("sla.http_addr", &self.sla.http_addr),
            ("escalation.http_addr", &self.escalation.http_addr),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                problems.push(format!(
                    "`{key}` = {addr:?}: expected host:port, e.g. 127.0.0.1:9101"
                ));
            }
        }
        for (key, n) in [
            ("intake.concurrency", self.intake.concurrency),
            ("router.concurrency", self.router.concurrency),
            ("delivery.concurrency", self.delivery.concurrency),
            ("intake.max_recipients", self.intake.max_recipients),
            ("intake.max_payload_bytes", self.intake.max_payload_bytes),
            ("sla.runners", self.sla.runners),
            ("sla.batch", self.sla.batch),
        ] {
            if n == 0 {
                problems.push(format!("`{key}` must be at least 1"));
            }
        }
        if let Some(url) = &self.delivery.smtp_url {
            url_scheme("delivery.smtp_url", url, &["smtp", "smtps"], problems);
        }
        for (key, url) in [
            ("delivery.sms_url", &self.delivery.sms_url),
            ("delivery.voice_url", &self.delivery.voice_url),
            (
                "delivery.status_callback_base",
                &self.delivery.status_callback_base,
            ),
        ] {
            if let Some(url) = url {
                url_scheme(key, url, &["http", "https"], problems);
            }
        }
        if self.delivery.provider_account.is_some() != self.delivery.provider_token.is_some() {
            problems.push(
                "`delivery.provider_account` and `delivery.provider_token` must be set together"
                    .into(),
            );
        }
        if self.delivery.attempt_timeout.is_zero() {
            problems.push("`delivery.attempt_timeout` must be more than zero".into());
        }
        self.delivery.validate(problems);
        url_scheme(
            "broadcast.public_url",
            &self.broadcast.public_url,
            &["http", "https"],
            problems,
        );
        self.broadcast.validate(problems);
        for (key, lease) in [
            ("sla.lease", self.sla.lease),
            ("escalation.lease", self.escalation.lease),
        ] {
            if lease.is_zero() || lease >= self.nats.duplicate_window {
                problems.push(format!(
                    "`{key}` must be more than zero and shorter than `nats.duplicate_window`, or a timer taken over after a crash could fire twice"
                ));
            }
        }
        for (key, poll) in [
            ("sla.poll", self.sla.poll),
            ("escalation.poll", self.escalation.poll),
        ] {
            if poll.is_zero() {
                problems.push(format!("`{key}` must be more than zero"));
            }
        }
        url_scheme(
            "escalation.survey_url",
            &self.escalation.survey_url,
            &["http", "https"],
            problems,
        );
        if self
            .escalation
            .survey_secret
            .as_deref()
            .is_some_and(|s| s.len() < 16)
        {
            problems.push("`escalation.survey_secret` must be at least 16 characters".into());
        }
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

/// A list of durations written the human way: `["1s", "5s", "30s"]`.
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(
                &humantime_serde::re::humantime::format_duration(*d).to_string(),
            )?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        items
            .iter()
            .map(|s| {
                humantime_serde::re::humantime::parse_duration(s)
                    .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
            })
            .collect()
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else
/// replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `HERALD_DELIVERY_SMTP_URL=…` sets `delivery.smtp_url`. Variables whose
/// second word is not a section (such as `HERALD_CONFIG`) are left alone.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) {
    let vars: BTreeMap<String, String> = env.into_iter().collect();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("HERALD_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let Some(toml::Value::Table(section_table)) = table.get_mut(section) else {
            continue;
        };
        let value = match section_table.get(key) {
            Some(existing) => coerce(existing, &raw),
            None => infer(&raw),
        };
        match value {
            Ok(v) => {
                section_table.insert(key.to_string(), v);
            }
            Err(why) => problems.push(format!("{name}: {why}")),
        }
    }
}

/// Reads an environment value as the type the default has.
fn coerce(existing: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    use toml::Value as V;
    match existing {
        V::String(_) => Ok(V::String(raw.to_string())),
        V::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(V::Integer)
            .map_err(|_| format!("expected a whole number, got {raw:?}")),
        V::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => Ok(V::Boolean(true)),
            "false" | "0" | "no" => Ok(V::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        V::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(V::Float)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        V::Array(_) => infer(raw).map(|v| match v {
            V::Array(_) => v,
            _ => V::Array(
                raw.split(',')
                    .map(|s| V::String(s.trim().to_string()))
                    .collect(),
            ),
        }),
        _ => infer(raw),
    }
}

/// Reads an environment value whose key has no default (an optional key):
/// a TOML literal if it is one, else a string.
fn infer(raw: &str) -> Result<toml::Value, String> {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => Ok(t.remove("v").unwrap_or(toml::Value::String(raw.into()))),
        Err(_) => Ok(toml::Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[nats]\nurl = \"nats://127.0.0.1:1\"\n[delivery]\nconcurrency = 8\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("HERALD_NATS_URL", "nats://127.0.0.1:2"),
                ("HERALD_DELIVERY_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("HERALD_INTAKE_IDEMPOTENCY_TTL", "2h"),
                ("HERALD_CONFIG", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:2");
        assert_eq!(c.delivery.concurrency, 8);
        assert_eq!(
            c.delivery.smtp_url.as_deref(),
            Some("smtp://127.0.0.1:2525")
        );
        assert_eq!(c.intake.idempotency_ttl, Duration::from_secs(7200));
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
    fn delivery_settings_that_would_drop_work_or_retry_forever_are_refused_by_name() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_DELIVERY_RETRY_SCHEDULE", "[]"),
                ("HERALD_DELIVERY_SMS_RATE", "-1"),
                ("HERALD_DELIVERY_VOICE_CONNECTIONS", "0"),
                ("HERALD_DELIVERY_CONTACT_WINDOW", "0s"),
                ("HERALD_DELIVERY_SENT_TTL", "1h"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in [
            "delivery.retry_schedule",
            "delivery.sms_rate",
            "delivery.voice_connections",
            "delivery.contact_window",
            "delivery.sent_ttl",
        ] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        let ok = Config::load(
            None,
            env(&[
                ("HERALD_DELIVERY_SMS_RATE", "2.5"),
                ("HERALD_DELIVERY_CONTACT_MAX_VOICE", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.delivery.sms_rate, 2.5);
        assert_eq!(ok.delivery.contact_max_voice, 1);
    }

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
    fn timer_leases_must_fit_inside_the_duplicate_window() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_SLA_LEASE", "20m"),
                ("HERALD_ESCALATION_SURVEY_SECRET", "short"),
                ("HERALD_SLA_RUNNERS", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in ["sla.lease", "escalation.survey_secret", "sla.runners"] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        let ok = Config::load(
            None,
            env(&[("HERALD_ESCALATION_SURVEY_SECRET", "a-secret-long-enough")]),
        )
        .unwrap();
        assert_eq!(
            ok.escalation.survey_secret.as_deref(),
            Some("a-secret-long-enough")
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
}
