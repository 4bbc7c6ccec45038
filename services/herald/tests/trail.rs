//! `herald trail` by client, staff, span and kind, against a running
//! Herald: every record of a client (theirs, and their cases' records that
//! name nobody), of a staff member, of one kind, and none of anyone else's;
//! the CSV export read back with a CSV parser.

use std::time::Duration;

use herald_proto::v1::NotificationRequest;
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::{contact, inquiry},
};

fn for_staff(mut req: NotificationRequest, staff: &str) -> NotificationRequest {
    req.responsible_staff = staff.into();
    req
}

/// The JSON lines `herald trail` printed.
fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_and_a_staff_members_trail_hold_theirs_and_nobody_elses() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[
        contact("alice", Some("alice@example.org"), None, "email"),
        contact("bob", Some("bob@example.org"), None, "email"),
        contact("fl-sam", Some("sam@staff.example.org"), None, "email"),
        contact("fl-kim", Some("kim@staff.example.org"), None, "email"),
    ])
    .await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let ok = |args: &[&str]| {
        let out = herald.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let to_alice = sys
        .notify_ok(&for_staff(inquiry("t-1", "alice", "INQ-1"), "fl-sam"))
        .await;
    let to_bob = sys
        .notify_ok(&for_staff(inquiry("t-2", "bob", "INQ-2"), "fl-kim"))
        .await;
    ok(&[
        "case",
        "open",
        "CASE-A",
        "--client",
        "alice",
        "--channel",
        "email",
        "--staff",
        "fl-sam",
    ]);
    ok(&[
        "case",
        "log",
        "CASE-A",
        "--kind",
        "call",
        "--summary",
        "Explained the delay",
        "--by",
        "fl-sam",
    ]);
    sys.smtp.wait_for(2, Duration::from_secs(20)).await;
    sys.wait_until_idle().await;

    let alice = lines(&ok(&["trail", "--client", "alice", "--json"]));
    let ids: Vec<&str> = alice
        .iter()
        .map(|r| r["notification_id"].as_str().unwrap_or_default())
        .collect();
    assert!(ids.contains(&to_alice.as_str()), "{alice:#?}");
    assert!(
        !ids.contains(&to_bob.as_str()),
        "bob's records in alice's trail: {alice:#?}"
    );
    for step in ["accepted", "sent", "case_event"] {
        assert!(
            alice.iter().any(|r| r["step"] == step),
            "no {step}: {alice:#?}"
        );
    }
    // The call names nobody: it is alice's because the case is.
    let calls = lines(&ok(&[
        "trail", "--client", "alice", "--type", "call", "--json",
    ]));
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["case_id"], "CASE-A");
    assert_eq!(
        calls[0]["attributes"]["interaction_summary"],
        "Explained the delay"
    );
    // Oldest first.
    let at: Vec<&str> = alice
        .iter()
        .map(|r| r["at"].as_str().unwrap_or_default())
        .collect();
    let mut sorted = at.clone();
    sorted.sort();
    assert_eq!(at, sorted);

    let sam = lines(&ok(&["trail", "--staff", "fl-sam", "--json"]));
    assert!(
        sam.iter().all(|r| r["notification_id"] != to_bob.as_str()),
        "{sam:#?}"
    );
    assert!(
        sam.iter()
            .any(|r| r["notification_id"] == to_alice.as_str())
    );
    let kim = herald.run(&["trail", "--staff", "fl-kim", "--client", "alice", "--json"]);
    assert_eq!(
        kim.status.code(),
        Some(3),
        "alice's records are not kim's: {}",
        stdout(&kim)
    );

    // A span before anything happened holds nothing; one around it all
    // holds the same as none.
    let none = herald.run(&["trail", "--client", "alice", "--until", "2020-01-01"]);
    assert_eq!(none.status.code(), Some(3), "{}", stdout(&none));
    let all = lines(&ok(&[
        "trail",
        "--client",
        "alice",
        "--since",
        "2020-01-01",
        "--until",
        "2999-12-31",
        "--json",
    ]));
    assert_eq!(all.len(), alice.len());
    let bad = herald.run(&["trail", "--client", "alice", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    // The CSV reads back as a table with the same records.
    let csv = ok(&["trail", "--client", "alice", "--csv"]);
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    let header = reader.headers().unwrap_or_else(|e| panic!("{e}")).clone();
    assert_eq!(&header[0], "at");
    assert_eq!(&header[9], "summary");
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(rows.len(), alice.len());
    let call = rows
        .iter()
        .find(|r| r[10].contains("Explained the delay"))
        .unwrap_or_else(|| panic!("no call row"));
    let attributes: serde_json::Value =
        serde_json::from_str(&call[10]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(attributes["interaction"], "call");
}
