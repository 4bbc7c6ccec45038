//! The endpoints strangers reach — provider status callbacks — on a
//! listener of their own with TLS, while health and metrics stay open
//! and plain on the service's HTTP port for probes and scrapers.

use std::time::Duration;

use herald_proto::v1::Channel;
use herald_testkit::{
    TestSystem,
    fixtures::{inquiry_to, person},
    scrape,
};

const PUBLIC: &str = "https://herald.example.test";
const SECRET: &str = "provider-secret";

#[tokio::test]
async fn provider_callbacks_are_served_over_tls_apart_from_health_and_metrics() {
    let (_certs, layout) = herald_testkit::servers::deployment();
    let (cert, key, ca) = (layout.tls_cert(), layout.tls_key(), layout.tls_ca());
    let sys = TestSystem::start_with(move |cfg| {
        cfg.delivery.status_callback_base = Some(PUBLIC.into());
        cfg.delivery.provider_account = Some("AC0001".into());
        cfg.delivery.provider_token = Some(SECRET.into());
        cfg.delivery.public_addr = Some("127.0.0.1:0".into());
        cfg.delivery.public_tls_cert_file = Some(cert);
        cfg.delivery.public_tls_key_file = Some(key);
    })
    .await;
    let public = sys.public_addr("delivery").expect("a public listener");
    assert_ne!(public, sys.http_addr("delivery"));

    let id = sys
        .notify_ok(&inquiry_to("tls-1", person(1, &[Channel::Sms])))
        .await;
    let sent = sys.http.wait_for("/sms", 1, Duration::from_secs(20)).await;
    let url = sent[0].field("StatusCallback").unwrap().to_string();
    let params = vec![
        ("MessageSid".to_string(), "SM1".to_string()),
        ("MessageStatus".to_string(), "delivered".to_string()),
    ];
    let signature = herald_content::signature::sign(SECRET, &url, &params);
    let path = url.strip_prefix(PUBLIC).unwrap();

    // Over TLS, trusting the deployment's CA, the signed callback is taken.
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()])
        .build()
        .unwrap();
    let answer = trusting
        .post(format!("https://127.0.0.1:{}{path}", public.port()))
        .header("X-Twilio-Signature", &signature)
        .form(&params)
        .send()
        .await
        .expect("the public listener answers over TLS");
    assert_eq!(answer.status().as_u16(), 204);
    sys.wait_for_step(
        &id,
        herald_proto::v1::AuditStep::Status,
        Duration::from_secs(20),
    )
    .await;

    // Plain text to the public listener gets no answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", public.port()))
        .header("X-Twilio-Signature", &signature)
        .form(&params)
        .send()
        .await;
    assert!(
        plain.is_err(),
        "a plain-text callback was served: {plain:?}"
    );
    // The health port no longer takes callbacks, and stays open for
    // probes and scrapers.
    let on_health_port = reqwest::Client::new()
        .post(format!("http://{}{path}", sys.http_addr("delivery")))
        .header("X-Twilio-Signature", &signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(on_health_port.status().as_u16(), 404);
    let page = scrape::metrics(sys.http_addr("delivery")).await;
    assert!(page.sum("herald_delivery_status_callbacks_total", &[]) >= 1.0);
}
