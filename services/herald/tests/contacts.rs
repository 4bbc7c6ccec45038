//! Identity verification as staff record it with `herald contacts verify`,
//! and what it changes for sensitive content: the person gets the content
//! only once a verification names who checked, how and when, and loses it
//! when their email or phone changes.

use std::time::Duration;

use herald_proto::v1::{
    CommunicationType, InlineRecipient, NotificationRequest, Recipient, intake_reply,
    recipient::Target,
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
    let reply = sys.notify(&complaint("v-4", inline)).await;
    let Some(intake_reply::Result::Rejected(r)) = reply.result else {
        panic!("{reply:?}")
    };
    assert_eq!(r.field, "recipients[0].inline.identity_verified");
    assert!(
        r.message.contains("herald contacts verify"),
        "{}",
        r.message
    );
}
