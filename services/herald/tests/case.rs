//! `herald case` against a running Herald with sla and escalation: events
//! reported from the command line, and `show` printing the clocks in the
//! team's local time and the escalation as it climbs and stops.

use std::time::Duration;

use herald_testkit::{
    TestSystem,
    cases::{client, fast_policies, staff},
    cli::{Cli, stderr, stdout},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_are_opened_shown_escalated_and_acknowledged_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut sys =
        TestSystem::start_with(|cfg| fast_policies(cfg, &path, Duration::from_secs(30))).await;
    let mut people = staff();
    people.push(client(0));
    sys.add_contacts(&people).await;
    sys.start_sla().await;
    sys.start_escalation().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);

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
