//! Email over TLS: STARTTLS and TLS from the first byte reach a real SMTP
//! server with its own certificate, and a connection that cannot be secured
//! as configured carries nothing. Confidential content reaches providers
//! only encrypted, by email and by the SMS and voice webhooks alike.

use std::time::Duration;

use herald_proto::v1::{AuditStep, Confidentiality, NotificationRequest};
use herald_testkit::{
    TestSystem,
    fixtures::{contact, inquiry},
    http::HttpSink,
    smtp::{SinkTls, SmtpSink},
};

/// A system whose delivery sends email to `sink` at `url`, trusting `ca`.
async fn system_for(sink_url: String, ca: Option<String>) -> (TestSystem, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.map(|pem| {
        let path = dir.path().join("relay-ca.pem");
        std::fs::write(&path, pem).unwrap();
        path
    });
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.smtp_url = Some(sink_url.into());
        cfg.delivery.smtp_ca_file = ca_file;
    })
    .await;
    sys.add_contacts(&[contact("erin", Some("erin@example.org"), None, "email")])
        .await;
    (sys, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_over_starttls_and_over_tls_from_the_first_byte() {
    for mode in [SinkTls::StartTls, SinkTls::Implicit] {
        let sink = SmtpSink::start_tls(mode).await;
        let (sys, _dir) = system_for(sink.url(), sink.certificate_pem()).await;
        let id = sys
            .notify_ok(&inquiry(&format!("tls-{mode:?}"), "erin", "INQ-77"))
            .await;
        let mails = sink.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 1, "{mode:?}");
        assert!(mails[0].encrypted, "{mode:?}: the message came in clear");
        assert!(mails[0].subject().contains("INQ-77"), "{mode:?}");
        assert_eq!(mails[0].to, ["erin@example.org"]);
        sys.wait_for_step(&id, AuditStep::Sent, Duration::from_secs(10))
            .await;
        assert_eq!(sys.smtp.count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_or_a_missing_starttls_sends_nothing_in_clear() {
    // A certificate nobody vouches for: the handshake fails and is retried.
    let sink = SmtpSink::start_tls(SinkTls::Implicit).await;
    let (sys, _dir) = system_for(sink.url(), None).await;
    let id = sys.notify_ok(&inquiry("untrusted", "erin", "INQ-78")).await;
    let trail = sys
        .wait_for_step(&id, AuditStep::RetryScheduled, Duration::from_secs(20))
        .await;
    let retry = trail
        .iter()
        .find(|r| r.step == AuditStep::RetryScheduled as i32)
        .unwrap();
    assert!(retry.summary.contains("TLS"), "{}", retry.summary);
    assert_eq!(sink.count(), 0);
    drop(sys);

    // tls=required against a server that does not offer STARTTLS: the
    // message is not sent in clear.
    let plain = SmtpSink::start().await;
    let url = format!("{}?tls=required", plain.url());
    let (sys, _dir) = system_for(url, None).await;
    let id = sys
        .notify_ok(&inquiry("no-starttls", "erin", "INQ-79"))
        .await;
    let trail = sys
        .wait_for_step(&id, AuditStep::RetryScheduled, Duration::from_secs(20))
        .await;
    let retry = trail
        .iter()
        .find(|r| r.step == AuditStep::RetryScheduled as i32)
        .unwrap();
    assert!(retry.summary.contains("STARTTLS"), "{}", retry.summary);
    assert_eq!(plain.count(), 0, "a message went out in clear");
}

/// The sink's URL without the `tls=required` the kit gives a STARTTLS
/// sink: what a relay configured for plain or opportunistic SMTP reads.
fn plain_url(sink: &SmtpSink) -> String {
    sink.url().replace("?tls=required", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_content_goes_only_encrypted_and_never_in_clear_to_a_relay_without_tls() {
    let confidential = |key: &str, reference: &str| NotificationRequest {
        confidentiality: Confidentiality::Confidential as i32,
        ..inquiry(key, "erin", reference)
    };

    // A relay with no TLS at all: standard mail goes, as configured ...
    let plain = SmtpSink::start().await;
    let (sys, _dir) = system_for(plain.url(), None).await;
    sys.notify_ok(&inquiry("std-1", "erin", "INQ-80")).await;
    let mails = plain.wait_for(1, Duration::from_secs(20)).await;
    assert!(!mails[0].encrypted);
    // ... confidential content does not, and the trail says why.
    let id = sys.notify_ok(&confidential("conf-1", "INQ-81")).await;
    let trail = sys
        .wait_for_step(&id, AuditStep::DeadLettered, Duration::from_secs(20))
        .await;
    let said: Vec<&str> = trail.iter().map(|r| r.summary.as_str()).collect();
    assert!(
        said.iter().any(|s| s.contains("not sent in clear")),
        "{said:#?}"
    );
    assert!(
        !trail
            .iter()
            .any(|r| r.step == AuditStep::RetryScheduled as i32),
        "a relay without TLS is not tried again: {said:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        plain.count(),
        1,
        "confidential content reached a plain relay"
    );
    assert!(plain.mails_to("erin@example.org", "INQ-81").is_empty());
    drop(sys);

    // A relay offering STARTTLS, configured plain: the confidential mail
    // is upgraded and arrives encrypted; the standard one stays as set.
    let tls = SmtpSink::start_tls(SinkTls::StartTls).await;
    let (sys, _dir) = system_for(plain_url(&tls), tls.certificate_pem()).await;
    sys.notify_ok(&confidential("conf-2", "INQ-82")).await;
    sys.notify_ok(&inquiry("std-2", "erin", "INQ-83")).await;
    let mails = tls.wait_for(2, Duration::from_secs(20)).await;
    let by_ref = |r: &str| {
        mails
            .iter()
            .find(|m| m.subject().contains(r))
            .unwrap_or_else(|| panic!("{r} arrived"))
    };
    assert!(
        by_ref("INQ-82").encrypted,
        "confidential content came in clear"
    );
    assert!(!by_ref("INQ-83").encrypted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_content_goes_to_an_sms_provider_only_over_https() {
    let confidential = |key: &str, reference: &str| NotificationRequest {
        confidentiality: Confidentiality::Confidential as i32,
        ..inquiry(key, "sol", reference)
    };
    let sol = contact("sol", None, Some("+447700900055"), "sms");

    // An SMS provider URL in plain http: standard content goes there;
    // confidential content never does, and falls back to the call (whose
    // provider is the kit's, over HTTPS), saying why.
    let plain = HttpSink::start().await;
    let sms_url = plain.url("/sms");
    let sys = TestSystem::start_with(|cfg| cfg.delivery.sms_url = Some(sms_url)).await;
    sys.add_contacts(std::slice::from_ref(&sol)).await;
    sys.notify_ok(&inquiry("sms-std", "sol", "INQ-90")).await;
    plain.wait_for("/sms", 1, Duration::from_secs(20)).await;
    let id = sys.notify_ok(&confidential("sms-conf", "INQ-91")).await;
    let trail = sys
        .wait_for_step(&id, AuditStep::Fallback, Duration::from_secs(20))
        .await;
    let said: Vec<&str> = trail.iter().map(|r| r.summary.as_str()).collect();
    assert!(
        said.iter().any(|s| s.contains("only over HTTPS")),
        "{said:#?}"
    );
    let calls = sys
        .http
        .wait_for("/voice", 1, Duration::from_secs(20))
        .await;
    assert!(
        calls[0]
            .field("Twiml")
            .unwrap_or_default()
            .contains("INQ-91")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = plain
        .requests_to("/sms")
        .iter()
        .filter_map(|r| r.field("Body").map(str::to_string))
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains("INQ-90"), "{bodies:?}");
    drop(sys);

    // Over HTTPS (the kit's provider, whose certificate delivery trusts)
    // it arrives.
    let sys = TestSystem::start().await;
    sys.add_contacts(&[sol]).await;
    sys.notify_ok(&confidential("sms-conf-2", "INQ-92")).await;
    let got = sys.http.wait_for("/sms", 1, Duration::from_secs(20)).await;
    assert!(got[0].field("Body").unwrap_or_default().contains("INQ-92"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confidential_job_carries_its_own_recipient_and_the_rendered_message_only() {
    use futures::StreamExt;
    use herald_proto::{
        Message, subjects,
        v1::{DeliveryJob, Lane},
    };
    let sys = TestSystem::start().await;
    sys.add_contacts(&[
        contact(
            "erin",
            Some("erin@example.org"),
            Some("+447700900111"),
            "email",
        ),
        contact(
            "sami",
            Some("sami@example.org"),
            Some("+447700900222"),
            "sms",
        ),
    ])
    .await;
    let mut jobs = sys
        .client
        .subscribe(subjects::delivery_jobs(Lane::Normal))
        .await
        .unwrap();
    sys.client.flush().await.unwrap();
    // A service update is confidential by default; `unused` is a value the
    // template never shows.
    let req = NotificationRequest {
        idempotency_key: "min-1".into(),
        communication_type: herald_proto::v1::CommunicationType::ServiceUpdate as i32,
        recipients: vec![
            herald_testkit::fixtures::to_contact("erin"),
            herald_testkit::fixtures::to_contact("sami"),
        ],
        template_id: "service_update".into(),
        params: [
            ("reference".to_string(), "SU-1".to_string()),
            ("update".to_string(), "Your order ships Friday".to_string()),
            ("unused".to_string(), "INTERNAL-NOTE-7".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    sys.notify_ok(&req).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(20), jobs.next())
            .await
            .expect("the jobs are published")
            .expect("subscription open");
        seen.push(DeliveryJob::decode(msg.payload).unwrap());
    }
    for job in &seen {
        assert_eq!(job.confidentiality, Confidentiality::Confidential as i32);
        let bytes = format!("{job:?}");
        assert!(!bytes.contains("INTERNAL-NOTE-7"), "{bytes}");
        let (own, other) = if job.contact_id == "erin" {
            (
                "erin@example.org",
                ["sami", "+447700900222", "sami@example.org"],
            )
        } else {
            (
                "+447700900222",
                ["erin", "+447700900111", "erin@example.org"],
            )
        };
        assert_eq!(job.address, own);
        for o in other {
            assert!(
                !bytes.contains(o),
                "the job for {} names {o}: {bytes}",
                job.contact_id
            );
        }
        if job.channel == herald_proto::v1::Channel::Sms as i32 {
            assert!(
                job.recipient_name.is_empty(),
                "an SMS needs no name: {bytes}"
            );
        } else {
            assert_eq!(job.recipient_name, "Erin");
        }
    }
}
