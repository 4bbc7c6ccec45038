//! End to end: a request from another system becomes an email, an SMS or a
//! call that arrives on the wire, over real NATS, Redis, SMTP and HTTP.

use std::time::Duration;

use futures::StreamExt;
use herald_proto::{
    subjects,
    v1::{
        AuditBatch, AuditRecord, AuditStep, Channel, CommunicationType, Confidentiality, ErrorCode,
        InlineRecipient, IntakeReply, Lane, NotificationRequest, Priority, Recipient, intake_reply,
        recipient::Target,
    },
};
use herald_testkit::{
    TestSystem,
    fixtures::{contact, inquiry, to_contact},
};

const WAIT: Duration = Duration::from_secs(20);

fn rejected(reply: IntakeReply) -> (ErrorCode, String, String) {
    match reply.result {
        Some(intake_reply::Result::Rejected(r)) => {
            (ErrorCode::try_from(r.code).unwrap(), r.field, r.message)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_nats_arrives_as_an_email_with_the_rendered_subject_and_body() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "alice",
        Some("alice@example.org"),
        Some("+447700900001"),
        "email",
    )])
    .await;

    let id = sys.notify_ok(&inquiry("crm-1", "alice", "INQ-1001")).await;

    let mails = sys.smtp.wait_for(1, WAIT).await;
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["alice@example.org".to_string()]);
    assert_eq!(mail.subject(), "We have received your inquiry INQ-1001");
    let body = mail.body();
    assert!(body.contains("Dear Alice,"), "{body}");
    assert!(body.contains("under reference INQ-1001"), "{body}");
    assert!(mail.header("Message-ID").unwrap().contains(&id));

    // Every step is documented, in order.
    let trail = sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    let steps: Vec<AuditStep> = trail.iter().map(|r| r.step()).collect();
    assert_eq!(
        steps,
        vec![
            AuditStep::Accepted,
            AuditStep::Routed,
            AuditStep::Rendered,
            AuditStep::Sent
        ]
    );
    assert!(trail.iter().all(|r| r.notification_id == id));
    assert_eq!(trail[0].responsible_staff, "frontline-7");
    // The trail names channels and ids, never the address or the text.
    for r in &trail {
        let text = format!("{r:?}");
        assert!(
            !text.contains("alice@example.org") && !text.contains("INQ-1001"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_who_prefers_sms_gets_an_sms_at_the_provider_webhook() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "bob",
        Some("bob@example.org"),
        Some("+447700900002"),
        "sms",
    )])
    .await;

    let id = sys.notify_ok(&inquiry("crm-2", "bob", "INQ-2002")).await;

    let got = sys.http.wait_for("/sms", 1, WAIT).await;
    let sms = &got[0];
    assert_eq!(sms.field("To"), Some("+447700900002"));
    assert_eq!(sms.field("From"), Some(sys.cfg.delivery.sms_from.as_str()));
    assert_eq!(
        sms.field("Body"),
        Some("We received your inquiry INQ-2002. A full response follows within 2 business days.")
    );
    assert_eq!(
        sms.header("idempotency-key"),
        Some(format!("{id}-r0-sms").as_str())
    );
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    // An email job would have been routed with the SMS: once nothing is on
    // its way, it would have arrived.
    sys.wait_until_idle().await;
    assert_eq!(sys.smtp.count(), 0, "an SMS-first inquiry sends no email");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_request_carries_the_words_to_speak() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("carol", None, Some("+447700900003"), "voice")])
        .await;

    let mut req = inquiry("crm-3", "carol", "INQ-3003");
    req.channel_override = vec![Channel::Voice as i32];
    sys.notify_ok(&req).await;

    let got = sys.http.wait_for("/voice", 1, WAIT).await;
    let call = &got[0];
    assert_eq!(call.field("To"), Some("+447700900003"));
    let twiml = call.field("Twiml").unwrap();
    assert!(
        twiml.starts_with("<Response><Say language=\"en\">"),
        "{twiml}"
    );
    assert!(twiml.contains("reference INQ-3003"), "{twiml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_an_error_naming_the_field_and_nothing_is_sent() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("dan", Some("dan@example.org"), None, "email")])
        .await;
    let mut no_consent = contact("erin", Some("erin@example.org"), None, "email");
    no_consent.consent.email = false;
    sys.add_contacts(&[no_consent]).await;

    let inline = |email: &str, phone: &str| Recipient {
        target: Some(Target::Inline(InlineRecipient {
            name: "X".into(),
            email: email.into(),
            phone: phone.into(),
            consent_email: true,
            consent_sms: true,
            ..Default::default()
        })),
    };
    let cases: Vec<(NotificationRequest, ErrorCode, &str)> = vec![
        (
            NotificationRequest {
                recipients: vec![inline("not an email", "")],
                ..inquiry("b1", "dan", "R")
            },
            ErrorCode::InvalidArgument,
            "recipients[0].inline.email",
        ),
        (
            NotificationRequest {
                recipients: vec![inline("", "+44 7700 900123")],
                ..inquiry("b2", "dan", "R")
            },
            ErrorCode::InvalidArgument,
            "recipients[0].inline.phone",
        ),
        (
            NotificationRequest {
                template_id: "no_such_template".into(),
                ..inquiry("b3", "dan", "R")
            },
            ErrorCode::UnknownTemplate,
            "template_id",
        ),
        (
            inquiry("b4", "nobody", "R"),
            ErrorCode::UnknownContact,
            "recipients[0].contact_id",
        ),
        (
            inquiry("b5", "erin", "R"),
            ErrorCode::MissingConsent,
            "recipients[0]",
        ),
        (
            NotificationRequest {
                recipients: vec![],
                ..inquiry("b6", "dan", "R")
            },
            ErrorCode::EmptyRecipients,
            "recipients",
        ),
        (
            NotificationRequest {
                params: Default::default(),
                ..inquiry("b7", "dan", "R")
            },
            ErrorCode::InvalidArgument,
            "params.reference",
        ),
        (
            NotificationRequest {
                idempotency_key: String::new(),
                ..inquiry("", "dan", "R")
            },
            ErrorCode::InvalidArgument,
            "idempotency_key",
        ),
    ];
    for (req, code, field) in cases {
        let (got_code, got_field, message) = rejected(sys.notify(&req).await);
        assert_eq!((got_code, got_field.as_str()), (code, field), "{message}");
        assert!(!message.is_empty());
    }

    // Oversized and undecodable payloads.
    let mut big = inquiry("b8", "dan", "R");
    big.params.insert("padding".into(), "x".repeat(4000));
    for i in 0..20 {
        big.params.insert(format!("p{i}"), "y".repeat(4000));
    }
    let (code, _, message) = rejected(sys.notify(&big).await);
    assert_eq!(code, ErrorCode::PayloadTooLarge, "{message}");
    let (code, _, _) = rejected(
        sys.notify_raw(vec![0xff, 0xff, 0xff, 0x07], Lane::Normal)
            .await,
    );
    assert_eq!(code, ErrorCode::Undecodable);

    // A good request afterwards still goes through: bad input loses nothing
    // else. Once it has arrived and nothing more is on its way, anything a
    // refused request had set going would have arrived too.
    sys.notify_ok(&inquiry("b9", "dan", "R-OK")).await;
    let mails = sys.smtp.wait_for(1, WAIT).await;
    sys.wait_until_idle().await;
    assert_eq!(
        sys.smtp.count(),
        1,
        "only the good request was sent: {mails:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_idempotency_key_sends_once_and_returns_the_first_id() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("fay", Some("fay@example.org"), None, "email")])
        .await;
    let req = inquiry("order-77-ack", "fay", "INQ-77");

    // Five retries racing each other, then one more after the first landed.
    let replies = futures::future::join_all((0..5).map(|_| sys.notify(&req))).await;
    let ids: Vec<String> = replies
        .into_iter()
        .map(|r| match r.result {
            Some(intake_reply::Result::Accepted(a)) => a.notification_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    sys.smtp.wait_for(1, WAIT).await;
    match sys.notify(&req).await.result {
        Some(intake_reply::Result::Accepted(a)) => {
            assert_eq!(a.notification_id, ids[0]);
            assert!(a.duplicate);
        }
        other => panic!("{other:?}"),
    }
    // A second send, had a repeat set one going, would still be on its way.
    sys.wait_until_idle().await;
    assert_eq!(sys.smtp.count(), 1);

    // The same key with a different request is refused, not ignored.
    let (code, field, _) = rejected(sys.notify(&inquiry("order-77-ack", "fay", "INQ-78")).await);
    assert_eq!(
        (code, field.as_str()),
        (ErrorCode::IdempotencyConflict, "idempotency_key")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_content_never_goes_over_sms_only_a_content_free_notice() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "gil",
        Some("gil@example.org"),
        Some("+447700900007"),
        "sms",
    )])
    .await;

    let req = NotificationRequest {
        idempotency_key: "complaint-9".into(),
        communication_type: CommunicationType::FeedbackComplaint as i32,
        recipients: vec![to_contact("gil")],
        template_id: "complaint_received".into(),
        params: [("reference".to_string(), "CMP-SECRET-9".to_string())].into(),
        ..Default::default()
    };
    sys.notify_ok(&req).await;

    // The content goes by email to the verified contact ...
    let mails = sys.smtp.wait_for(1, WAIT).await;
    assert!(mails[0].body().contains("CMP-SECRET-9"));
    // ... and the preferred channel gets a notice that says nothing of it.
    let sms = sys.http.wait_for("/sms", 1, WAIT).await;
    let body = sms[0].field("Body").unwrap();
    assert!(
        !body.contains("CMP-SECRET-9") && !body.to_lowercase().contains("feedback"),
        "{body}"
    );
    assert!(body.contains("secure message"), "{body}");

    // An unverified contact gets the notice even by email.
    let mut unverified = contact("hal", Some("hal@example.org"), None, "email");
    unverified.identity_verified = false;
    unverified.verification = None;
    sys.add_contacts(&[unverified]).await;
    let mut req2 = req.clone();
    req2.idempotency_key = "complaint-10".into();
    req2.recipients = vec![to_contact("hal")];
    sys.notify_ok(&req2).await;
    let mails = sys.smtp.wait_for(2, WAIT).await;
    let hal = mails.iter().find(|m| m.to[0] == "hal@example.org").unwrap();
    assert!(!hal.body().contains("CMP-SECRET-9"));
    assert_eq!(hal.subject(), "You have a new secure message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_via_grpc_is_delivered_and_a_bad_one_names_the_field() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
    let mut client = herald_testkit::grpc::client(sys.grpc_addr).await;

    let reply = client
        .notify(inquiry("grpc-1", "ivy", "INQ-G1"))
        .await
        .unwrap()
        .into_inner();
    let Some(intake_reply::Result::Accepted(a)) = reply.result else {
        panic!("{reply:?}")
    };
    assert!(a.notification_id.starts_with("ntf_"));
    let mails = sys.smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0].subject(), "We have received your inquiry INQ-G1");

    let err = client
        .notify(inquiry("grpc-2", "nobody", "R"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().starts_with("recipients[0].contact_id:"),
        "{}",
        err.message()
    );
    assert_eq!(
        err.metadata().get("x-herald-error-code").unwrap(),
        "ERROR_CODE_UNKNOWN_CONTACT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_incident_reaches_the_client_by_email_and_phone_at_once() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "jon",
        Some("jon@example.org"),
        Some("+447700900010"),
        "sms",
    )])
    .await;
    let req = NotificationRequest {
        idempotency_key: "inc-1".into(),
        communication_type: CommunicationType::Incident as i32,
        priority: Priority::Critical as i32,
        confidentiality: Confidentiality::Confidential as i32,
        recipients: vec![to_contact("jon")],
        template_id: "incident_alert".into(),
        params: [
            ("reference".to_string(), "INC-5".to_string()),
            ("summary".to_string(), "Portal outage".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let id = sys.notify_ok(&req).await;
    sys.smtp.wait_for(1, WAIT).await;
    let calls = sys.http.wait_for("/voice", 1, WAIT).await;
    assert!(calls[0].field("Twiml").unwrap().contains("Portal outage"));
    let trail = sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    assert!(
        trail.iter().all(|r| r.lane == Lane::Emergency as i32),
        "critical incidents take the emergency lane"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_french_speaking_contact_gets_french_text_and_falls_back_where_none_exists() {
    let sys = TestSystem::start().await;
    let mut c = contact(
        "kim",
        Some("kim@example.org"),
        Some("+447700900011"),
        "email",
    );
    c.language = "fr-CA".into();
    sys.add_contacts(&[c]).await;
    let mut req = inquiry("fr-1", "kim", "INQ-F1");
    req.channel_override = vec![Channel::Email as i32, Channel::Voice as i32];
    sys.notify_ok(&req).await;
    let mails = sys.smtp.wait_for(1, WAIT).await;
    assert_eq!(
        mails[0].subject(),
        "Nous avons bien reçu votre demande INQ-F1"
    );
    // The template has no French voice text: English is used.
    let calls = sys.http.wait_for("/voice", 1, WAIT).await;
    assert!(
        calls[0]
            .field("Twiml")
            .unwrap()
            .contains("<Say language=\"en\">")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_provider_endpoints_messages_land_in_the_outbox() {
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.smtp_url = None;
        cfg.delivery.sms_url = None;
    })
    .await;
    sys.add_contacts(&[contact(
        "lea",
        Some("lea@example.org"),
        Some("+447700900012"),
        "email",
    )])
    .await;
    let id = sys.notify_ok(&inquiry("outbox-1", "lea", "INQ-O1")).await;
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    let eml = std::fs::read_to_string(
        sys.outbox()
            .join("email")
            .join(format!("{id}-r0-email.eml")),
    )
    .unwrap();
    assert!(eml.contains("To: Lea <lea@example.org>"), "{eml}");
    assert!(eml.contains("INQ-O1"));
    assert_eq!(sys.smtp.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_on_the_wire_does_not_stop_the_next_one() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("max", Some("max@example.org"), None, "email")])
        .await;
    let stream_name = subjects::notify_stream(Lane::Normal);
    // JetStream says so when a consumer gives a message up for good.
    let mut terminated = sys
        .client
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream_name}.*"
        ))
        .await
        .unwrap();
    sys.client.flush().await.unwrap();

    // Garbage straight into the notifications stream, bypassing intake.
    let bus = sys.bus().await;
    let garbage = bus
        .js
        .publish(
            subjects::notify_accepted(Lane::Normal),
            vec![0xff, 0x01].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    sys.notify_ok(&inquiry("after-garbage", "max", "INQ-AG"))
        .await;
    let mails = sys.smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0].to, ["max@example.org"]);

    // The garbage was terminated, on its first delivery ...
    let advisory = tokio::time::timeout(WAIT, terminated.next())
        .await
        .expect("the garbage terminated in time")
        .expect("an advisory");
    let advisory: serde_json::Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(advisory["stream_seq"], garbage, "{advisory}");
    assert_eq!(advisory["deliveries"], 1, "{advisory}");
    // ... and is not kept for another try: once Herald is idle, the stream
    // (a work queue: it keeps what is not done) no longer holds it, and the
    // router's consumer has passed it with nothing pending, unacknowledged
    // or due for redelivery.
    sys.wait_until_idle().await;
    let mut stream = bus.js.get_stream(stream_name).await.unwrap();
    assert!(
        stream.get_raw_message(garbage).await.is_err(),
        "the garbage is still in the stream"
    );
    let mut consumers = stream.consumers();
    let mut durables = Vec::new();
    while let Some(info) = consumers.next().await {
        let info = info.unwrap();
        if info.config.durable_name.is_some() {
            durables.push(info);
        }
    }
    assert_eq!(durables.len(), 1, "the router's consumer, and only it");
    let router = &durables[0];
    assert!(router.ack_floor.stream_sequence >= garbage, "{router:?}");
    assert_eq!(
        (
            router.num_pending,
            router.num_ack_pending,
            router.num_redelivered
        ),
        (0, 0, 0),
        "{router:?}"
    );
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

/// A template with no words for a call is how the template set is
/// written, not news about each notification: the router's log stays
/// quiet however many notifications use it. A template whose call text
/// cannot be rendered is still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_without_call_text_logs_nothing_per_notification_but_a_broken_one_does() {
    let work = tempfile::tempdir().expect("work dir");
    // `bench` has SMS and email text and no voice text.
    let templates = herald_testkit::benchkit::templates(work.path()).expect("templates");
    std::fs::create_dir_all(templates.join("broken_call")).expect("template dir");
    std::fs::write(
        templates.join("broken_call/v1.toml"),
        "approved = true\n[lang.en]\nsms = \"hello\"\nvoice = \"hello {{ undeclared }}\"\n",
    )
    .expect("template written");
    let dir = templates.clone();
    let mut sys = TestSystem::start_with(move |cfg| cfg.content.templates_dir = dir).await;
    // The router as its own process, logging at warn as in production.
    sys.stop("router").await;
    let router = herald_testkit::process::ServiceProcess::spawn_with_env(
        "router",
        &sys.cfg_for("router"),
        &[("RUST_LOG", "warn")],
    );
    // Prefers SMS; email and voice are the fallbacks.
    sys.add_contacts(&[contact(
        "bob",
        Some("bob@example.org"),
        Some("+447700900002"),
        "sms",
    )])
    .await;
    let update = |key: &str, template: &str| NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::ServiceUpdate as i32,
        recipients: vec![to_contact("bob")],
        template_id: template.into(),
        params: [("seq".to_string(), key.to_string())].into(),
        requester: "crm".into(),
        ..Default::default()
    };

    for i in 0..3 {
        sys.notify_ok(&update(&format!("quiet-{i}"), "bench")).await;
    }
    sys.http.wait_for("/sms", 3, WAIT).await;
    sys.wait_until_idle().await;
    let log = router.log();
    assert!(!log.contains("WARN"), "the router warned:\n{log}");

    sys.notify_ok(&update("broken", "broken_call")).await;
    sys.http.wait_for("/sms", 4, WAIT).await;
    sys.wait_until_idle().await;
    let log = router.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("voice") && warnings[0].contains("broken_call"),
        "{log}"
    );
}

/// The audit stream's messages about one notification, as written: each
/// message is one write, holding the records of one step.
async fn audit_writes(sys: &TestSystem, notification_id: &str) -> Vec<Vec<AuditRecord>> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    use herald_proto::Message;
    let bus = sys.bus().await;
    let stream = bus
        .js
        .get_stream(subjects::STREAM_AUDIT)
        .await
        .expect("audit stream");
    let trail = subjects::audit_of_notification(notification_id);
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: trail.filter.clone(),
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut batches = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("messages");
    let mut writes = Vec::new();
    while let Some(m) = batches.next().await {
        let m = m.expect("message");
        let records = AuditBatch::decode(m.payload.clone())
            .expect("an AuditBatch")
            .records;
        // Another notification's write that shares the bucket.
        if records.iter().any(|r| trail.holds(r)) {
            writes.push(records);
        }
    }
    writes
}

/// Routing a notification is one step and one write to the audit stream:
/// the routed record, one per job rendered and one per recipient who could
/// not be reached, together. The trail still lists every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_is_one_audit_write_and_the_trail_still_lists_every_record() {
    let mut sys = TestSystem::start().await;
    sys.add_contacts(&[
        contact("bob", Some("bob@example.org"), Some("+447700900002"), "sms"),
        contact("carol", Some("carol@example.org"), None, "email"),
        contact("dora", Some("dora@example.org"), None, "email"),
    ])
    .await;
    // Dora is removed from the directory after intake accepted the
    // notification and before the router reached it.
    sys.stop("router").await;
    let mut req = inquiry("one-write", "bob", "INQ-1W");
    req.recipients = vec![to_contact("bob"), to_contact("carol"), to_contact("dora")];
    let id = sys.notify_ok(&req).await;
    let redis =
        herald_runtime::store::connect(&sys.cfg.redis, &tokio_util::sync::CancellationToken::new())
            .await
            .expect("redis");
    assert!(
        herald_directory::contacts::Directory::new(redis, &sys.cfg.redis.prefix)
            .remove("dora")
            .await
            .expect("removed")
    );
    sys.start_router().await;
    sys.http.wait_for("/sms", 1, WAIT).await;
    sys.smtp.wait_for(1, WAIT).await;
    sys.wait_until_idle().await;

    let by_router: Vec<Vec<AuditRecord>> = audit_writes(&sys, &id)
        .await
        .into_iter()
        .filter(|w| w.iter().any(|r| r.actor == "router"))
        .collect();
    assert_eq!(by_router.len(), 1, "{by_router:#?}");
    let steps: Vec<AuditStep> = by_router[0].iter().map(|r| r.step()).collect();
    assert_eq!(
        steps,
        [
            AuditStep::Accepted,
            AuditStep::Routed,
            AuditStep::Rendered,
            AuditStep::Rendered,
            AuditStep::Skipped
        ]
    );

    let trail = sys.trail(&id).await;
    let gone = trail
        .iter()
        .find(|r| r.step() == AuditStep::Skipped)
        .expect("dora's skip is in the trail");
    assert_eq!(gone.contact_id, "dora");
    // Named after the notification and the recipient, as every other
    // record of the step is: a redelivery writes the same record again.
    assert_eq!(gone.record_id, format!("{id}-r2-gone"));
    assert!(
        gone.summary.contains("no longer in the directory"),
        "{gone:?}"
    );
    assert_eq!(
        trail
            .iter()
            .filter(|r| r.step() == AuditStep::Rendered)
            .count(),
        2
    );
}

/// "Accepted" is never answered without its record: the record is stored
/// with the notification, in the same write, and the router puts it in the
/// trail as the first record of its step. While the audit stream refuses
/// writes, a request is still accepted and the router keeps its step
/// unfinished (the notification unacknowledged, retried); once the stream
/// takes writes, the trail holds exactly one "accepted" record, first, and
/// the email has gone out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accepted_record_travels_with_the_notification_and_reaches_the_trail_once() {
    use async_nats::jetstream::stream::DiscardPolicy;

    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
    let bus = sys.bus().await;
    let mut audit = bus
        .js
        .get_stream(subjects::STREAM_AUDIT)
        .await
        .expect("audit stream");
    let usual = audit.info().await.expect("info").config.clone();
    let mut full = usual.clone();
    full.max_bytes = 1;
    full.discard = DiscardPolicy::New;
    bus.js.update_stream(full).await.expect("audit stream full");

    let req = inquiry("undocumented-accept", "ivy", "INQ-AUD");
    let id = sys.notify_ok(&req).await;
    // The router's step is retried, undocumented, for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sys.trail(&id).await.is_empty());

    bus.js
        .update_stream(usual)
        .await
        .expect("audit stream back");
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    // A retry of the request changes nothing.
    let again = sys.notify(&req).await;
    assert!(
        matches!(again.result, Some(intake_reply::Result::Accepted(ref a)) if a.notification_id == id)
    );
    sys.wait_until_idle().await;
    let trail = sys.trail(&id).await;
    assert_eq!(trail.first().map(|r| r.step()), Some(AuditStep::Accepted));
    assert_eq!(
        trail
            .iter()
            .filter(|r| r.step() == AuditStep::Accepted)
            .count(),
        1
    );
    assert_eq!(trail[0].caller, "publisher");
    assert_eq!(sys.smtp.count(), 1, "sent once");
}
