//! `herald dlq` against a running Herald: real dead letters, listed, shown
//! and replayed by the command an operator types.

use std::time::Duration;

use herald_proto::v1::AuditStep;
use herald_testkit::{
    TestSystem,
    cli::{Cli, stderr, stdout},
    fixtures::{contact, inquiry},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let sys = TestSystem::start().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    sys.add_contacts(&[contact("dora", Some("dora@example.org"), None, "email")])
        .await;
    sys.smtp.reject_mailbox("dora@example.org");
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(
            sys.notify_ok(&inquiry(&format!("dlq-{k}"), "dora", &format!("INQ-D{k}")))
                .await,
        );
    }
    for id in &ids {
        sys.wait_for_step(id, AuditStep::DeadLettered, Duration::from_secs(20))
            .await;
    }

    // list: one JSON object per letter, with the reason.
    let out = herald.run(&["dlq", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let letters: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 3, "{}", stdout(&out));
    let seq_of = |id: &str| {
        letters
            .iter()
            .find(|l| l["notification_id"] == id)
            .map(|l| l["seq"].as_u64().unwrap())
            .unwrap()
    };
    for l in &letters {
        assert_eq!(l["channel"], "email");
        assert_eq!(l["attempts"], 1);
        assert!(l["reason"].as_str().unwrap().contains("550"), "{l}");
    }
    let out = herald.run(&["dlq", "list", "--channel", "sms"]);
    assert_eq!(stdout(&out).trim(), "no dead letters");

    // show: the job and every attempt.
    let seq0 = seq_of(&ids[0]).to_string();
    let out = herald.run(&["dlq", "show", &seq0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("job          {}-r0-email", ids[0])),
        "{text}"
    );
    assert!(text.contains("address      dora@example.org"), "{text}");
    assert!(text.contains("#1") && text.contains("permanent"), "{text}");
    assert!(
        !text.contains("under reference"),
        "the body only with --body: {text}"
    );
    let out = herald.run(&["dlq", "show", &format!("{}-r0-email", ids[1]), "--body"]);
    assert!(
        stdout(&out).contains("under reference INQ-D1"),
        "{}",
        stdout(&out)
    );

    // Bad input: a clear error naming what is wrong, and the exit code.
    let out = herald.run(&["dlq", "show", "999999"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no dead letter with sequence number 999999"),
        "{}",
        stderr(&out)
    );
    let out = herald.run(&["dlq", "list", "--channel", "fax"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--channel"), "{}", stderr(&out));
    let out = herald.run(&["dlq", "replay"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The mailbox is fixed; replay two letters, one by sequence number and
    // one by job id.
    sys.smtp.accept_mailbox("dora@example.org");
    let job1 = format!("{}-r0-email", ids[1]);
    let out = herald.run(&["dlq", "replay", &seq0, &job1, "--as", "ops-anna"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mails = sys.smtp.wait_for(2, Duration::from_secs(20)).await;
    assert!(mails.iter().any(|m| {
        m.header("Message-ID")
            .unwrap()
            .contains(&format!("-rp{seq0}@"))
    }));
    // Replaying the same letters again, and then everything, sends only
    // the one not yet replayed.
    let out = herald.run(&["dlq", "replay", &seq0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = herald.run(&["dlq", "replay", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    sys.smtp.wait_for(3, Duration::from_secs(20)).await;
    // A second copy, if a replay had sent one, would still be on its way.
    sys.wait_until_idle().await;
    assert_eq!(sys.smtp.count(), 3, "each letter sent once");

    let trail = sys.trail(&ids[0]).await;
    let replayed = trail
        .iter()
        .find(|r| r.step == AuditStep::Replayed as i32)
        .expect("the replay is in the trail");
    assert_eq!(replayed.actor, "ops-anna");
    assert!(
        trail.iter().any(|r| r.step == AuditStep::Sent as i32
            && r.job_id == format!("{}-r0-email-rp{seq0}", ids[0])),
        "{trail:#?}"
    );
}
