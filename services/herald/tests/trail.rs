//! `herald trail` by client, staff, span and kind, against a running
//! Herald: every record of a client (theirs, and their cases' records that
//! name nobody), of a staff member, of one kind, and none of anyone else's;
//! the CSV export read back with a CSV parser; and the same query over
//! intake's HTTP API for a system whose key may read the trail.

use std::time::Duration;

use herald_proto::v1::NotificationRequest;
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::{contact, inquiry},
    system::PUBLISHER_API_KEY,
};

/// A records system's key that may read the whole trail.
const RECORDS_KEY: &str = "records-system-trail-key-5d21";

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
    let sys = TestSystem::start_with(|cfg| {
        cfg.intake.api_keys.push(herald_config::SystemKeys {
            system: "records".into(),
            key_sha256: vec![herald_directory::credentials::sha256_hex(RECORDS_KEY)],
            read_trail: true,
        });
    })
    .await;
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

    // Over HTTP, a system whose key may read the trail gets the same
    // records as JSON and as the same CSV; other systems are refused.
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/trail", sys.http_addr("intake"));
    // Every value here is plain text that needs no escaping.
    let get = |key: &str, query: &[(&str, &str)]| {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        http.get(format!("{url}?{}", query.join("&")))
            .bearer_auth(key)
            .send()
    };
    let json: serde_json::Value = get(RECORDS_KEY, &[("client", "alice")])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records = json["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), alice.len(), "{json:#}");
    assert!(
        records
            .iter()
            .all(|r| r["notificationId"] != to_bob.as_str()),
        "{json:#}"
    );
    let calls = get(
        RECORDS_KEY,
        &[("client", "alice"), ("type", "call"), ("format", "csv")],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(calls.status(), reqwest::StatusCode::OK);
    assert!(
        calls.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let body = calls.bytes().await.unwrap_or_else(|e| panic!("{e}"));
    let mut reader = csv::Reader::from_reader(body.as_ref());
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(rows.len(), 1, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&rows[0][5], "CASE-A");
    let not_theirs = get(PUBLISHER_API_KEY, &[("client", "alice")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(not_theirs.status(), reqwest::StatusCode::FORBIDDEN);
    let problem: serde_json::Value =
        get(RECORDS_KEY, &[("client", "alice"), ("since", "yesterday")])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(problem["field"], "since", "{problem:#}");
}
