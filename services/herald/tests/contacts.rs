//! Identity verification as staff record it with `herald contacts verify`,
//! and what it changes for sensitive content: the person gets the content
//! only once a verification names who checked, how and when, and loses it
//! when their email or phone changes. And erasure, the Data Protection
//! Officer's alone: `herald contacts erase` leaves nothing to show, and says
//! so when asked again.

use std::time::Duration;

use herald_proto::v1::{
    AuditStep, CommunicationType, ErrorCode, InlineRecipient, NotificationRequest, Recipient,
    intake_reply, recipient::Target,
};
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::to_contact,
};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "CMP-SECRET-V";

fn contacts_file(dir: &std::path::Path, kay_email: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join("contacts.yaml");
    std::fs::write(
        &path,
        format!(
            "contacts:\n\
             - id: sup-ana\n  name: Ana Supervisor\n  email: ana@example.org\n  role: supervisor\n\
             - id: kay\n  name: Kay Client\n  email: {kay_email}\n  phone: '+447700900321'\n  \
               preferred_channel: email\n  consent: {{ email: true, sms: true }}\n"
        ),
    )?;
    Ok(path)
}

fn complaint(key: &str, to: Recipient) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::FeedbackComplaint as i32,
        recipients: vec![to],
        template_id: "complaint_received".into(),
        params: [("reference".to_string(), SECRET.to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_content_waits_for_a_recorded_verification_and_a_new_address_clears_it() {
    let sys = TestSystem::start().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = contacts_file(dir.path(), "kay@example.org").expect("contacts file");
    let out = herald.run(&["contacts", "import", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Unverified: the content-free notice, even by email.
    sys.notify_ok(&complaint("v-1", to_contact("kay"))).await;
    let mails = sys.smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0].subject(), "You have a new secure message");
    assert!(!mails[0].body().contains(SECRET));

    // A verification names a verifier the directory knows, and how.
    let out = herald.run(&[
        "contacts", "verify", "kay", "--by", "nobody", "--method", "passport",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("verify_contact.by"),
        "{}",
        stderr(&out)
    );
    let out = herald.run(&[
        "contacts", "verify", "kay", "--by", "sup-ana", "--method", " ",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("verify_contact.method"),
        "{}",
        stderr(&out)
    );
    let out = herald.run(&[
        "contacts",
        "verify",
        "kay",
        "--by",
        "sup-ana",
        "--method",
        "passport seen at the desk",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("identity_verified: true"), "{shown}");
    assert!(shown.contains("by: sup-ana"), "{shown}");
    assert!(
        shown.contains("method: passport seen at the desk"),
        "{shown}"
    );

    // Verified: the content itself, by email.
    sys.notify_ok(&complaint("v-2", to_contact("kay"))).await;
    let mails = sys.smtp.wait_for(2, WAIT).await;
    assert!(mails[1].body().contains(SECRET), "{}", mails[1].body());

    // The nightly import of the same details keeps the verification ...
    let out = herald.run(&["contacts", "import", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("cleared"), "{}", stdout(&out));
    let out = herald.run(&["contacts", "show", "kay"]);
    assert!(stdout(&out).contains("by: sup-ana"), "{}", stdout(&out));

    // ... a new email address clears it, and says so.
    let moved = contacts_file(dir.path(), "kay@elsewhere.org").expect("contacts file");
    let out = herald.run(&["contacts", "import", moved.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("kay: email or phone changed, identity verification cleared"),
        "{}",
        stdout(&out)
    );
    let out = herald.run(&["contacts", "show", "kay"]);
    let shown = stdout(&out);
    assert!(shown.contains("identity_verified: false"), "{shown}");
    assert!(!shown.contains("verification"), "{shown}");
    sys.notify_ok(&complaint("v-3", to_contact("kay"))).await;
    let mails = sys.smtp.wait_for(3, WAIT).await;
    let third = mails
        .iter()
        .find(|m| m.to[0] == "kay@elsewhere.org")
        .expect("to the new address");
    assert!(!third.body().contains(SECRET));
    assert_eq!(third.subject(), "You have a new secure message");

    // An inline recipient cannot claim a verification at all.
    let inline = Recipient {
        target: Some(Target::Inline(InlineRecipient {
            name: "Lee".into(),
            email: "lee@example.org".into(),
            consent_email: true,
            identity_verified: true,
            ..Default::default()
        })),
    };
    let r = rejected(sys.notify(&complaint("v-4", inline)).await);
    assert_eq!(r.field, "recipients[0].inline.identity_verified");
    assert!(
        r.message.contains("herald contacts verify"),
        "{}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_hears_of_a_matter_only_with_the_clients_consent_and_a_withdrawal_stops_what_is_queued()
 {
    let sys = TestSystem::start().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("contacts.yaml");
    std::fs::write(
        &file,
        "contacts:\n\
         - id: kay\n  name: Kay Client\n  email: kay@example.org\n  consent: { email: true }\n\
         - id: ins-x\n  name: Insurer X\n  email: claims@insurer.example\n  \
           consent: { email: true }\n  third_party: true\n  third_party_category: insurer\n",
    )
    .expect("contacts file");
    let out = herald.run(&["contacts", "import", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let about_kay = |key: &str| NotificationRequest {
        about_contact_id: "kay".into(),
        ..herald_testkit::fixtures::inquiry(key, "ins-x", "INQ-SHARE")
    };

    // Whose matter it is must be said, and that client must have agreed.
    let unnamed = herald_testkit::fixtures::inquiry("share-0", "ins-x", "INQ-SHARE");
    let refused = rejected(sys.notify(&unnamed).await);
    assert_eq!(refused.field, "about_contact_id");
    assert_eq!(refused.code, ErrorCode::MissingConsent as i32);
    let refused = rejected(sys.notify(&about_kay("share-1")).await);
    assert_eq!(refused.field, "recipients[0].contact_id");
    assert_eq!(refused.code, ErrorCode::MissingConsent as i32);
    assert!(refused.message.contains("consent"), "{}", refused.message);

    // Consent to the kind of third party covers this one.
    let out = herald.run(&[
        "contacts",
        "consent",
        "give",
        "kay",
        "--with",
        "category:insurer",
        "--source",
        "signed form, 2 March",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("with: category:insurer"),
        "{}",
        stdout(&out)
    );
    sys.notify_ok(&about_kay("share-2")).await;
    let mail = sys
        .smtp
        .wait_for_mail_to("claims@insurer.example", "INQ-SHARE", WAIT)
        .await;
    assert!(mail.body().contains("INQ-SHARE"));

    // A send still queued (the relay refusing for now) stops when the
    // consent is withdrawn, and the trail says why.
    sys.smtp.set_tempfail(true);
    let queued = sys.notify_ok(&about_kay("share-3")).await;
    sys.wait_for_step(&queued, AuditStep::RetryScheduled, WAIT)
        .await;
    let out = herald.run(&[
        "contacts",
        "consent",
        "withdraw",
        "kay",
        "--with",
        "category:insurer",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("withdrawn_at"), "{}", stdout(&out));
    sys.smtp.set_tempfail(false);
    let trail = sys.wait_for_step(&queued, AuditStep::Cancelled, WAIT).await;
    let cancelled = trail
        .iter()
        .find(|r| r.step == AuditStep::Cancelled as i32)
        .expect("cancelled");
    assert!(
        cancelled.summary.contains("withdrew consent"),
        "{}",
        cancelled.summary
    );
    // Nothing more reaches the insurer, and nothing new is accepted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sys.smtp
            .mails_to("claims@insurer.example", "INQ-SHARE")
            .len(),
        1
    );
    let refused = rejected(sys.notify(&about_kay("share-4")).await);
    assert_eq!(refused.code, ErrorCode::MissingConsent as i32);

    // Withdrawing what is not on record says so.
    let out = herald.run(&["contacts", "consent", "withdraw", "kay", "--with", "ins-x"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("withdraw_consent.with"),
        "{}",
        stderr(&out)
    );
}

fn rejected(reply: herald_proto::v1::IntakeReply) -> herald_proto::v1::Rejected {
    match reply.result {
        Some(intake_reply::Result::Rejected(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_recorded_at_the_same_moment_as_imports_all_land() {
    use herald_proto::{
        Message, subjects,
        v1::{
            ConsentToShare, DirectoryReply, DirectoryRequest, directory_reply,
            directory_request::Op,
        },
    };
    let sys = TestSystem::start().await;
    sys.add_contacts(&[herald_testkit::fixtures::contact(
        "kay",
        Some("kay@example.org"),
        None,
        "email",
    )])
    .await;
    let directory = sys.nats.connect_as("directory").await;
    let ask = |op: Op| {
        let directory = directory.clone();
        async move {
            let req = DirectoryRequest {
                op: Some(op),
                requester: "test".into(),
            };
            let reply = directory
                .request(
                    subjects::from_caller(subjects::INTAKE_DIRECTORY, "directory"),
                    req.encode_to_vec().into(),
                )
                .await
                .expect("intake answers");
            DirectoryReply::decode(reply.payload).expect("a directory reply")
        }
    };
    // Many staff recording consents for the same client at once, while a
    // system imports her details again and again: the desk answers several
    // at a time, and no write may undo another's.
    let kay = herald_directory::contacts::Contact::from(herald_proto::v1::Contact::from(
        &herald_testkit::fixtures::contact("kay", Some("kay@example.org"), None, "email"),
    ));
    let import = || {
        ask(Op::PutContacts(herald_proto::v1::ContactList {
            contacts: vec![herald_proto::v1::Contact::from(&kay)],
        }))
    };
    let gives = (0..24).map(|i| {
        ask(Op::GiveConsent(ConsentToShare {
            id: "kay".into(),
            with: format!("category:kind-{i}"),
            source: format!("form {i}"),
        }))
    });
    let imports = (0..12).map(|_| import());
    let (given, imported) = futures::join!(
        futures::future::join_all(gives),
        futures::future::join_all(imports)
    );
    for reply in given {
        assert!(
            matches!(reply.result, Some(directory_reply::Result::Contacts(_))),
            "{reply:?}"
        );
    }
    for reply in imported {
        assert!(
            matches!(reply.result, Some(directory_reply::Result::Changed(1))),
            "{reply:?}"
        );
    }
    let shown = ask(Op::GetContact("kay".into())).await;
    let Some(directory_reply::Result::Contacts(list)) = shown.result else {
        panic!("{shown:?}")
    };
    let mut kinds: Vec<String> = list.contacts[0]
        .sharing
        .iter()
        .map(|s| s.with.clone())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        24,
        "consents lost to a concurrent write: {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_record_that_fails_its_checks_names_the_field_not_an_outage() {
    use herald_proto::{
        Message, subjects,
        v1::{
            ConsentToShare, DirectoryReply, DirectoryRequest, directory_reply,
            directory_request::Op,
        },
    };
    let sys = TestSystem::start().await;
    // Stored before verifications were records: a bare flag.
    let mut redis =
        herald_runtime::store::connect(&sys.cfg.redis, &tokio_util::sync::CancellationToken::new())
            .await
            .expect("redis");
    let key = format!(
        "{}contact:old",
        herald_proto::keyspace::DIRECTORY.prefix(&sys.cfg.redis.prefix)
    );
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(r#"{"id":"old","name":"Old","email":"old@example.org","identity_verified":true}"#)
        .query_async(&mut redis)
        .await
        .expect("stored");
    let directory = sys.nats.connect_as("directory").await;
    let req = DirectoryRequest {
        op: Some(Op::GiveConsent(ConsentToShare {
            id: "old".into(),
            with: "category:insurer".into(),
            source: "signed form".into(),
        })),
        requester: "test".into(),
    };
    let reply = directory
        .request(
            subjects::from_caller(subjects::INTAKE_DIRECTORY, "directory"),
            req.encode_to_vec().into(),
        )
        .await
        .expect("intake answers");
    let reply = DirectoryReply::decode(reply.payload).expect("a directory reply");
    let Some(directory_reply::Result::Rejected(r)) = reply.result else {
        panic!("{reply:?}")
    };
    assert_eq!(r.field, "contact.identity_verified", "{r:?}");
    assert!(r.message.contains("herald contacts verify"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_erases_a_contact_and_nobody_else_may() {
    let mut sys = TestSystem::start().await;
    sys.start_sla().await;
    sys.start_escalation().await;
    sys.start_broadcast().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = contacts_file(dir.path(), "kay@example.org").expect("contacts file");
    let out = herald.run(&["contacts", "import", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    sys.notify_ok(&complaint("e-1", to_contact("kay"))).await;
    sys.smtp.wait_for(1, WAIT).await;
    sys.wait_until_idle().await;

    // The directory identity may remove a contact, not erase one.
    let refused = herald.run(&[
        "contacts",
        "erase",
        "kay",
        "--by",
        "sup-ana",
        "--identity",
        "directory",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(herald.run(&["contacts", "show", "kay"]).status.success());

    let out = herald.run(&["contacts", "erase", "kay", "--by", "sup-ana"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    assert!(said.starts_with("erased kay: "), "{said}");
    assert!(said.contains("HERALD_AUDIT"), "{said}");
    assert!(said.contains("redis:dir"), "{said}");
    let gone = herald.run(&["contacts", "show", "kay"]);
    assert_eq!(gone.status.code(), Some(3), "{}", stdout(&gone));

    let again = herald.run(&["contacts", "erase", "kay", "--by", "sup-ana"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).starts_with("nothing of kay was left to erase"),
        "{}",
        stdout(&again)
    );
    // A reason that names the person is refused, naming the field.
    let named = herald.run(&[
        "contacts",
        "erase",
        "sup-ana",
        "--by",
        "dpo",
        "--reason",
        "Ana Supervisor asked",
    ]);
    assert_eq!(named.status.code(), Some(3), "{}", stdout(&named));
    assert!(stderr(&named).contains("reason: "), "{}", stderr(&named));
}
