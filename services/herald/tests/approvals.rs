//! Approval before first contact (SOP 004), end to end over real NATS,
//! Redis, SMTP and HTTP: a first message to a parent waits until a
//! supervisor approves it (by the signed link in their email or with
//! `herald approvals`), goes out once when approved, never when denied or
//! left undecided, and the staff member who asked is told each outcome.
//! Later messages to the same parent about the same matter go straight
//! through.

use std::time::Duration;

use herald_config::{ApprovalRule, Config};
use herald_proto::Message;
use herald_proto::v1::{
    AuditRecord, AuditStep, CommunicationType, NotificationRequest, intake_reply,
};
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::to_contact,
};

const WAIT: Duration = Duration::from_secs(20);
const PARENT: &str = "pat@example.org";
const SUPERVISOR: &str = "ana@example.org";
const TEACHER: &str = "tom@example.org";

fn with_rule(cfg: &mut Config, timeout: Duration) {
    cfg.approvals.signing_key = Some("approval-links-0123456789".into());
    cfg.approvals.timeout = timeout;
    cfg.approvals.rules = vec![ApprovalRule {
        name: "parents".into(),
        roles: vec!["parent".into(), "guardian".into()],
        groups: Vec::new(),
        communication_types: Vec::new(),
        approvers: Vec::new(),
        approver_role: Some("supervisor".into()),
    }];
}

fn directory(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("contacts.yaml");
    std::fs::write(
        &path,
        format!(
            "contacts:\n\
             - id: sup-ana\n  name: Ana Supervisor\n  email: {SUPERVISOR}\n  role: supervisor\n  \
               consent: {{ email: true }}\n\
             - id: teacher-tom\n  name: Tom Teacher\n  email: {TEACHER}\n  role: teacher\n  \
               consent: {{ email: true }}\n\
             - id: parent-pat\n  name: Pat Parent\n  email: {PARENT}\n  role: parent\n  \
               preferred_channel: email\n  consent: {{ email: true }}\n\
             - id: pupil-kim\n  name: Kim Pupil\n  email: kim@example.org\n  role: pupil\n  \
               consent: {{ email: true }}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("contacts file: {e}"));
    path
}

async fn start(timeout: Duration) -> (TestSystem, Cli, tempfile::TempDir) {
    let sys = TestSystem::start_with(|cfg| with_rule(cfg, timeout)).await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let file = directory(dir.path());
    let out = herald.run(&["contacts", "import", &file.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    (sys, herald, dir)
}

fn update(key: &str, to: &str, case: &str, text: &str) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::ServiceUpdate as i32,
        recipients: vec![to_contact(to)],
        template_id: "service_update".into(),
        params: [
            ("reference".to_string(), case.to_string()),
            ("update".to_string(), text.to_string()),
        ]
        .into(),
        case_id: case.into(),
        requester: "teacher-tom".into(),
        ..Default::default()
    }
}

/// Submits `req`: its id, and whether it waits for approval.
async fn submit(sys: &TestSystem, req: &NotificationRequest) -> (String, bool) {
    match sys.notify(req).await.result {
        Some(intake_reply::Result::Accepted(a)) => (a.notification_id, a.awaiting_approval),
        other => panic!("not accepted: {other:?}"),
    }
}

fn steps(trail: &[AuditRecord], step: AuditStep) -> Vec<&AuditRecord> {
    trail.iter().filter(|r| r.step == step as i32).collect()
}

/// The approve or deny link of an approval email, pointed at the test's
/// own intake.
fn link(sys: &TestSystem, body: &str, name: &str) -> String {
    let line = body
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} link in {body}"));
    let url = line.trim_start_matches(name).trim();
    let path = url.find("/v1/").map_or(url, |at| &url[at..]);
    format!("http://{}{path}", sys.http_addr("intake"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_contact_with_a_parent_waits_for_approval_and_goes_once_approved() {
    let (sys, herald, _dir) = start(Duration::from_secs(3600)).await;

    // A pupil is no parent: their message goes straight out.
    let (_, waits) = submit(
        &sys,
        &update("k-1", "pupil-kim", "CASE-1", "Trip on Monday"),
    )
    .await;
    assert!(!waits);
    sys.smtp
        .wait_for_mail_to("kim@example.org", "Trip on Monday", WAIT)
        .await;

    let (id, waits) = submit(
        &sys,
        &update("p-1", "parent-pat", "CASE-1", "Trip on Monday"),
    )
    .await;
    assert!(waits, "a first contact with a parent is held");
    let ask = sys
        .smtp
        .wait_for_mail_to(SUPERVISOR, "Approval needed", WAIT)
        .await;
    assert!(ask.body().contains("Pat Parent"), "{}", ask.body());
    assert!(ask.body().contains("CASE-1"), "{}", ask.body());
    let trail = sys
        .wait_for_step(&id, AuditStep::AwaitingApproval, WAIT)
        .await;
    assert_eq!(steps(&trail, AuditStep::Accepted).len(), 1, "{trail:#?}");
    let awaiting = steps(&trail, AuditStep::AwaitingApproval)[0];
    assert_eq!(awaiting.contact_id, "parent-pat");
    assert_eq!(awaiting.attributes["approvers"], "sup-ana");

    let out = herald.run(&["approvals", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));

    // Opening the link changes nothing; an edited link is refused.
    let http = reqwest::Client::new();
    let approve = link(&sys, &ask.body(), "Approve:");
    let page = http.get(&approve).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("text").contains("<button"));
    let forged = http
        .post(approve.replace("d=approve", "d=deny"))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 403);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sys.smtp.mails_to(PARENT, "").is_empty(),
        "nothing before approval"
    );

    // The button approves; the parent gets the message once, and the
    // teacher hears it went.
    let done = http.post(&approve).send().await.expect("approve");
    assert_eq!(done.status(), 200);
    sys.smtp
        .wait_for_mail_to(PARENT, "Trip on Monday", WAIT)
        .await;
    let told = sys
        .smtp
        .wait_for_mail_to(TEACHER, "approved by sup-ana", WAIT)
        .await;
    assert!(told.subject().contains("Pat Parent"), "{}", told.subject());
    let trail = sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    let decided = steps(&trail, AuditStep::ApprovalDecided);
    assert_eq!(decided.len(), 1, "{trail:#?}");
    assert_eq!(decided[0].attributes["decision"], "approved");
    assert_eq!(decided[0].attributes["decided_by"], "sup-ana");
    assert_eq!(steps(&trail, AuditStep::Accepted).len(), 1, "{trail:#?}");

    // Pressing again decides nothing more.
    let again = http.post(&approve).send().await.expect("again");
    assert_eq!(again.status(), 409);

    // The next message about the same matter goes straight through; a new
    // matter asks again.
    let (_, waits) = submit(&sys, &update("p-2", "parent-pat", "CASE-1", "Bring a coat")).await;
    assert!(!waits, "approval covers the matter");
    sys.smtp
        .wait_for_mail_to(PARENT, "Bring a coat", WAIT)
        .await;
    let (_, waits) = submit(&sys, &update("p-3", "parent-pat", "CASE-2", "Exam dates")).await;
    assert!(waits, "another matter is another first contact");

    let out = herald.run(&["approvals", "show", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("approved"), "{}", stdout(&out));
    assert!(stdout(&out).contains("sup-ana"), "{}", stdout(&out));

    sys.wait_until_idle().await;
    assert_eq!(
        sys.smtp.mails_to(PARENT, "Trip on Monday").len(),
        1,
        "sent once"
    );
    assert!(sys.smtp.mails_to(PARENT, "Exam dates").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_or_undecided_first_contact_sends_nothing_and_the_requester_is_told() {
    let (sys, herald, _dir) = start(Duration::from_secs(4)).await;

    let (denied, _) = submit(&sys, &update("d-1", "parent-pat", "CASE-7", "Detention")).await;
    sys.smtp.wait_for_mail_to(SUPERVISOR, "CASE-7", WAIT).await;
    // Only an approver of this approval may decide it.
    let out = herald.run(&[
        "approvals",
        "deny",
        &denied,
        "--by",
        "teacher-tom",
        "--reason",
        "no",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stderr(&out).contains("decide.by"), "{}", stderr(&out));
    let out = herald.run(&[
        "approvals",
        "deny",
        &denied,
        "--by",
        "sup-ana",
        "--reason",
        "call the family first",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let told = sys
        .smtp
        .wait_for_mail_to(TEACHER, "denied by sup-ana", WAIT)
        .await;
    assert!(
        told.body().contains("call the family first"),
        "{}",
        told.body()
    );
    let out = herald.run(&["approvals", "approve", &denied, "--by", "sup-ana"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("already denied"), "{}", stderr(&out));
    let trail = sys
        .wait_for_step(&denied, AuditStep::ApprovalDecided, WAIT)
        .await;
    assert_eq!(
        steps(&trail, AuditStep::ApprovalDecided)[0].attributes["decision"],
        "denied"
    );

    // Nobody decides: refused at the deadline, never sent.
    let (lapsed, _) = submit(&sys, &update("t-1", "parent-pat", "CASE-8", "Sports day")).await;
    sys.smtp.wait_for_mail_to(SUPERVISOR, "CASE-8", WAIT).await;
    let trail = sys
        .wait_for_step(&lapsed, AuditStep::ApprovalDecided, WAIT)
        .await;
    let decided = steps(&trail, AuditStep::ApprovalDecided);
    assert_eq!(decided[0].attributes["decision"], "timed_out");
    sys.smtp
        .wait_for_mail_to(TEACHER, "not decided in time", WAIT)
        .await;
    let out = herald.run(&["approvals", "approve", &lapsed, "--by", "sup-ana"]);
    assert_eq!(out.status.code(), Some(3));
    let out = herald.run(&["approvals", "list"]);
    assert!(
        stdout(&out).contains("nothing is waiting"),
        "{}",
        stdout(&out)
    );

    sys.wait_until_idle().await;
    assert!(
        sys.smtp.mails_to(PARENT, "").is_empty(),
        "nothing reached the parent"
    );
    for id in [&denied, &lapsed] {
        let trail = sys.trail(id).await;
        assert!(steps(&trail, AuditStep::Sent).is_empty(), "{trail:#?}");
        assert!(steps(&trail, AuditStep::Routed).is_empty(), "{trail:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_first_contact_survives_a_restart_of_intake_and_goes_once() {
    let (mut sys, herald, _dir) = start(Duration::from_secs(3600)).await;
    let (id, waits) = submit(
        &sys,
        &update("r-1", "parent-pat", "CASE-5", "Parents' evening"),
    )
    .await;
    assert!(waits);
    sys.smtp.wait_for_mail_to(SUPERVISOR, "CASE-5", WAIT).await;

    sys.stop("intake").await;
    sys.start_intake().await;
    // A caller retries until the restarted intake answers: its request
    // subjects may reach the server a moment after it reports ready.
    let probe = NotificationRequest::default().encode_to_vec();
    let deadline = tokio::time::Instant::now() + WAIT;
    while sys
        .publisher
        .request(
            herald_proto::subjects::from_caller(herald_proto::subjects::INTAKE_NOTIFY, "publisher"),
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
    // The retried request finds its hold: still one approval, still held.
    let (again, _) = submit(
        &sys,
        &update("r-1", "parent-pat", "CASE-5", "Parents' evening"),
    )
    .await;
    assert_eq!(again, id);
    let out = herald.run(&["approvals", "approve", &id, "--by", "sup-ana"]);
    assert!(out.status.success(), "{}", stderr(&out));
    sys.smtp
        .wait_for_mail_to(PARENT, "Parents' evening", WAIT)
        .await;
    sys.wait_until_idle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sys.smtp.mails_to(PARENT, "Parents' evening").len(), 1);
    assert_eq!(
        sys.smtp.mails_to(SUPERVISOR, "CASE-5").len(),
        1,
        "asked once"
    );
}
