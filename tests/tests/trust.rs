//! Nobody gets in who does not belong. A real nats-server runs with the
//! configuration Herald generates from its permission table, and each test
//! tries, as one identity, what that identity must not do: what arrives at
//! the providers (nothing) and what the trail says is what is asserted,
//! beside the server's own refusal.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedCaseEvent, BroadcastCommand, CaseEvent, CaseEventKind, Channel, DeliveryJob,
        IntakeReply, Lane, StartBroadcast, broadcast_command, intake_reply,
    },
};
use herald_testkit::{
    TestSystem,
    fixtures::{contact, inquiry},
    servers::NatsServer,
    system::COORDINATOR_TOKEN,
    wait::until,
};

const WAIT: Duration = Duration::from_secs(20);

/// A connection as `identity` that keeps what the server refused it.
struct Watched {
    client: async_nats::Client,
    refused: Arc<Mutex<Vec<String>>>,
}

impl Watched {
    async fn connect(nats: &NatsServer, identity: &str) -> Watched {
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = refused.clone();
        let client = nats
            .options_for(identity)
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        seen.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(nats.url())
            .await
            .expect("connects");
        Watched { client, refused }
    }

    /// Waits (a few seconds at most) for the server to refuse something
    /// more than the `before` refusals seen so far.
    async fn wait_past(&self, before: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.refused.lock().unwrap().len() <= before && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes and waits until the server has answered it, then says
    /// whether the server refused it.
    async fn publish_refused(&self, subject: &str, payload: Vec<u8>) -> bool {
        let before = self.refused.lock().unwrap().len();
        self.client
            .publish(subject.to_string(), payload.into())
            .await
            .expect("queued");
        self.client.flush().await.expect("flushed");
        self.wait_past(before).await;
        self.refused.lock().unwrap()[before..]
            .iter()
            .any(|e| e.to_lowercase().contains("permissions violation"))
    }

    async fn subscribe_refused(&self, subject: &str) -> bool {
        let before = self.refused.lock().unwrap().len();
        let _sub = self.client.subscribe(subject.to_string()).await;
        self.client.flush().await.expect("flushed");
        self.wait_past(before).await;
        self.refused.lock().unwrap()[before..]
            .iter()
            .any(|e| e.to_lowercase().contains("permissions violation"))
    }
}

fn forged_sms() -> DeliveryJob {
    DeliveryJob {
        job_id: "forged-job-1".into(),
        notification_id: "forged-1".into(),
        channel: Channel::Sms as i32,
        lane: Lane::Normal as i32,
        address: "+447700900999".into(),
        body: "Your account is locked, call this number".into(),
        created_at: Some(herald_proto::now()),
        ..Default::default()
    }
}

fn forged_broadcast() -> BroadcastCommand {
    BroadcastCommand {
        command_id: "start-forged".into(),
        actor: "mallory".into(),
        caller: "mallory".into(),
        accepted_at: Some(herald_proto::now()),
        command: Some(broadcast_command::Command::Start(StartBroadcast {
            broadcast_id: "forged".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_anonymous_connection_or_an_unknown_key_is_refused() {
    let nats = NatsServer::start();
    // Over TLS, with the server's certificate trusted, so that what is
    // refused is the missing or unknown credential.
    let tls = || {
        async_nats::ConnectOptions::new()
            .add_root_certificates(nats.tls_ca())
            .require_tls(true)
    };
    let anonymous = tls().connect(nats.url()).await;
    match anonymous {
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{e}"
        ),
        Ok(_) => panic!("an anonymous connection was let in"),
    }
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let unknown = async_nats::ConnectOptions::with_nkey(stranger)
        .add_root_certificates(nats.tls_ca())
        .require_tls(true)
        .connect(nats.url())
        .await;
    assert!(
        unknown.is_err(),
        "a key the server does not know was let in"
    );
    // The right key works.
    nats.connect_as("publisher").await;
}

#[tokio::test]
async fn the_bus_is_tls_only_and_the_server_s_certificate_is_checked() {
    let nats = NatsServer::start();
    // A client that will not do TLS is not served, even with a good key.
    let plain = async_nats::ConnectOptions::with_nkey(nats.seed("publisher"))
        .connect(nats.url())
        .await;
    assert!(plain.is_err(), "a plain-text client was served");
    // A client that does not trust the deployment's CA will not talk to it.
    let untrusting = async_nats::ConnectOptions::with_nkey(nats.seed("publisher"))
        .require_tls(true)
        .connect(nats.url())
        .await;
    assert!(
        untrusting.is_err(),
        "a server of unknown certificate was trusted"
    );
    // And Herald's own processes refuse plain text unless told otherwise.
    let cfg = herald_config::NatsConfig {
        url: nats.url(),
        credentials_dir: Some(nats.credentials_dir()),
        ..Default::default()
    };
    let refused = herald_runtime::bus::Bus::connect(
        &cfg,
        "publisher",
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("a plain-text connection was attempted");
    assert!(
        refused.to_string().contains("nats.tls_ca_file"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_publisher_cannot_forge_jobs_broadcasts_case_events_or_the_busy_pulse() {
    let mut sys = TestSystem::start().await;
    sys.start_broadcast().await;
    let outsider = Watched::connect(&sys.nats, "publisher").await;

    let job = forged_sms().encode_to_vec();
    assert!(
        outsider
            .publish_refused(
                &subjects::delivery_job(Lane::Normal, Channel::Sms),
                job.clone()
            )
            .await
    );
    assert!(
        outsider
            .publish_refused(
                &subjects::delivery_job(Lane::Emergency, Channel::Sms),
                job.clone()
            )
            .await
    );
    assert!(
        outsider
            .publish_refused(
                subjects::BROADCAST_COMMANDS,
                forged_broadcast().encode_to_vec()
            )
            .await
    );
    assert!(
        outsider
            .publish_refused(subjects::EMERGENCY_BUSY, b"mallory".to_vec())
            .await
    );
    // An acknowledgement stored straight into the case stream would
    // silence the case's escalation.
    let ack = AcceptedCaseEvent {
        event: Some(CaseEvent {
            case_id: "CASE-77".into(),
            event_id: "forged-ack".into(),
            kind: CaseEventKind::Acknowledged as i32,
            ..Default::default()
        }),
        accepted_at: Some(herald_proto::now()),
        caller: "mallory".into(),
    };
    assert!(
        outsider
            .publish_refused(&subjects::case_event("CASE-77"), ack.encode_to_vec())
            .await
    );
    assert!(
        outsider
            .publish_refused(subjects::NOTIFY_ACCEPTED, b"x".to_vec())
            .await
    );
    assert!(
        outsider
            .publish_refused(&subjects::dlq(Channel::Sms), b"x".to_vec())
            .await
    );

    sys.wait_until_idle().await;
    assert!(
        sys.http.requests().is_empty(),
        "a forged job reached a provider"
    );
    assert_eq!(sys.smtp.count(), 0);
    let cases = sys
        .bus()
        .await
        .js
        .get_stream(subjects::STREAM_CASES)
        .await
        .expect("case stream")
        .info()
        .await
        .expect("info")
        .state
        .messages;
    assert_eq!(cases, 0, "a forged case event was stored");
    let trail = sys.trail("forged-1").await;
    assert!(trail.is_empty(), "{trail:?}");

    // The same job from an identity allowed everything does reach the
    // provider: the refusal above is the permissions, not a bad job.
    sys.client
        .publish(
            subjects::delivery_job(Lane::Normal, Channel::Sms),
            job.into(),
        )
        .await
        .unwrap();
    until("the kit's job reaches the SMS provider", WAIT, || {
        !sys.http.requests_to("/sms").is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_publisher_cannot_listen_to_herald_or_read_its_streams() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("alice", Some("alice@example.org"), None, "email")])
        .await;
    let outsider = Watched::connect(&sys.nats, "publisher").await;
    for subject in [
        "herald.v1.>",
        ">",
        "_INBOX.>",
        "_INBOX_router.>",
        &subjects::delivery_jobs(Lane::Normal),
    ] {
        assert!(
            outsider.subscribe_refused(subject).await,
            "{subject} was allowed"
        );
    }
    let js = async_nats::jetstream::new(outsider.client.clone());
    for stream in [
        subjects::STREAM_AUDIT,
        subjects::STREAM_NOTIFY,
        subjects::STREAM_DLQ,
    ] {
        let read = tokio::time::timeout(Duration::from_secs(3), js.get_stream(stream)).await;
        assert!(
            !matches!(read, Ok(Ok(_))),
            "the publisher could look into {stream}"
        );
    }
    // What it may do still works: send, and hear its own answer.
    let reply = outsider
        .client
        .request(
            subjects::from_caller(subjects::INTAKE_NOTIFY, "publisher"),
            inquiry("trust-1", "alice", "INQ-1").encode_to_vec().into(),
        )
        .await
        .expect("intake answers the publisher");
    let reply = IntakeReply::decode(reply.payload).unwrap();
    assert!(
        matches!(reply.result, Some(intake_reply::Result::Accepted(_))),
        "{reply:?}"
    );
    sys.smtp.wait_for(1, WAIT).await;
}

#[tokio::test]
async fn a_publisher_cannot_send_under_another_system_s_name_and_the_trail_names_who_sent() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("alice", Some("alice@example.org"), None, "email")])
        .await;
    let billing = Watched::connect(&sys.nats, "billing").await;
    let mut req = inquiry("trust-2", "alice", "INQ-2");
    assert!(
        billing
            .publish_refused(
                &subjects::from_caller(subjects::INTAKE_NOTIFY, "publisher"),
                req.encode_to_vec()
            )
            .await,
        "billing could speak as publisher"
    );
    // Under its own name it is heard, and the trail records the caller
    // beside the requester it claims to be.
    req.requester = "crm".into();
    let reply = billing
        .client
        .request(
            subjects::from_caller(subjects::INTAKE_NOTIFY, "billing"),
            req.encode_to_vec().into(),
        )
        .await
        .expect("intake answers");
    let id = match IntakeReply::decode(reply.payload).unwrap().result {
        Some(intake_reply::Result::Accepted(a)) => a.notification_id,
        other => panic!("{other:?}"),
    };
    sys.smtp.wait_for(1, WAIT).await;
    let trail = sys.trail(&id).await;
    let accepted = trail
        .iter()
        .find(|r| r.step == herald_proto::v1::AuditStep::Accepted as i32)
        .expect("an accepted record");
    assert_eq!(accepted.caller, "billing");
    assert_eq!(
        accepted.attributes.get("requester").map(String::as_str),
        Some("crm")
    );
    // The same idempotency key from another system is another request.
    let again = sys
        .publisher
        .request(
            subjects::from_caller(subjects::INTAKE_NOTIFY, "publisher"),
            req.encode_to_vec().into(),
        )
        .await
        .expect("intake answers");
    match IntakeReply::decode(again.payload).unwrap().result {
        Some(intake_reply::Result::Accepted(a)) => {
            assert_ne!(a.notification_id, id);
            assert!(!a.duplicate);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_router_feeds_delivery_its_jobs_and_nothing_else_of_delivery_s() {
    let sys = TestSystem::start().await;
    let router = Watched::connect(&sys.nats, "router").await;
    for subject in [
        subjects::delivery_status(Channel::Sms),
        subjects::dlq(Channel::Email),
        subjects::DELIVERY_STOPS.to_string(),
        subjects::DELIVERY_STOP.to_string(),
        subjects::BROADCAST_COMMANDS.to_string(),
        subjects::case_event("CASE-1"),
    ] {
        assert!(
            router.publish_refused(&subject, b"x".to_vec()).await,
            "the router may publish {subject}"
        );
    }
    assert!(router.subscribe_refused(subjects::DELIVERY_STOP).await);
    // Its own job stream it may feed.
    let js = async_nats::jetstream::new(router.client.clone());
    let stored = js
        .publish(
            subjects::delivery_job(Lane::Normal, Channel::Sms),
            forged_sms().encode_to_vec().into(),
        )
        .await
        .expect("published")
        .await;
    assert!(stored.is_ok(), "{stored:?}");
}

#[tokio::test]
async fn an_operator_reads_the_trail_but_cannot_submit_anything() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("alice", Some("alice@example.org"), None, "email")])
        .await;
    let id = sys.notify_ok(&inquiry("trust-3", "alice", "INQ-3")).await;
    sys.smtp.wait_for(1, WAIT).await;
    let mut cfg = sys.cfg.clone();
    cfg.nats.identity = "operator".into();
    let bus = herald_runtime::bus::Bus::connect(
        &cfg.nats,
        "operator",
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("operator connects");
    let trail = herald_runtime::audit::read_trail(&bus, &subjects::audit_of_notification(&id))
        .await
        .expect("the operator reads the trail");
    assert!(!trail.is_empty());

    let operator = Watched::connect(&sys.nats, "operator").await;
    for subject in [
        subjects::from_caller(subjects::INTAKE_NOTIFY, "operator"),
        subjects::from_caller(subjects::INTAKE_CASE, "operator"),
        subjects::from_caller(subjects::INTAKE_CANCEL, "operator"),
        subjects::from_caller(subjects::BROADCAST_START, "operator"),
        subjects::delivery_job(Lane::Normal, Channel::Email),
        subjects::audit("", "forged"),
    ] {
        assert!(
            operator
                .publish_refused(&subject, inquiry("x", "alice", "y").encode_to_vec())
                .await,
            "the operator may publish {subject}"
        );
    }
    sys.wait_until_idle().await;
    assert_eq!(sys.smtp.count(), 1, "only the notification sent before");
}

#[tokio::test]
async fn a_coordinator_starts_a_broadcast_and_a_publisher_cannot() {
    let mut sys = TestSystem::start().await;
    sys.start_broadcast().await;
    sys.add_contacts(&[contact(
        "bea",
        Some("bea@example.org"),
        Some("+447700900111"),
        "email",
    )])
    .await;
    let start = StartBroadcast {
        broadcast_id: "drill-trust".into(),
        credential: COORDINATOR_TOKEN.into(),
        severity: herald_proto::v1::Severity::Minor as i32,
        audience: Some(herald_proto::v1::Audience {
            contact_ids: vec!["bea".into()],
            ..Default::default()
        }),
        messages: vec![herald_proto::v1::BroadcastMessage {
            language: "en".into(),
            subject: "Drill".into(),
            body: "This is a drill.".into(),
            speak: "This is a drill.".into(),
            sms: String::new(),
        }],
        cycles: Some(herald_proto::v1::Cycles {
            interval_seconds: 60,
            cycles: 1,
            duration_seconds: 120,
        }),
        ..Default::default()
    };
    // A publisher holding even a valid coordinator token is not let
    // through the front door.
    let outsider = Watched::connect(&sys.nats, "publisher").await;
    for name in ["publisher", "coordinator"] {
        assert!(
            outsider
                .publish_refused(
                    &subjects::from_caller(subjects::BROADCAST_START, name),
                    start.encode_to_vec()
                )
                .await,
            "a publisher reached the broadcast front door as {name}"
        );
    }
    sys.wait_until_idle().await;
    assert_eq!(sys.smtp.count(), 0);
    assert!(sys.http.requests().is_empty());

    let reply = sys
        .broadcast_request(subjects::BROADCAST_START, &start)
        .await;
    assert!(
        matches!(
            reply.result,
            Some(herald_proto::v1::broadcast_reply::Result::Accepted(_))
        ),
        "{reply:?}"
    );
    sys.smtp.wait_for(1, WAIT).await;
    // A broadcast's trail is kept under its id.
    let trail = sys.trail("drill-trust").await;
    let accepted = trail
        .iter()
        .find(|r| r.summary.starts_with("start accepted"))
        .expect("the start is documented");
    assert_eq!(accepted.caller, "coordinator");
}
