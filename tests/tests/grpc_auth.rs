//! Intake's gRPC API admits only calling systems with an API key, holds
//! requests to the same size limit as NATS, and speaks only TLS when given
//! a certificate; the health and reflection services stay open. Each test
//! runs the real services, and a refused call must leave nothing on the
//! SMTP and HTTP sinks.

use std::time::Duration;

use herald_directory::credentials::sha256_hex;
use herald_proto::{
    Message,
    v1::{AuditRecord, AuditStep, CaseChannel, CaseEventKind, IntakeReply, Priority, intake_reply},
};
use herald_testkit::{
    TestSystem,
    cases::{client, event, opened, staff},
    fixtures::{contact, inquiry},
    grpc::{self, TestCa},
    system::{GRPC_CLIENT, GRPC_KEY},
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

fn accepted_id(reply: IntakeReply) -> String {
    match reply.result {
        Some(intake_reply::Result::Accepted(a)) => a.notification_id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

fn accepted_by(trail: &[AuditRecord]) -> &str {
    &trail
        .iter()
        .find(|r| r.step() == AuditStep::Accepted)
        .unwrap_or_else(|| panic!("no accepted record: {trail:#?}"))
        .caller
}

/// Sends one request that is let in and waits until Herald is idle: after
/// that, the sinks hold everything the refused calls before it could have
/// caused, and only the marker's email may be there.
async fn only_the_marker_arrives(sys: &TestSystem, marker_key: &str) {
    let id = sys.notify_ok(&inquiry(marker_key, "ivy", "INQ-MARK")).await;
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    sys.wait_until_idle().await;
    let mails = sys.smtp.mails();
    assert_eq!(
        mails.iter().map(|m| m.subject()).collect::<Vec<_>>(),
        ["We have received your inquiry INQ-MARK"],
        "only the marker may arrive"
    );
    assert!(sys.http.requests().is_empty(), "{:?}", sys.http.requests());
}

async fn with_ivy(sys: &TestSystem) {
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_key_or_with_a_wrong_one_is_refused_and_sends_nothing() {
    let sys = TestSystem::start().await;
    with_ivy(&sys).await;
    sys.add_contacts(&staff()).await;
    sys.add_contacts(&[client(0)]).await;

    let mut anonymous = grpc::client_with_key(sys.grpc_addr, None).await;
    let status = anonymous
        .notify(inquiry("anon-1", "ivy", "INQ-ANON"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("`authorization: Bearer <key>`"),
        "{}",
        status.message()
    );
    assert_eq!(
        status.metadata().get("x-herald-error-code").unwrap(),
        "ERROR_CODE_UNAUTHORIZED"
    );
    let status = anonymous
        .submit_case_event(opened(
            "CASE-ANON",
            "client-0",
            CaseChannel::Email,
            Priority::Normal,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let wrong_key = "grpc-client-test-key-5b0f";
    for key in [wrong_key, &sha256_hex(GRPC_KEY)] {
        let mut wrong = grpc::client_with_key(sys.grpc_addr, Some(key)).await;
        let status = wrong
            .notify(inquiry("wrong-1", "ivy", "INQ-WRONG"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{key}");
        assert!(
            status.message().contains("not one of intake.api_keys"),
            "{}",
            status.message()
        );
        assert!(!status.message().contains(key), "{}", status.message());
    }

    // Neither the requests nor the case event were stored.
    assert!(sys.case_trail("CASE-ANON").await.is_empty());
    only_the_marker_arrives(&sys, "marker-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_key_is_delivered_and_the_trail_names_the_system_that_holds_it() {
    let sys = TestSystem::start().await;
    with_ivy(&sys).await;
    sys.add_contacts(&staff()).await;
    sys.add_contacts(&[client(0)]).await;
    let mut grpc = grpc::client(sys.grpc_addr).await;

    let id = accepted_id(
        grpc.notify(inquiry("grpc-ok-1", "ivy", "INQ-G1"))
            .await
            .unwrap()
            .into_inner(),
    );
    let mails = sys.smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0].subject(), "We have received your inquiry INQ-G1");
    let trail = sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    assert_eq!(accepted_by(&trail), GRPC_CLIENT);

    // A case event is recorded as the same system's.
    grpc.submit_case_event(opened(
        "CASE-G",
        "client-0",
        CaseChannel::Email,
        Priority::Normal,
    ))
    .await
    .unwrap();
    grpc.submit_case_event(event("CASE-G", "ack-g", CaseEventKind::Acknowledged))
        .await
        .unwrap();
    let trail = sys.case_trail("CASE-G").await;
    let events: Vec<&AuditRecord> = trail
        .iter()
        .filter(|r| r.step() == AuditStep::CaseEvent)
        .collect();
    assert_eq!(events.len(), 2, "{trail:#?}");
    assert!(
        events.iter().all(|r| r.caller == GRPC_CLIENT),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_key_is_rotated_the_old_and_the_new_both_work() {
    const NEW_KEY: &str = "grpc-client-rotated-key-91c4";
    const BILLING_KEY: &str = "billing-test-key-07aa";
    let sys = TestSystem::start_with(|cfg| {
        cfg.intake.api_keys[0].key_sha256.push(sha256_hex(NEW_KEY));
        cfg.intake.api_keys.push(herald_config::SystemKeys {
            system: "billing".into(),
            key_sha256: vec![sha256_hex(BILLING_KEY)],
            ..Default::default()
        });
    })
    .await;
    with_ivy(&sys).await;

    let mut callers = Vec::new();
    for (i, key) in [GRPC_KEY, NEW_KEY, BILLING_KEY].into_iter().enumerate() {
        let mut grpc = grpc::client_with_key(sys.grpc_addr, Some(key)).await;
        let id = accepted_id(
            grpc.notify(inquiry(&format!("rot-{i}"), "ivy", &format!("INQ-R{i}")))
                .await
                .unwrap()
                .into_inner(),
        );
        let trail = sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
        callers.push(accepted_by(&trail).to_string());
    }
    assert_eq!(callers, [GRPC_CLIENT, GRPC_CLIENT, "billing"]);
    assert_eq!(sys.smtp.wait_for(3, WAIT).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_keys_configured_every_call_is_refused_but_health_and_reflection_answer() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let sys = TestSystem::start_with(|cfg| cfg.intake.api_keys.clear()).await;
    with_ivy(&sys).await;

    let mut grpc = grpc::client(sys.grpc_addr).await;
    let status = grpc
        .notify(inquiry("closed-1", "ivy", "INQ-C"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status
            .message()
            .contains("no API keys are configured (intake.api_keys)"),
        "{}",
        status.message()
    );

    // Load balancers and schema tools hold no key.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", sys.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "herald.v1.Intake".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses
        .message()
        .await
        .unwrap()
        .and_then(|r| r.message_response)
    else {
        panic!("reflection did not list the services")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"herald.v1.Intake"), "{names:?}");

    // Clients that still speak the older v1alpha reflection are answered
    // too, and are shown the v1alpha service beside v1.
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut responses = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::once(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }))
            .await
            .expect("v1alpha reflection answers")
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = responses
            .message()
            .await
            .unwrap()
            .and_then(|r| r.message_response)
        else {
            panic!("v1alpha reflection did not list the services")
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"herald.v1.Intake"), "{names:?}");
    }

    only_the_marker_arrives(&sys, "marker-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_payload_limit_is_refused_naming_the_limit() {
    let sys = TestSystem::start().await;
    with_ivy(&sys).await;
    let limit = sys.cfg.intake.max_payload_bytes;
    let mut big = inquiry("big-1", "ivy", "INQ-BIG");
    big.params
        .insert("padding".into(), "x".repeat(2 * 1024 * 1024));

    let status = grpc::client(sys.grpc_addr)
        .await
        .notify(big.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("the limit is: {limit} bytes")),
        "{}",
        status.message()
    );
    // Without a key it is refused for that first: the body is not read.
    let status = grpc::client_with_key(sys.grpc_addr, None)
        .await
        .notify(big)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Just under the limit is let in: the limit is the configured one,
    // not a smaller one of the transport's. (A parameter holds at most
    // 4096 bytes, so the padding is spread over several.)
    let mut under = inquiry("under-1", "ivy", "INQ-UNDER");
    let mut i = 0;
    while under.encoded_len() + 4096 + 16 < limit {
        under.params.insert(format!("pad{i:02}"), "x".repeat(4096));
        i += 1;
    }
    assert!(
        under.encoded_len() > limit - 4200,
        "{}",
        under.encoded_len()
    );
    let id = accepted_id(
        grpc::client(sys.grpc_addr)
            .await
            .notify(under)
            .await
            .unwrap()
            .into_inner(),
    );
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    sys.wait_until_idle().await;
    let subjects: Vec<String> = sys.smtp.mails().iter().map(|m| m.subject()).collect();
    assert_eq!(subjects, ["We have received your inquiry INQ-UNDER"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_configured_only_tls_clients_that_trust_it_get_through() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("intake.crt"), dir.path().join("intake.key"));
    std::fs::write(&cert, &ca.server_cert_pem).unwrap();
    std::fs::write(&key, &ca.server_key_pem).unwrap();
    let sys = TestSystem::start_with(|cfg| {
        cfg.intake.grpc_tls_cert_file = Some(cert);
        cfg.intake.grpc_tls_key_file = Some(key);
    })
    .await;
    with_ivy(&sys).await;

    // Plain HTTP/2 gets no gRPC answer at all.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", sys.grpc_addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let status = herald_proto::v1::intake_client::IntakeClient::with_interceptor(
            channel,
            grpc::Bearer::new(Some(GRPC_KEY)),
        )
        .notify(inquiry("plain-1", "ivy", "INQ-PLAIN"))
        .await
        .unwrap_err();
        // The connection fails under it (cancelled, unavailable or an
        // HTTP/2 error, as the timing falls); any answer from intake
        // itself would carry no transport error.
        let transport = std::error::Error::source(&status)
            .and_then(|e| e.downcast_ref::<tonic::transport::Error>());
        assert!(transport.is_some(), "{status:?}");
    }

    // A client that trusts another authority refuses the server.
    let stranger = TestCa::new();
    assert!(
        grpc::tls_client(sys.grpc_addr, &stranger.ca_pem, "localhost")
            .await
            .is_err()
    );

    let mut trusted = grpc::tls_client(sys.grpc_addr, &ca.ca_pem, "localhost")
        .await
        .expect("a client trusting the test CA connects");
    let id = accepted_id(
        trusted
            .notify(inquiry("tls-1", "ivy", "INQ-TLS"))
            .await
            .unwrap()
            .into_inner(),
    );
    let trail = sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    assert_eq!(accepted_by(&trail), GRPC_CLIENT);
    sys.wait_until_idle().await;
    let subjects: Vec<String> = sys.smtp.mails().iter().map(|m| m.subject()).collect();
    assert_eq!(subjects, ["We have received your inquiry INQ-TLS"]);
}
