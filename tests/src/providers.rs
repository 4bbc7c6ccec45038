//! What every test system has around Herald, whatever its NATS and Redis:
//! the SMTP relay and the HTTP provider, over TLS with certificates
//! delivery is told to trust, the callers it knows (coordinator, API
//! keys), and the configuration that points the services at all of them.

use std::{path::PathBuf, time::Duration};

use herald_config::{Config, Coordinator, SystemKeys};

use crate::{
    http::HttpSink,
    smtp::{SinkTls, SmtpSink},
};

/// The coordinator every test system knows, and their token.
pub const COORDINATOR: &str = "anna";
pub const COORDINATOR_TOKEN: &str = "anna-coordinator-test-token";
/// The system every test system lets call intake over gRPC, and its key.
pub const GRPC_CLIENT: &str = "grpc-client";
pub const GRPC_KEY: &str = "grpc-client-test-key-5b0e";
/// The HTTP API key of the system `publisher`, the name the kit's NATS
/// publisher has too: over either door it is the same caller.
pub const PUBLISHER_API_KEY: &str = "publisher-test-key-7d21";
/// Where the broadcast service's confirmation links say they lead; tests
/// send the requests to its real address and sign with this one.
pub const PUBLIC_URL: &str = "https://herald.test/bc";

/// The shipped templates and routing rules.
pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// The test configuration around the given sinks, every listener on a
/// free port: NATS and Redis are for the caller to point at.
pub fn config(smtp: &SmtpSink, http: &HttpSink, outbox: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.nats.ack_wait = Duration::from_secs(10);
    cfg.content.templates_dir = config_dir().join("templates");
    cfg.intake.grpc_addr = "127.0.0.1:0".into();
    cfg.intake.http_addr = "127.0.0.1:0".into();
    cfg.router.http_addr = "127.0.0.1:0".into();
    cfg.delivery.http_addr = "127.0.0.1:0".into();
    cfg.sla.http_addr = "127.0.0.1:0".into();
    cfg.escalation.http_addr = "127.0.0.1:0".into();
    cfg.escalation.survey_secret = Some("test-survey-secret-0123".into());
    cfg.delivery.smtp_url = Some(smtp.url().into());
    cfg.delivery.sms_url = Some(http.url("/sms"));
    cfg.delivery.voice_url = Some(http.url("/voice"));
    cfg.delivery.outbox_dir = outbox.to_path_buf();
    cfg.delivery.attempt_timeout = Duration::from_secs(5);
    cfg.delivery.retry_schedule = [200, 500, 1000, 2000]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    cfg.broadcast.http_addr = "127.0.0.1:0".into();
    cfg.broadcast.public_url = PUBLIC_URL.into();
    cfg.broadcast.link_secret = Some("test-link-secret-0123456789".into());
    cfg.broadcast.coordinators = vec![Coordinator {
        id: COORDINATOR.into(),
        token_sha256: herald_directory::coordinators::token_sha256(COORDINATOR_TOKEN),
    }];
    cfg.intake.api_keys = vec![
        SystemKeys {
            system: GRPC_CLIENT.into(),
            key_sha256: vec![herald_directory::credentials::sha256_hex(GRPC_KEY)],
            ..Default::default()
        },
        SystemKeys {
            system: crate::servers::PUBLISHER.into(),
            key_sha256: vec![herald_directory::credentials::sha256_hex(PUBLISHER_API_KEY)],
            ..Default::default()
        },
    ];
    cfg
}

/// The two provider sinks, the outbox, and the CA files delivery trusts
/// them by.
pub struct Providers {
    pub smtp: SmtpSink,
    pub http: HttpSink,
    outbox: tempfile::TempDir,
    ca: tempfile::TempDir,
}

impl Providers {
    /// The relay speaks STARTTLS, as relays do (confidential content goes
    /// only over an encrypted connection); the provider is reached over
    /// HTTPS, as real ones are.
    pub async fn start() -> Providers {
        let smtp = SmtpSink::start_tls(SinkTls::StartTls).await;
        let http = HttpSink::start_tls().await;
        let outbox = tempfile::tempdir().expect("outbox dir");
        let ca = tempfile::tempdir().expect("relay CA dir");
        std::fs::write(
            ca.path().join("provider-ca.pem"),
            http.certificate_pem().unwrap_or_default(),
        )
        .expect("provider CA written");
        std::fs::write(
            ca.path().join("relay-ca.pem"),
            smtp.certificate_pem().unwrap_or_default(),
        )
        .expect("relay CA written");
        Providers {
            smtp,
            http,
            outbox,
            ca,
        }
    }

    pub fn outbox(&self) -> &std::path::Path {
        self.outbox.path()
    }

    /// Makes delivery trust the sinks' certificates.
    pub fn trust(&self, cfg: &mut Config) {
        cfg.delivery.smtp_ca_file = Some(self.ca.path().join("relay-ca.pem"));
        cfg.delivery.provider_ca_file = Some(self.ca.path().join("provider-ca.pem"));
    }

    /// The sinks, the outbox and the CA folder, to be kept as long as the
    /// services use them.
    pub fn into_parts(self) -> (SmtpSink, HttpSink, tempfile::TempDir, tempfile::TempDir) {
        (self.smtp, self.http, self.outbox, self.ca)
    }
}
