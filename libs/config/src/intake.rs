//! The `[intake]` section: the gRPC and HTTP front doors' listeners, who may call
//! it (API keys per calling system, stored as hashes), its TLS, and the
//! limits it holds every request to.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::checks;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IntakeConfig {
    /// gRPC listener (tonic, with reflection and health).
    pub grpc_addr: String,
    /// Health and metrics listener; the HTTP API's too unless
    /// `public_addr` is set.
    pub http_addr: String,
    /// A listener of its own for the HTTP API (`/v1/...`,
    /// `/openapi.json`), apart from health and metrics.
    pub public_addr: Option<String>,
    /// The certificate and key (PEM) the HTTP API's own listener serves
    /// TLS with.
    pub public_tls_cert_file: Option<PathBuf>,
    pub public_tls_key_file: Option<PathBuf>,
    /// Largest encoded request accepted, in bytes.
    pub max_payload_bytes: usize,
    pub max_recipients: usize,
    /// How long an idempotency key is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Requests handled at once per lane.
    pub concurrency: usize,
    /// The systems that may call the gRPC and HTTP APIs, each with the
    /// SHA-256 of its keys. Empty, every such request is refused. A system has
    /// several keys while one is rotated.
    pub api_keys: Vec<SystemKeys>,
    /// Certificate chain and private key (PEM) the gRPC listener serves
    /// TLS with. Set, it speaks only TLS; unset, plain HTTP/2.
    pub grpc_tls_cert_file: Option<PathBuf>,
    pub grpc_tls_key_file: Option<PathBuf>,
    /// Monitoring and incident tools whose own webhooks open cases (see
    /// [`crate::Integration`]).
    pub integrations: Vec<crate::Integration>,
}

/// One calling system and the SHA-256 (lower-case hex) of each key it may
/// present. Its name is what the audit trail records as the caller, so it
/// follows the same rules as a NATS identity's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SystemKeys {
    pub system: String,
    pub key_sha256: Vec<String>,
    /// Whether the system may also query the whole trail by client, staff
    /// member or case (`GET /v1/trail`): a CRM or records system exporting
    /// SOP 001 §4.1's interaction records. Without it a system reads only
    /// the trails of the notifications it submitted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_trail: bool,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:9101".into(),
            public_addr: None,
            public_tls_cert_file: None,
            public_tls_key_file: None,
            max_payload_bytes: 64 * 1024,
            max_recipients: 1000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            concurrency: 512,
            api_keys: Vec::new(),
            grpc_tls_cert_file: None,
            grpc_tls_key_file: None,
            integrations: Vec::new(),
        }
    }
}

impl IntakeConfig {
    /// Where the HTTP API listens, and with which certificate.
    pub fn public(&self) -> crate::PublicListener {
        crate::PublicListener {
            addr: self.public_addr.clone(),
            tls_cert_file: self.public_tls_cert_file.clone(),
            tls_key_file: self.public_tls_key_file.clone(),
        }
    }

    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::listen_addr("intake.grpc_addr", &self.grpc_addr, problems);
        checks::listen_addr("intake.http_addr", &self.http_addr, problems);
        checks::public_listener("intake", &self.public(), problems);
        checks::at_least_one(
            &[
                ("intake.concurrency", self.concurrency),
                ("intake.max_recipients", self.max_recipients),
                ("intake.max_payload_bytes", self.max_payload_bytes),
            ],
            problems,
        );
        self.validate_api_keys(problems);
        crate::integrations::validate(&self.integrations, problems);
        // Whether the files can be read is checked by intake when it
        // starts: every service loads this configuration, and only
        // intake's host needs to hold them.
        if self.grpc_tls_cert_file.is_some() != self.grpc_tls_key_file.is_some() {
            problems.push(
                "`intake.grpc_tls_cert_file` and `intake.grpc_tls_key_file` go together: set both or neither"
                    .into(),
            );
        }
    }

    fn validate_api_keys(&self, problems: &mut Vec<String>) {
        let mut systems = HashMap::new();
        // Each hash may be listed once: a key shared by two systems would
        // leave the trail unable to say which of them called.
        let mut hashes: HashMap<&str, String> = HashMap::new();
        for (i, entry) in self.api_keys.iter().enumerate() {
            let at = format!("intake.api_keys[{i}]");
            if !herald_proto::access::is_identity_name(&entry.system) {
                problems.push(format!(
                    "`{at}.system` {:?} must be lowercase letters, digits and `-`, starting with a letter (at most 64)",
                    entry.system
                ));
            } else if let Some(first) = systems.insert(entry.system.as_str(), i) {
                problems.push(format!(
                    "`{at}.system` {:?} is already listed at `intake.api_keys[{first}]`: put all of a system's keys in one `key_sha256` list",
                    entry.system
                ));
            }
            if entry.key_sha256.is_empty() {
                problems.push(format!(
                    "`{at}.key_sha256` lists no key: add the SHA-256 of at least one (`herald apikey create --system {}` makes one), or remove the system",
                    entry.system
                ));
            }
            for (j, hash) in entry.key_sha256.iter().enumerate() {
                let key = format!("{at}.key_sha256[{j}]");
                if !is_sha256_hex(hash) {
                    problems.push(format!(
                        "`{key}` must be the 64 lower-case hex digits of the key's SHA-256 (`herald apikey create` prints it)"
                    ));
                } else if let Some(first) = hashes.insert(hash, key.clone()) {
                    problems.push(format!("`{key}` is the same key as `{first}`"));
                }
            }
        }
    }
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_limits_are_checked_by_name() {
        let mut problems = Vec::new();
        IntakeConfig::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = IntakeConfig {
            grpc_addr: "localhost".into(),
            max_recipients: 0,
            ..IntakeConfig::default()
        };
        bad.validate(&mut problems);
        let text = problems.join("\n");
        assert!(text.contains("intake.grpc_addr"), "{text}");
        assert!(text.contains("intake.max_recipients"), "{text}");
        assert_eq!(problems.len(), 2, "{text}");
    }

    fn keys(system: &str, hashes: &[&str]) -> SystemKeys {
        SystemKeys {
            system: system.into(),
            key_sha256: hashes.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    fn problems_of(cfg: IntakeConfig) -> Vec<String> {
        let mut problems = Vec::new();
        cfg.validate(&mut problems);
        problems
    }

    #[test]
    fn a_system_may_hold_several_keys_so_one_can_be_rotated() {
        let (a, b, c) = ("a".repeat(64), "0123456789abcdef".repeat(4), "f".repeat(64));
        let cfg = IntakeConfig {
            api_keys: vec![keys("crm", &[&a, &b]), keys("billing-2", &[&c])],
            ..IntakeConfig::default()
        };
        assert!(problems_of(cfg).is_empty());
    }

    #[test]
    fn each_bad_hash_is_named_by_its_system_and_position() {
        let good = "a".repeat(64);
        let upper = "A".repeat(64);
        let short = "a".repeat(63);
        let not_hex = "g".repeat(64);
        let cfg = IntakeConfig {
            api_keys: vec![
                keys("crm", &[&good, &upper]),
                keys("billing", &[&short, &not_hex, " "]),
            ],
            ..IntakeConfig::default()
        };
        let problems = problems_of(cfg);
        let text = problems.join("\n");
        for key in [
            "`intake.api_keys[0].key_sha256[1]`",
            "`intake.api_keys[1].key_sha256[0]`",
            "`intake.api_keys[1].key_sha256[1]`",
            "`intake.api_keys[1].key_sha256[2]`",
        ] {
            assert!(text.contains(key), "{key} not named in: {text}");
        }
        assert!(
            !text.contains("`intake.api_keys[0].key_sha256[0]`"),
            "{text}"
        );
        assert_eq!(problems.len(), 4, "{text}");
    }

    #[test]
    fn a_system_name_must_be_one_the_trail_can_record_and_appear_once() {
        let (a, b, c, d) = (
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64),
            "d".repeat(64),
        );
        let cfg = IntakeConfig {
            api_keys: vec![
                keys("CRM", &[&a]),
                keys("crm.eu", &[&b]),
                keys("crm", &[&c]),
                keys("crm", &[&d]),
            ],
            ..IntakeConfig::default()
        };
        let problems = problems_of(cfg);
        let text = problems.join("\n");
        assert!(
            text.contains("`intake.api_keys[0].system` \"CRM\""),
            "{text}"
        );
        assert!(text.contains("`intake.api_keys[1].system`"), "{text}");
        assert!(
            text.contains(
                "`intake.api_keys[3].system` \"crm\" is already listed at `intake.api_keys[2]`"
            ),
            "{text}"
        );
        assert_eq!(problems.len(), 3, "{text}");
    }

    #[test]
    fn a_key_cannot_belong_to_two_systems_and_a_system_needs_one() {
        let a = "a".repeat(64);
        let cfg = IntakeConfig {
            api_keys: vec![
                keys("crm", &[&a]),
                keys("billing", &[&a]),
                keys("idle", &[]),
            ],
            ..IntakeConfig::default()
        };
        let problems = problems_of(cfg);
        let text = problems.join("\n");
        assert!(
            text.contains(
                "`intake.api_keys[1].key_sha256[0]` is the same key as `intake.api_keys[0].key_sha256[0]`"
            ),
            "{text}"
        );
        assert!(
            text.contains("`intake.api_keys[2].key_sha256` lists no key"),
            "{text}"
        );
        assert_eq!(problems.len(), 2, "{text}");
    }

    #[test]
    fn tls_needs_both_the_certificate_and_its_key() {
        let only_cert = IntakeConfig {
            grpc_tls_cert_file: Some("cert.pem".into()),
            ..IntakeConfig::default()
        };
        let problems = problems_of(only_cert);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("intake.grpc_tls_key_file"),
            "{problems:?}"
        );
        let both = IntakeConfig {
            grpc_tls_cert_file: Some("cert.pem".into()),
            grpc_tls_key_file: Some("key.pem".into()),
            ..IntakeConfig::default()
        };
        assert!(problems_of(both).is_empty());
    }

    #[test]
    fn api_keys_come_from_the_file_or_the_environment() {
        let hash = "ab".repeat(32);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            format!("[intake]\napi_keys = [{{ system = \"crm\", key_sha256 = [\"{hash}\"] }}]\n"),
        )
        .unwrap();
        let from_file = crate::Config::load(Some(&file), crate::tests::env(&[])).unwrap();
        assert_eq!(from_file.intake.api_keys, vec![keys("crm", &[&hash])]);

        let from_env = crate::Config::load(
            None,
            crate::tests::env(&[(
                "HERALD_INTAKE_API_KEYS",
                &format!(r#"[{{ system = "billing", key_sha256 = ["{hash}"] }}]"#),
            )]),
        )
        .unwrap();
        assert_eq!(from_env.intake.api_keys, vec![keys("billing", &[&hash])]);

        let typo = crate::Config::load(
            None,
            crate::tests::env(&[(
                "HERALD_INTAKE_API_KEYS",
                &format!(r#"[{{ system = "crm", key_sha256 = ["{hash}"], keys = [] }}]"#),
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(typo.contains("intake.api_keys"), "{typo}");
    }
}
