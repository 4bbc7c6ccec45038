//! The `[delivery]` section: the providers messages are sent through, and
//! the retry, time and rate limits delivery keeps to. The SMTP URL (which
//! may carry a password) and the provider's token are [`Secret`]s.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Secret, checks};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    pub http_addr: String,
    /// Where the provider status callbacks listen apart from
    /// health and metrics (which stay on `http_addr`, open). Unset, they
    /// share `http_addr`.
    pub public_addr: Option<String>,
    /// The certificate and key (PEM) the public listener serves TLS with.
    pub public_tls_cert_file: Option<PathBuf>,
    pub public_tls_key_file: Option<PathBuf>,
    /// Jobs sent at once per lane.
    pub concurrency: usize,
    /// Where messages go when a channel has no endpoint configured.
    pub outbox_dir: PathBuf,
    /// `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://host:port` (TLS), optionally with
    /// `user:password@`. Empty: emails go to the outbox.
    pub smtp_url: Option<Secret>,
    pub smtp_from: String,
    /// PEM certificates to trust for SMTP over TLS besides the public web
    /// roots: the authority of a private relay.
    pub smtp_ca_file: Option<PathBuf>,
    /// The lowest confidentiality level whose content reaches providers
    /// only encrypted (SOP 000 §4): email over SMTP with STARTTLS required
    /// or TLS from the first byte, SMS and calls to an `https://` provider
    /// URL, certificates verified, whatever `smtp_url` allows for the rest:
    /// `standard`, `confidential` (the default), `sensitive` or `none`.
    /// Where a provider cannot be reached encrypted, such a job is not sent
    /// in clear: it falls back or is dead-lettered, saying why. A
    /// content-free notice is not content and goes as configured.
    pub encrypted_from: EncryptedFrom,
    /// PEM certificates to trust for the SMS and voice providers' HTTPS
    /// besides the public web roots.
    pub provider_ca_file: Option<PathBuf>,
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
    pub provider_token: Option<Secret>,
    /// The secret of the shared key a provider's webhook settings sign
    /// callbacks with instead of the token (HMAC-SHA1 or HMAC-SHA256, as
    /// the callback's `X-Twilio-Webhooks-Signature-Settings` header says).
    /// Unset, such callbacks are refused.
    pub provider_signing_key: Option<Secret>,
    /// Public base URL of the status-callback endpoint given to providers.
    /// The SMS provider's inbound-message webhook is `<this>/v1/inbound/sms`.
    pub status_callback_base: Option<String>,
    /// Signs the inbound-email webhook (`POST /v1/inbound/email`, the
    /// inbound-parse shape mail services post: `timestamp`, `token` and
    /// `signature`, an HMAC-SHA256 in hex over timestamp and token).
    /// Unset, inbound email is refused.
    pub inbound_email_signing_key: Option<Secret>,
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

/// See [`DeliveryConfig::encrypted_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptedFrom {
    Standard,
    Confidential,
    Sensitive,
    None,
}

impl EncryptedFrom {
    /// Whether content at `level` (a `herald.v1.Confidentiality` value;
    /// unspecified counts as standard) must travel encrypted.
    pub fn requires(self, level: i32) -> bool {
        let level = level.max(1);
        match self {
            EncryptedFrom::Standard => true,
            EncryptedFrom::Confidential => level >= 2,
            EncryptedFrom::Sensitive => level >= 3,
            EncryptedFrom::None => false,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:9103".into(),
            public_addr: None,
            public_tls_cert_file: None,
            public_tls_key_file: None,
            concurrency: 256,
            outbox_dir: PathBuf::from("run/outbox"),
            smtp_url: None,
            smtp_from: "Herald <herald@localhost>".into(),
            smtp_ca_file: None,
            encrypted_from: EncryptedFrom::Confidential,
            provider_ca_file: None,
            smtp_pool_size: 16,
            sms_url: None,
            sms_from: "+15550100000".into(),
            voice_url: None,
            voice_from: "+15550100000".into(),
            provider_account: None,
            provider_token: None,
            provider_signing_key: None,
            status_callback_base: None,
            inbound_email_signing_key: None,
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
    /// The public listener's settings.
    pub fn public(&self) -> crate::PublicListener {
        crate::PublicListener {
            addr: self.public_addr.clone(),
            tls_cert_file: self.public_tls_cert_file.clone(),
            tls_key_file: self.public_tls_key_file.clone(),
        }
    }

    /// Endpoints, and the retry, time-limit and rate-limit settings that
    /// would make delivery drop work or never stop retrying.
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("delivery.http_addr", &self.http_addr, problems);
        checks::public_listener("delivery", &self.public(), problems);
        if let Some(url) = &self.smtp_url {
            checks::secret_url_scheme("delivery.smtp_url", url, &["smtp", "smtps"], problems);
        }
        for (key, url) in [
            ("delivery.sms_url", &self.sms_url),
            ("delivery.voice_url", &self.voice_url),
            ("delivery.status_callback_base", &self.status_callback_base),
        ] {
            if let Some(url) = url {
                checks::url_scheme(key, url, &["http", "https"], problems);
            }
        }
        if self.provider_account.is_some() != self.provider_token.is_some() {
            problems.push(
                "`delivery.provider_account` and `delivery.provider_token` must be set together"
                    .into(),
            );
        }
        checks::more_than_zero(
            &[
                ("delivery.attempt_timeout", self.attempt_timeout),
                ("delivery.give_up_after", self.give_up_after),
            ],
            problems,
        );
        if self.retry_schedule.is_empty() {
            problems.push(
                "`delivery.retry_schedule` is empty: give at least one delay, or transient failures are never retried".into(),
            );
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
        checks::at_least_one(
            &[
                ("delivery.concurrency", self.concurrency),
                ("delivery.sms_connections", self.sms_connections),
                ("delivery.voice_connections", self.voice_connections),
                ("delivery.smtp_pool_size", self.smtp_pool_size as usize),
            ],
            problems,
        );
        let limited = [
            self.contact_max_email,
            self.contact_max_sms,
            self.contact_max_voice,
        ]
        .iter()
        .any(|max| *max > 0);
        if limited && self.contact_window.is_zero() {
            problems.push(
                "`delivery.contact_window` must be more than zero while a `delivery.contact_max_*` limit is set".into(),
            );
        }
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

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::tests::env;

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
    fn the_largest_per_person_limits_load_without_overflowing() {
        let max = u32::MAX.to_string();
        let ok = Config::load(
            None,
            env(&[
                ("HERALD_DELIVERY_CONTACT_MAX_EMAIL", &max),
                ("HERALD_DELIVERY_CONTACT_MAX_SMS", &max),
            ]),
        )
        .unwrap();
        assert_eq!(ok.delivery.contact_max_email, u32::MAX);
    }

    #[test]
    fn endpoints_and_the_provider_credential_pair_are_checked_without_showing_secrets() {
        let err = Config::load(
            None,
            env(&[
                (
                    "HERALD_DELIVERY_SMTP_URL",
                    "mail.example:25?user=u&pass=hunter22",
                ),
                ("HERALD_DELIVERY_SMS_URL", "provider.example/sms"),
                ("HERALD_DELIVERY_PROVIDER_TOKEN", "tok-hunter22"),
                ("HERALD_DELIVERY_ATTEMPT_TIMEOUT", "0s"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in [
            "delivery.smtp_url",
            "delivery.sms_url",
            "delivery.provider_account",
            "delivery.attempt_timeout",
        ] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        assert!(!err.contains("hunter22"), "{err}");
    }
}
