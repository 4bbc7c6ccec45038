//! The `[escalation]` section: escalation policies, their timers, and the
//! follow-up survey after resolution, whose links are signed with a
//! [`Secret`].

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Secret, checks};

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
    pub survey_secret: Option<Secret>,
    /// Where the acknowledgement links in escalation emails and the
    /// key presses of escalation calls come back (`/v1/escalation/ack`,
    /// `/v1/escalation/key`): the public address of the listener below.
    /// Both are signed with `survey_secret` (for a different purpose, so a
    /// survey token acknowledges nothing).
    pub public_url: String,
    /// Where those endpoints listen apart from health and metrics (which
    /// stay on `http_addr`). Unset, they share `http_addr`.
    pub public_addr: Option<String>,
    /// The certificate and key (PEM) the public listener serves TLS with.
    pub public_tls_cert_file: Option<PathBuf>,
    pub public_tls_key_file: Option<PathBuf>,
    /// How long the code in a page (`ACK 4821`) can be answered.
    #[serde(with = "humantime_serde")]
    pub ack_code_ttl: Duration,
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
            public_url: "http://127.0.0.1:9105".into(),
            public_addr: None,
            public_tls_cert_file: None,
            public_tls_key_file: None,
            ack_code_ttl: Duration::from_secs(7 * 24 * 3600),
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
        }
    }
}

impl EscalationConfig {
    /// The lease is also held to `nats.duplicate_window`, in
    /// [`crate::across_sections`].
    /// The public listener's settings.
    pub fn public(&self) -> crate::PublicListener {
        crate::PublicListener {
            addr: self.public_addr.clone(),
            tls_cert_file: self.public_tls_cert_file.clone(),
            tls_key_file: self.public_tls_key_file.clone(),
        }
    }

    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("escalation.http_addr", &self.http_addr, problems);
        checks::public_listener("escalation", &self.public(), problems);
        checks::url_scheme(
            "escalation.public_url",
            &self.public_url,
            &["http", "https"],
            problems,
        );
        checks::url_scheme(
            "escalation.survey_url",
            &self.survey_url,
            &["http", "https"],
            problems,
        );
        if self
            .survey_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 16)
        {
            problems.push("`escalation.survey_secret` must be at least 16 characters".into());
        }
        checks::more_than_zero(
            &[
                ("escalation.lease", self.lease),
                ("escalation.ack_code_ttl", self.ack_code_ttl),
                ("escalation.poll", self.poll),
            ],
            problems,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::tests::env;

    #[test]
    fn a_short_survey_secret_is_refused_and_a_long_one_kept() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_ESCALATION_SURVEY_SECRET", "short"),
                ("HERALD_ESCALATION_SURVEY_URL", "feedback.example.org"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in ["escalation.survey_secret", "escalation.survey_url"] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        let ok = Config::load(
            None,
            env(&[("HERALD_ESCALATION_SURVEY_SECRET", "a-secret-long-enough")]),
        )
        .unwrap();
        assert_eq!(
            ok.escalation
                .survey_secret
                .as_ref()
                .map(|s| s.expose_secret()),
            Some("a-secret-long-enough")
        );
    }
}
