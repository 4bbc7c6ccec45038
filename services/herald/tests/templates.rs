//! Template versions approved before use (SOP 004), end to end over real
//! NATS, Redis, SMTP and HTTP, driven with the `herald` command line as an
//! editor and an approver would: a proposed version is a draft that a
//! request pinning it is refused for, naming its state; once another
//! person approves it, the same request goes out with the new words, by
//! email and by SMS, without a restart, and still after one; a broken
//! proposal is refused with every problem; a rejected version stays
//! unusable; the trail says who did what to which version.

use std::time::Duration;

use herald_proto::{
    Message, subjects,
    v1::{AuditRecord, AuditStep, NotificationRequest, intake_reply},
};
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::{contact, inquiry},
};

const WAIT: Duration = Duration::from_secs(20);
const TEMPLATE: &str = "inquiry_received";

/// The next version of the shipped acknowledgement: new English words, a
/// French SMS, no Spanish.
const V2: &str = r#"
description = "Acknowledgement of a new inquiry, with the desk's hours"
params = ["reference"]

[lang.en]
subject = "Inquiry {{ reference }} received"
email = """
Dear {{ recipient_name }},

Your inquiry {{ reference }} is with our desk, open 9 to 5.
"""
sms = "Inquiry {{ reference }} is with our desk, open 9 to 5."

[lang.fr]
sms = "Demande {{ reference }} reçue ; bureau ouvert de 9 h à 17 h."
"#;

async fn start() -> (TestSystem, Cli, tempfile::TempDir) {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[
        contact("kim", Some("kim@example.org"), None, "email"),
        contact("bob", None, Some("+447700900002"), "sms"),
        contact("ed-eve", Some("eve@example.org"), None, "email"),
        contact("ap-amy", Some("amy@example.org"), None, "email"),
    ])
    .await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    (sys, herald, dir)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{name}: {e}"));
    path.to_string_lossy().to_string()
}

/// Runs `herald <args>`, which must succeed: its output.
fn ok(herald: &Cli, args: &[&str]) -> String {
    let out = herald.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs `herald <args>`, which Herald must refuse (exit 3): what it said.
/// The line `herald templates list` prints for version 2 of the template.
fn second_version(herald: &Cli) -> String {
    let listed = ok(herald, &["templates", "list", TEMPLATE]);
    listed
        .lines()
        .find(|l| l.contains(" v2 "))
        .unwrap_or_else(|| panic!("no v2 in {listed}"))
        .to_string()
}

fn refused(herald: &Cli, args: &[&str]) -> String {
    let out = herald.run(args);
    assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stdout(&out));
    stderr(&out)
}

fn pinned(key: &str, to: &str, reference: &str, version: u32) -> NotificationRequest {
    NotificationRequest {
        template_version: version,
        ..inquiry(key, to, reference)
    }
}

/// The refusal of `req`: its field and message.
async fn refusal(sys: &TestSystem, req: &NotificationRequest) -> (String, String) {
    match sys.notify(req).await.result {
        Some(intake_reply::Result::Rejected(r)) => (r.field, r.message),
        other => panic!("not refused: {other:?}"),
    }
}

/// The records of the template's trail of `step`.
async fn trail_of(sys: &TestSystem, step: AuditStep) -> Vec<AuditRecord> {
    let trail = sys.trail(&subjects::template_trail_id(TEMPLATE)).await;
    trail
        .into_iter()
        .filter(|r| r.step == step as i32)
        .collect()
}

/// Waits until intake answers again after a restart: its request
/// subjects may reach the server a moment after it reports ready.
async fn until_intake_answers(sys: &TestSystem) {
    let probe = NotificationRequest::default().encode_to_vec();
    let deadline = tokio::time::Instant::now() + WAIT;
    while sys
        .publisher
        .request(
            subjects::from_caller(subjects::INTAKE_NOTIFY, "publisher"),
            probe.clone().into(),
        )
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "intake never answered after its restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_is_refused_naming_its_state_and_once_approved_goes_out_with_its_words() {
    let (mut sys, herald, dir) = start().await;
    let file = write(&dir, "v2.toml", V2);
    let said = ok(
        &herald,
        &[
            "templates",
            "propose",
            &file,
            "--id",
            TEMPLATE,
            "--by",
            "ed-eve",
        ],
    );
    assert!(said.contains("inquiry_received v2 proposed"), "{said}");
    let v2 = second_version(&herald);
    assert!(
        v2.contains("draft") && v2.contains("proposed by ed-eve"),
        "{v2}"
    );

    // A request pinning the draft is refused, naming the version's state.
    let (field, message) = refusal(&sys, &pinned("k-1", "kim", "INQ-1", 2)).await;
    assert_eq!(field, "template_version");
    assert!(
        message.starts_with(
            "template \"inquiry_received\" version 2 is a draft, proposed by ed-eve at "
        ) && message.ends_with("not approved"),
        "{message}"
    );

    // Four eyes: the proposer cannot approve it.
    let said = refused(
        &herald,
        &["templates", "approve", TEMPLATE, "2", "--by", "ed-eve"],
    );
    assert!(
        said.contains("decide.by") && said.contains("four eyes"),
        "{said}"
    );
    let said = ok(
        &herald,
        &["templates", "approve", TEMPLATE, "2", "--by", "ap-amy"],
    );
    assert!(
        said.contains("inquiry_received v2 approved by ap-amy"),
        "{said}"
    );
    // Approving it again changes nothing (and writes nothing twice).
    let again = ok(
        &herald,
        &["templates", "approve", TEMPLATE, "2", "--by", "ap-amy"],
    );
    assert!(again.contains("v2 approved by ap-amy"), "{again}");

    // The same request now goes out with the new words, with no restart;
    // a request pinning no version gets the newest approved one.
    sys.notify_ok(&pinned("k-1", "kim", "INQ-1", 2)).await;
    let mail = sys
        .smtp
        .wait_for_mail_to("kim@example.org", "Inquiry INQ-1 received", WAIT)
        .await;
    assert!(
        mail.body().contains("is with our desk, open 9 to 5"),
        "{}",
        mail.body()
    );
    sys.notify_ok(&inquiry("k-2", "bob", "INQ-2")).await;
    let sms = sys.http.wait_for("/sms", 1, WAIT).await;
    assert_eq!(
        sms[0].field("Body"),
        Some("Inquiry INQ-2 is with our desk, open 9 to 5.")
    );
    // The version before can still be pinned.
    sys.notify_ok(&pinned("k-old", "bob", "INQ-0", 1)).await;
    let sms = sys.http.wait_for("/sms", 2, WAIT).await;
    assert!(
        sms.iter().any(|s| s.field("Body")
            == Some(
                "We received your inquiry INQ-0. A full response follows within 2 business days."
            )),
        "{sms:?}"
    );

    // The trail says who proposed and who approved which version.
    let proposed = trail_of(&sys, AuditStep::TemplateProposed).await;
    assert_eq!(proposed.len(), 1, "{proposed:#?}");
    assert_eq!(proposed[0].responsible_staff, "ed-eve");
    let approved = trail_of(&sys, AuditStep::TemplateApproved).await;
    assert_eq!(approved.len(), 1, "{approved:#?}");
    assert_eq!(approved[0].responsible_staff, "ap-amy");
    assert_eq!(approved[0].caller, "approver");
    assert_eq!(approved[0].attributes["version"], "2");
    assert_eq!(approved[0].attributes["proposed_by"], "ed-eve");
    let shown = ok(&herald, &["trail", &subjects::template_trail_id(TEMPLATE)]);
    assert!(
        shown.contains("template_approved") && shown.contains("v2 approved by ap-amy"),
        "{shown}"
    );

    // Restarted, intake and the router still know the approved version.
    sys.stop("router").await;
    sys.stop("intake").await;
    sys.start_intake().await;
    sys.start_router().await;
    until_intake_answers(&sys).await;
    sys.notify_ok(&pinned("k-3", "kim", "INQ-3", 2)).await;
    let mail = sys
        .smtp
        .wait_for_mail_to("kim@example.org", "Inquiry INQ-3 received", WAIT)
        .await;
    assert!(mail.body().contains("open 9 to 5"), "{}", mail.body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_checked_previewed_compared_and_a_rejected_one_never_used() {
    let (sys, herald, dir) = start().await;

    // Every problem of a broken proposal, each with its place; nothing
    // is stored.
    let broken = write(
        &dir,
        "broken.toml",
        "approved = true\nparams = [\"reference\"]\ndefault_language = \"de\"\n\
         [lang.en]\nsms = \"{{ unclosed\"\nvoice = \"Hello {{ caller }}\"\n\
         [lang.english]\nsms = \"Hi\"\n",
    );
    let said = refused(
        &herald,
        &[
            "templates",
            "propose",
            &broken,
            "--id",
            TEMPLATE,
            "--by",
            "ed-eve",
        ],
    );
    for needle in [
        "propose.source",
        "has 5 problem(s)",
        "approved: a proposal does not say",
        "default_language: \"de\" has no [lang.de] table",
        "[lang.en] sms: syntax error",
        "[lang.en] voice: uses \"caller\"",
        "[lang.english]: \"english\" is not a language tag",
    ] {
        assert!(said.contains(needle), "{needle:?} missing from {said}");
    }
    let listed = ok(&herald, &["templates", "list", TEMPLATE]);
    assert!(!listed.contains(" v2 "), "{listed}");

    let file = write(&dir, "v2.toml", V2);
    ok(
        &herald,
        &[
            "templates",
            "propose",
            &file,
            "--id",
            TEMPLATE,
            "--by",
            "ed-eve",
        ],
    );

    // The preview renders every language and channel the draft has.
    let shown = ok(&herald, &["templates", "preview", TEMPLATE, "2"]);
    for needle in [
        "== [lang.en] email",
        "Subject: Inquiry [reference] received",
        "Dear [recipient_name],",
        "== [lang.en] sms",
        "== [lang.fr] sms",
        "Demande [reference] reçue",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing from {shown}");
    }
    let shown = ok(
        &herald,
        &[
            "templates",
            "preview",
            TEMPLATE,
            "2",
            "--param",
            "reference=INQ-9",
            "--approver",
        ],
    );
    assert!(shown.contains("Inquiry INQ-9 is with our desk"), "{shown}");

    // The diff against the newest approved version shows the lines that
    // change, part by part.
    let diff = ok(&herald, &["templates", "diff", TEMPLATE, "2", "--approver"]);
    for needle in [
        "--- inquiry_received v1 (approved)",
        "+++ inquiry_received v2 (draft)",
        "@@ [lang.en] sms\n- We received your inquiry {{ reference }}. A full response follows within 2 business days.\n+ Inquiry {{ reference }} is with our desk, open 9 to 5.\n",
        "@@ [lang.fr] sms\n",
        "@@ [lang.es] subject\n- Hemos recibido su consulta {{ reference }}\n",
        "+ Your inquiry {{ reference }} is with our desk, open 9 to 5.\n",
    ] {
        assert!(diff.contains(needle), "{needle:?} missing from {diff}");
    }
    assert!(!diff.contains("@@ [lang.en] voice\n+"), "{diff}");

    // A rejection needs another person and a reason; then the version is
    // never used, and cannot be approved after all.
    let said = refused(
        &herald,
        &[
            "templates",
            "reject",
            TEMPLATE,
            "2",
            "--by",
            "ed-eve",
            "--reason",
            "mine",
        ],
    );
    assert!(said.contains("four eyes"), "{said}");
    let said = ok(
        &herald,
        &[
            "templates",
            "reject",
            TEMPLATE,
            "2",
            "--by",
            "ap-amy",
            "--reason",
            "too curt",
        ],
    );
    assert!(said.contains("v2 rejected by ap-amy"), "{said}");
    let v2 = second_version(&herald);
    assert!(
        v2.contains("rejected") && v2.contains("rejected by ap-amy") && v2.contains("(too curt)"),
        "{v2}"
    );
    let said = refused(
        &herald,
        &["templates", "approve", TEMPLATE, "2", "--by", "ap-amy"],
    );
    assert!(said.contains("already rejected by ap-amy"), "{said}");
    let (field, message) = refusal(&sys, &pinned("k-1", "kim", "INQ-1", 2)).await;
    assert_eq!(field, "template_version");
    assert!(message.contains("was rejected by ap-amy at"), "{message}");
    assert!(message.contains("(too curt)"), "{message}");
    // Requests pinning no version keep the shipped words.
    sys.notify_ok(&inquiry("k-2", "bob", "INQ-2")).await;
    let sms = sys.http.wait_for("/sms", 1, WAIT).await;
    assert_eq!(
        sms[0].field("Body"),
        Some("We received your inquiry INQ-2. A full response follows within 2 business days.")
    );
    // A template that exists only as a proposal starts at version 1, and
    // is refused the same way.
    let new = write(
        &dir,
        "desk.toml",
        "params = [\"reference\"]\n[lang.en]\nsms = \"Desk hours for {{ reference }}: 9 to 5\"\n",
    );
    let said = ok(
        &herald,
        &[
            "templates",
            "propose",
            &new,
            "--id",
            "desk_hours",
            "--by",
            "ed-eve",
        ],
    );
    assert!(said.contains("desk_hours v1 proposed"), "{said}");
    let req = NotificationRequest {
        template_id: "desk_hours".into(),
        ..pinned("k-9", "bob", "INQ-9", 1)
    };
    let (field, message) = refusal(&sys, &req).await;
    assert_eq!(field, "template_version");
    assert!(
        message.contains("\"desk_hours\" version 1 is a draft"),
        "{message}"
    );
    let rejected = trail_of(&sys, AuditStep::TemplateRejected).await;
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0].responsible_staff, "ap-amy");
    assert_eq!(rejected[0].attributes["reason"], "too curt");
}
