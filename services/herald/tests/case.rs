//! `herald case` against a running Herald with sla and escalation: events
//! reported from the command line, and `show` printing the clocks in the
//! team's local time and the escalation as it climbs and stops.

use std::time::Duration;

use herald_testkit::{
    TestSystem,
    cases::{client, fast_policies, staff},
    cli::{Cli, stderr, stdout},
};

/// A system with sla and escalation on the fast policies (levels 30 s
/// apart), the staff and one client in the directory, and the command line.
async fn cases_system() -> (TestSystem, Cli, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().to_path_buf();
    let mut sys =
        TestSystem::start_with(|cfg| fast_policies(cfg, &path, Duration::from_secs(30))).await;
    let mut people = staff();
    people.push(client(0));
    sys.add_contacts(&people).await;
    sys.start_sla().await;
    sys.start_escalation().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    (sys, herald, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_are_opened_shown_escalated_and_acknowledged_from_the_command_line() {
    let (sys, herald, _dir) = cases_system().await;

    // A ticket: an hour to acknowledge on the fast policies.
    let open = herald.run(&[
        "case",
        "open",
        "CASE-CLI",
        "--client",
        "client-0",
        "--channel",
        "ticket",
        "--team",
        "support",
        "--staff",
        "fl-sam",
        "--reference",
        "INQ-77",
        "--by",
        "crm",
    ]);
    assert!(open.status.success(), "{}", stderr(&open));
    assert!(
        stdout(&open).starts_with("accepted: CASE-CLI opened"),
        "{}",
        stdout(&open)
    );

    let show = loop {
        let o = herald.run(&["case", "show", "CASE-CLI"]);
        if o.status.success() && stdout(&o).contains("acknowledgement") {
            break stdout(&o);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The deadline is printed in the team calendar's zone, with the time
    // left.
    assert!(show.contains("calendar always, Europe/London"), "{show}");
    assert!(
        show.contains("acknowledgement  running  1h (slow_ticket); due"),
        "{show}"
    );
    assert!(show.contains(" left"), "{show}");
    assert!(show.contains("GMT") || show.contains("BST"), "{show}");
    assert!(show.contains("escalation\n  none"), "{show}");

    // Escalate now: the team lead is notified.
    let esc = herald.run(&["case", "escalate", "CASE-CLI", "--reason", "client asked"]);
    assert!(esc.status.success(), "{}", stderr(&esc));
    sys.smtp.wait_for(2, Duration::from_secs(10)).await;
    let shown = loop {
        let s = stdout(&herald.run(&["case", "show", "CASE-CLI"]));
        if s.contains("notified: tl-kim") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        shown.contains("active: level 2 (team lead), notice 1"),
        "{shown}"
    );
    assert!(shown.contains("next level or repeat:"), "{shown}");

    let ack = herald.run(&["case", "ack", "CASE-CLI", "--by", "tl-kim"]);
    assert!(ack.status.success(), "{}", stderr(&ack));
    let shown = loop {
        let s = stdout(&herald.run(&["case", "show", "CASE-CLI", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        if v["escalation"]["state"] == "stopped" {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown["escalation"]["stopped_by"], "acknowledged by tl-kim");
    assert_eq!(shown["clocks"]["clocks"][0]["state"], "stopped");

    // Mistakes: bad usage is 2, a refusal 3 naming the field.
    let bad = herald.run(&[
        "case",
        "open",
        "CASE-X",
        "--client",
        "client-0",
        "--channel",
        "fax",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let never = herald.run(&["case", "resolve", "CASE-NEVER"]);
    assert_eq!(never.status.code(), Some(3));
    assert!(
        stderr(&never).contains("case_id: case CASE-NEVER was never opened"),
        "{}",
        stderr(&never)
    );
    let unknown = herald.run(&["case", "show", "CASE-NEVER"]);
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_logged_from_the_command_line_is_in_the_trail_and_its_action_reminds_its_owner() {
    let (sys, herald, _dir) = cases_system().await;
    let open = herald.run(&[
        "case",
        "open",
        "CASE-LOG",
        "--client",
        "client-0",
        "--channel",
        "phone",
        "--team",
        "support",
        "--staff",
        "fl-sam",
    ]);
    assert!(open.status.success(), "{}", stderr(&open));

    // Bad input is refused naming what is wrong, and nothing is logged.
    let vague = herald.run(&[
        "case",
        "log",
        "CASE-LOG",
        "--kind",
        "call",
        "--summary",
        "x",
        "--action",
        "Call back soon",
        "--by",
        "fl-sam",
    ]);
    assert_eq!(vague.status.code(), Some(2), "{}", stderr(&vague));
    assert!(stderr(&vague).contains("say when"), "{}", stderr(&vague));
    let nobody = herald.run(&[
        "case",
        "log",
        "CASE-LOG",
        "--kind",
        "call",
        "--summary",
        "x",
        "--action",
        "Call back by 2030-01-01",
        "--owner",
        "nobody",
    ]);
    assert_eq!(nobody.status.code(), Some(3), "{}", stderr(&nobody));
    assert!(
        stderr(&nobody).contains("interaction.actions[0].owner"),
        "{}",
        stderr(&nobody)
    );

    // A call with an action already due: its owner is reminded at once.
    let due = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    let logged = herald.run(&[
        "case",
        "log",
        "CASE-LOG",
        "--kind",
        "call",
        "--summary",
        "Agreed to move the delivery to Friday",
        "--outcome",
        "client accepts the new date",
        "--action",
        &format!("Send the revised schedule by {due}"),
        "--by",
        "fl-sam",
        "--event-id",
        "call-1",
    ]);
    assert!(logged.status.success(), "{}", stderr(&logged));
    assert!(
        stdout(&logged).contains("interaction logged"),
        "{}",
        stdout(&logged)
    );
    let reminder = sys
        .smtp
        .wait_for_mail_to(
            "sam@staff.example.org",
            "Send the revised schedule",
            Duration::from_secs(20),
        )
        .await;
    assert!(
        reminder.subject().starts_with("Overdue"),
        "{}",
        reminder.subject()
    );
    assert!(reminder.body().contains("call-1/1"), "{}", reminder.body());

    // The trail holds the interaction as SOP 001 §4.1 asks: kind, summary,
    // outcome, the action with its owner and deadline, who recorded it.
    let trail = sys
        .wait_for_case_steps(
            "CASE-LOG",
            herald_proto::v1::AuditStep::FollowUp,
            1,
            Duration::from_secs(20),
        )
        .await;
    let record = trail
        .iter()
        .find(|r| r.attributes.get("interaction").map(String::as_str) == Some("call"))
        .unwrap_or_else(|| panic!("no interaction record: {trail:#?}"));
    assert_eq!(record.summary, "call logged, 1 action item");
    assert_eq!(record.actor, "fl-sam");
    assert_eq!(
        record.attributes["interaction_summary"],
        "Agreed to move the delivery to Friday"
    );
    assert_eq!(record.attributes["outcome"], "client accepts the new date");
    assert!(
        record.attributes["action_1"].starts_with("Send the revised schedule (owner fl-sam, due "),
        "{:?}",
        record.attributes
    );
    assert!(
        trail.iter().any(|r| r
            .summary
            .starts_with("action call-1/1 overdue: reminder 1 sent to fl-sam")),
        "{trail:#?}"
    );

    let show = stdout(&herald.run(&["case", "show", "CASE-LOG"]));
    assert!(show.contains("action items"), "{show}");
    assert!(show.contains("call-1/1"), "{show}");
    assert!(
        show.contains("open  Send the revised schedule (owner fl-sam"),
        "{show}"
    );
    let done = herald.run(&["case", "done", "CASE-LOG", "call-1/1", "--by", "fl-sam"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let show = loop {
        let s = stdout(&herald.run(&["case", "show", "CASE-LOG"]));
        if s.contains("done  Send the revised schedule") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(show.contains("reminded 1x"), "{show}");
    // Interactions are logged on resolved cases too (a follow-up call).
    assert!(
        herald
            .run(&["case", "resolve", "CASE-LOG"])
            .status
            .success()
    );
    let after = herald.run(&[
        "case",
        "log",
        "CASE-LOG",
        "--kind",
        "in-person",
        "--summary",
        "Checked all was well",
        "--by",
        "fl-sam",
    ]);
    assert!(after.status.success(), "{}", stderr(&after));
    sys.wait_until_idle().await;
    assert_eq!(
        sys.smtp
            .mails_to("sam@staff.example.org", "Send the revised schedule")
            .len(),
        1,
        "reminded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_reaches_its_department_and_the_client_hears_each_step() {
    let (sys, herald, _dir) = cases_system().await;
    let wait = Duration::from_secs(20);
    let ok = |args: &[&str]| {
        let out = herald.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    ok(&[
        "case",
        "open",
        "CASE-FB",
        "--client",
        "client-0",
        "--channel",
        "ticket",
        "--team",
        "support",
        "--staff",
        "fl-sam",
        "--reference",
        "INV-9",
    ]);
    ok(&["case", "resolve", "CASE-FB", "--by", "fl-sam"]);

    let bad = herald.run(&[
        "case",
        "feedback",
        "CASE-FB",
        "--rating",
        "2",
        "--category",
        "Billing Dept",
    ]);
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("feedback.category"),
        "{}",
        stderr(&bad)
    );

    ok(&[
        "case",
        "feedback",
        "CASE-FB",
        "--rating",
        "2",
        "--category",
        "billing",
        "--comment",
        "The invoice charged me twice",
    ]);
    // Billing goes to Finance (management here), with the client's words;
    // the client hears it arrived.
    let relayed = sys
        .smtp
        .wait_for_mail_to("joe@staff.example.org", "Feedback on INV-9", wait)
        .await;
    assert!(
        relayed.body().contains("The invoice charged me twice"),
        "{}",
        relayed.body()
    );
    assert!(
        relayed.subject().contains("Finance"),
        "{}",
        relayed.subject()
    );
    sys.smtp
        .wait_for_mail_to(
            "client-0@clients.example.org",
            "Thank you for your feedback",
            wait,
        )
        .await;
    assert!(
        sys.smtp
            .mails_to("kim@staff.example.org", "Feedback on")
            .is_empty(),
        "another department's lead is not told"
    );

    let bad = herald.run(&["feedback", "update", "CASE-FB", "--status", "received"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    ok(&[
        "feedback",
        "update",
        "CASE-FB",
        "--status",
        "in-progress",
        "--note",
        "We are checking the payments",
        "--by",
        "mgr-joe",
    ]);
    let news = sys
        .smtp
        .wait_for_mail_to(
            "client-0@clients.example.org",
            "We are working on your feedback",
            wait,
        )
        .await;
    assert!(
        news.body().contains("We are checking the payments"),
        "{}",
        news.body()
    );
    ok(&[
        "feedback",
        "update",
        "CASE-FB",
        "--status",
        "resolved",
        "--note",
        "The second charge is refunded",
        "--by",
        "mgr-joe",
    ]);
    sys.smtp
        .wait_for_mail_to("client-0@clients.example.org", "has been resolved", wait)
        .await;

    let show = loop {
        let s = ok(&["feedback", "show", "CASE-FB"]);
        if s.contains("billing, rated 2/5, resolved (department Finance, told mgr-joe)") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(show.contains("feedback"), "{show}");
    let trail = sys.case_trail("CASE-FB").await;
    let said: Vec<&str> = trail.iter().map(|r| r.summary.as_str()).collect();
    for want in [
        "feedback received: rating 2/5, about billing",
        "feedback (billing) relayed to Finance: mgr-joe; the client was told",
        "feedback in progress: the client was told",
        "feedback resolved: the client was told",
    ] {
        assert!(said.contains(&want), "{want:?} not in {said:#?}");
    }
    assert!(
        !format!("{trail:?}").contains("charged me twice"),
        "the client's words stay out of the trail"
    );
}
