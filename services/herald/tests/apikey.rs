//! `herald apikey create` makes a key a calling system can use at once:
//! its printed hash, put in the configuration, admits `herald send --grpc`
//! with the key, and the trail names the system.

use std::{process::Command, time::Duration};

use herald_config::SystemKeys;
use herald_directory::credentials::sha256_hex;
use herald_proto::v1::AuditStep;
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::contact,
};

/// Runs `herald apikey create` with no configuration, so no keys exist yet.
fn apikey_create(system: &str) -> std::io::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["apikey", "create", "--system", system])
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD_INTAKE_API_KEYS")
        .output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_key_admits_its_system_once_its_hash_is_configured() {
    let out = apikey_create("crm").unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let key = text.lines().nth(1).unwrap().trim().to_string();
    assert_eq!(key.len(), 43, "{text}");
    let hash = sha256_hex(&key);
    assert!(
        text.contains(&format!(
            "{{ system = \"crm\", key_sha256 = [\"{hash}\"] }}"
        )),
        "{text}"
    );
    assert!(
        text.contains("HERALD_INTAKE_API_KEYS='[{ system = \"crm\""),
        "{text}"
    );
    assert_eq!(
        text.matches(&key).count(),
        1,
        "the key is printed once: {text}"
    );
    let again = stdout(&apikey_create("crm").unwrap());
    assert!(!again.contains(&key), "every key is new: {again}");

    let sys = TestSystem::start_with(|cfg| {
        cfg.intake.api_keys.push(SystemKeys {
            system: "crm".into(),
            key_sha256: vec![hash],
            ..Default::default()
        })
    })
    .await;
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let addr = sys.grpc_addr.to_string();
    let send = |key: Option<&str>, reference: &str| {
        let mut args = vec![
            "send",
            "--grpc",
            &addr,
            "--to",
            "ivy",
            "--template",
            "inquiry_received",
            "--param",
        ];
        let param = format!("reference={reference}");
        args.push(&param);
        if let Some(k) = key {
            args.extend(["--api-key", k]);
        }
        herald.run(&args)
    };

    let refused = send(None, "INQ-NOKEY");
    assert_eq!(refused.status.code(), Some(3), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("authorization: Bearer <key>"),
        "{}",
        stderr(&refused)
    );

    let out = send(Some(&key), "INQ-CLI");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out)
        .split_whitespace()
        .find(|w| w.starts_with("ntf_"))
        .unwrap_or_else(|| panic!("no id in {}", stdout(&out)))
        .to_string();
    let trail = sys
        .wait_for_step(&id, AuditStep::Sent, Duration::from_secs(20))
        .await;
    let accepted = trail
        .iter()
        .find(|r| r.step() == AuditStep::Accepted)
        .unwrap();
    assert_eq!(accepted.caller, "crm");
    let mails = sys.smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), "We have received your inquiry INQ-CLI");
}

#[test]
fn a_system_name_the_trail_could_not_record_is_refused() {
    for bad in ["CRM", "crm.eu", "1crm", ""] {
        let out = apikey_create(bad).unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("--system"), "{}", stderr(&out));
        assert!(
            stdout(&out).is_empty(),
            "no key is printed: {}",
            stdout(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_send_reaches_a_tls_only_grpc_port_when_given_its_ca() {
    let (_certs, layout) = herald_testkit::servers::deployment();
    let key = "tls-test-key-0123456789";
    let (cert, tls_key) = (layout.tls_cert(), layout.tls_key());
    let sys = TestSystem::start_with(move |cfg| {
        cfg.intake.api_keys.push(SystemKeys {
            system: "crm".into(),
            key_sha256: vec![sha256_hex(key)],
            ..Default::default()
        });
        cfg.intake.grpc_tls_cert_file = Some(cert);
        cfg.intake.grpc_tls_key_file = Some(tls_key);
    })
    .await;
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let addr = sys.grpc_addr.to_string();
    let ca = layout.tls_ca().display().to_string();
    let mut args = vec![
        "send",
        "--grpc",
        &addr,
        "--to",
        "ivy",
        "--template",
        "inquiry_received",
        "--param",
        "reference=INQ-TLS",
        "--api-key",
        key,
    ];
    // Without the CA, plain text to a TLS port gets nowhere.
    let plain = herald.run(&args);
    assert!(!plain.status.success(), "{}", stdout(&plain));
    args.extend(["--grpc-ca", &ca]);
    let out = herald.run(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    sys.smtp.wait_for(1, Duration::from_secs(20)).await;
}
