//! `herald groups` and `herald broadcast` against a running Herald, as a
//! coordinator types them.

use std::time::Duration;

use herald_proto::v1::broadcast_status_reply;
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::contact,
    system::{COORDINATOR_TOKEN, PUBLIC_URL},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_imports_a_group_starts_a_broadcast_and_follows_it_to_the_end() {
    let mut sys = TestSystem::start().await;
    sys.start_broadcast().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    sys.add_contacts(&[
        contact(
            "ida",
            Some("ida@example.org"),
            Some("+447700970001"),
            "email",
        ),
        contact("jon", Some("jon@example.org"), Some("+447700970002"), "sms"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups.yaml");
    std::fs::write(
        &groups,
        "groups:\n  - id: floor-3\n    name: Floor 3 wardens\n    members: [ida, jon]\n",
    )
    .unwrap();
    let out = herald.run(&["groups", "import", groups.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = herald.run(&["groups", "list"]);
    assert!(stdout(&out).starts_with("floor-3"), "{}", stdout(&out));
    assert!(stdout(&out).contains("2 member(s)  Floor 3 wardens"));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "- id: ghosts\n  name: Ghosts\n  members: [ida, casper]\n",
    )
    .unwrap();
    let out = herald.run(&["groups", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("member casper is not in the contact directory"),
        "{}",
        stderr(&out)
    );

    let start = [
        "broadcast",
        "start",
        "fire-3",
        "--severity",
        "extreme",
        "--group",
        "floor-3",
        "--subject",
        "Fire on floor 3",
        "--body",
        "Leave floor 3 by the east stairs.",
        "--speak",
        "Fire on floor 3. Leave by the east stairs.",
        "--cycles",
        "1",
        "--duration",
        "3s",
    ];
    // Without a credential: refused, nothing sent.
    let mut with_yes = start.to_vec();
    with_yes.push("--yes");
    let out = herald.run(&with_yes);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("refused (unauthorized): credential: is required"),
        "{}",
        stderr(&out)
    );
    // Without --yes and no terminal to ask on: not started.
    let out = herald.run_as(&start, Some(COORDINATOR_TOKEN));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("add --yes"), "{}", stderr(&out));
    // Neither attempt reached the broadcast service: once nothing is on
    // its way, it knows of no such broadcast and nothing was sent.
    sys.wait_until_idle().await;
    assert!(matches!(
        sys.broadcast_status("fire-3").await.result,
        Some(broadcast_status_reply::Result::Rejected(_))
    ));
    assert_eq!(sys.smtp.count(), 0);

    // Started and followed to its end (3 s), nobody confirming.
    let out = herald.run_as(&with_yes, Some(COORDINATOR_TOKEN));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.starts_with("started fire-3 (coordinator anna)\n"),
        "{text}"
    );
    assert!(
        text.contains("broadcast fire-3 · finished · severity extreme · started by anna"),
        "{text}"
    );
    assert!(
        text.contains("outcome: 0 confirmed, 2 not confirmed, 0 unreachable"),
        "{text}"
    );
    let mails = sys.smtp.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        mails[0]
            .body()
            .contains(&format!("{PUBLIC_URL}/v1/broadcast/confirm?b=fire-3"))
    );
    assert_eq!(sys.http.requests_to("/voice").len(), 2);

    let out = herald.run_as(
        &["broadcast", "status", "fire-3", "--recipients"],
        Some(COORDINATOR_TOKEN),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("email            2       2          2          0            0           0"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ida ") && l.ends_with("not_confirmed")),
        "{text}"
    );
    let out = herald.run_as(&["broadcast", "status", "fire-3"], Some("wrong"));
    assert_eq!(out.status.code(), Some(3));

    let out = herald.run(&["trail", "fire-3"]);
    let text = stdout(&out);
    assert!(
        text.contains("start accepted from coordinator anna"),
        "{text}"
    );
    assert!(text.contains("finished (its duration is over)"), "{text}");

    let out = herald.run(&["broadcast", "credential", "--id", "ben"]);
    let text = stdout(&out);
    assert!(text.contains("{ id = \"ben\", token_sha256 = \""), "{text}");
}
