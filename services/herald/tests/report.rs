//! Reports against a running Herald (SOP 002 §5, SOP 000 §5): a weekly
//! status update on its agreed day lists the client's cases and no one
//! else's, and one due while intake was stopped is sent once when it
//! starts again (and not again when its timer fires a second time); a
//! monthly report carries a PDF that a PDF parser reads, with the client's
//! name and figures; an incident report reaches the client by email and a
//! call; every case's feedback is listed by department and status, and the
//! trend sent to each department's heads counts it right.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use herald_config::{ClientReport, Config};
use herald_proto::v1::{
    ActionItem, AuditStep, CaseChannel, CaseEvent, CaseEventKind, Feedback, Interaction,
    InteractionKind, Priority,
};
use herald_runtime::clock::ManualClock;
use herald_testkit::{
    TestSystem,
    cases::{client, event, fast_policies, opened, staff},
    cli::{Cli, stderr, stdout},
    smtp::Mail,
};
use redis::AsyncCommands;

const CLIENT_0: &str = "client-0@clients.example.org";

/// A moment an hour ahead on a whole minute: the agreed time of a report
/// that a test then moves its clock past.
fn an_hour_ahead() -> DateTime<Utc> {
    let t = Utc::now() + TimeDelta::hours(1);
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or_else(|| panic!("{t} on a whole minute"))
}

fn weekly_at(contact: &str, at: DateTime<Utc>) -> ClientReport {
    ClientReport {
        contact: contact.into(),
        cadence: "weekly".into(),
        weekday: at.format("%A").to_string().to_lowercase(),
        day_of_month: 1,
        at: at.format("%H:%M").to_string(),
        team: String::new(),
        first: None,
        time_zone: Some("UTC".into()),
    }
}

fn interaction(case_id: &str) -> CaseEvent {
    let due = Utc::now() + TimeDelta::days(3);
    CaseEvent {
        interaction: Some(Interaction {
            kind: InteractionKind::Call as i32,
            summary: "Agreed a new delivery date".into(),
            outcome: "client accepts".into(),
            actions: vec![ActionItem {
                description: "Send the revised schedule".into(),
                owner: "fl-sam".into(),
                due: Some(herald_proto::timestamp(due.into())),
            }],
        }),
        actor: "fl-sam".into(),
        ..event(case_id, "call-1", CaseEventKind::InteractionLogged)
    }
}

/// Two cases of client-0 (one answered in time and resolved, one whose
/// clock runs out, with an open action) and one of client-1.
async fn cases(sys: &TestSystem) {
    let email = |id: &str, who: &str| opened(id, who, CaseChannel::Email, Priority::Normal);
    sys.case_ok(&email("CASE-1", "client-0")).await;
    sys.case_ok(&email("CASE-2", "client-0")).await;
    sys.case_ok(&email("CASE-3", "client-1")).await;
    sys.case_ok(&event("CASE-1", "ack", CaseEventKind::Acknowledged))
        .await;
    sys.case_ok(&event("CASE-1", "done", CaseEventKind::Resolved))
        .await;
    sys.case_ok(&interaction("CASE-2")).await;
    // CASE-2's two-second acknowledgement clock runs out.
    sys.wait_for_case_steps("CASE-2", AuditStep::SlaBreach, 1, Duration::from_secs(20))
        .await;
    sys.wait_until_idle().await;
}

fn reports_to(sys: &TestSystem, to: &str, subject: &str) -> Vec<Mail> {
    sys.smtp.mails_to(to, subject)
}

async fn system(tweak: impl FnOnce(&mut Config)) -> (TestSystem, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary folder: {e}"));
    let path = dir.path().to_path_buf();
    let sys = TestSystem::start_with(|cfg| {
        fast_policies(cfg, &path, Duration::from_secs(3600));
        tweak(cfg);
    })
    .await;
    let mut people = staff();
    people.extend([client(0), client(1)]);
    sys.add_contacts(&people).await;
    (sys, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_report_lists_the_clients_cases_and_one_due_while_intake_was_down_goes_once() {
    let at = an_hour_ahead();
    let (mut sys, _dir) = system(|cfg| cfg.reports.client = vec![weekly_at("client-0", at)]).await;
    let clock = ManualClock::at(Utc::now());
    sys.stop("intake").await;
    sys.start_intake_with_clock(Arc::new(clock.clone())).await;
    sys.start_sla().await;
    cases(&sys).await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let shown = herald.run(&["report", "schedule", "show", "client-0"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let expected_due = at.format("%Y-%m-%d %H:%M").to_string();
    assert!(
        stdout(&shown).contains("weekly") && stdout(&shown).contains(&expected_due),
        "{}",
        stdout(&shown)
    );
    assert!(reports_to(&sys, CLIENT_0, "Status update").is_empty());

    // Intake is stopped through the agreed time, then started again.
    sys.stop("intake").await;
    clock.set(at + TimeDelta::minutes(5));
    sys.start_intake_with_clock(Arc::new(clock.clone())).await;
    let mail = sys
        .smtp
        .wait_for_mail_to(CLIENT_0, "Status update", Duration::from_secs(30))
        .await;
    let body = mail.body();
    for want in [
        "REF-CASE-1: resolved",
        "closed in the period",
        "REF-CASE-2: open",
        "Opened: 2. Closed: 1. Still open: 1.",
        "Response times met: 1. Missed: 1.",
        "REF-CASE-2: Send the revised schedule (owner fl-sam",
    ] {
        assert!(body.contains(want), "{want:?} not in:\n{body}");
    }
    assert!(
        !body.contains("REF-CASE-3"),
        "another client's case:\n{body}"
    );
    assert!(
        reports_to(&sys, "client-1@clients.example.org", "Status update").is_empty(),
        "client-1 agreed no report"
    );

    // A crash between the send and the move to next week: the timer fires
    // again for the same week, and nothing is sent twice.
    sys.wait_until_idle().await;
    sys.stop("intake").await;
    let redis = herald_runtime::store::connect(&sys.cfg.redis, &Default::default())
        .await
        .unwrap();
    let prefix = herald_proto::keyspace::INTAKE.prefix(&sys.cfg.redis.prefix);
    let state_key = format!("{prefix}report:client-0:weekly");
    let mut r = redis.clone();
    let moved: String = r.get(&state_key).await.unwrap();
    assert!(
        moved.contains(&(at + TimeDelta::days(7)).format("%Y-%m-%d").to_string()),
        "the schedule moved to next week: {moved}"
    );
    let back = moved.replace(
        &(at + TimeDelta::days(7)).format("%Y-%m-%d").to_string(),
        &at.format("%Y-%m-%d").to_string(),
    );
    let _: () = r.set(&state_key, back).await.unwrap();
    let _: () = r
        .zadd(
            format!("{prefix}timer:reports:due"),
            "r:client-0:weekly",
            at.timestamp_millis(),
        )
        .await
        .unwrap();
    sys.start_intake_with_clock(Arc::new(clock.clone())).await;
    // The timer fires and the state moves on again.
    let week = (at + TimeDelta::days(7)).format("%Y-%m-%d").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s: Option<String> = r.get(&state_key).await.unwrap();
        if s.is_some_and(|s| s.contains(&week)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timer never fired again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sys.wait_until_idle().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        reports_to(&sys, CLIENT_0, "Status update").len(),
        1,
        "one report for the week, however often its timer fired"
    );
    let trail = herald.run(&[
        "trail",
        "--client",
        "client-0",
        "--type",
        "report_sent",
        "--json",
    ]);
    assert!(trail.status.success(), "{}", stderr(&trail));
    assert_eq!(stdout(&trail).lines().count(), 1, "{}", stdout(&trail));
}

/// The text of every page of a PDF, as a PDF parser reads it.
fn pdf_text(bytes: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(bytes).unwrap_or_else(|e| panic!("not a PDF: {e}"));
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    assert!(!pages.is_empty());
    doc.extract_text(&pages)
        .unwrap_or_else(|e| panic!("no text: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_report_carries_a_pdf_with_the_clients_name_and_figures() {
    let (mut sys, _dir) = system(|_| {}).await;
    sys.start_sla().await;
    cases(&sys).await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let until = an_hour_ahead().to_rfc3339();
    let send = || {
        herald.run(&[
            "report", "send", "client-0", "--kind", "monthly", "--until", &until,
        ])
    };
    let sent = send();
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(stdout(&sent).contains("2 case(s)"), "{}", stdout(&sent));
    let mail = sys
        .smtp
        .wait_for_mail_to(CLIENT_0, "Monthly progress report", Duration::from_secs(30))
        .await;
    let name = mail
        .parts()
        .into_iter()
        .find(|p| p.content_type.starts_with("application/pdf"))
        .unwrap_or_else(|| panic!("no PDF in {}", mail.data));
    let text = pdf_text(&name.body);
    for want in [
        "Progress report",
        "Client: Client-0",
        "Cases opened: 2",
        "Cases closed: 1",
        "Cases open at the end of the period: 1",
        "Response times met: 1",
        "Response times missed: 1",
        "REF-CASE-1",
        "Send the revised schedule",
    ] {
        assert!(
            text.contains(want),
            "{want:?} not in the PDF's text:\n{text}"
        );
    }
    assert!(!text.contains("REF-CASE-3"), "{text}");

    // The same period again: nothing new is sent.
    let again = send();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already been sent"),
        "{}",
        stdout(&again)
    );
    sys.wait_until_idle().await;
    assert_eq!(
        reports_to(&sys, CLIENT_0, "Monthly progress report").len(),
        1
    );

    // Bad requests name what is wrong.
    let bad = herald.run(&["report", "send", "client-0", "--kind", "daily"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let unknown = herald.run(&["report", "send", "nobody", "--kind", "weekly"]);
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("send.client_contact_id"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_report_reaches_the_client_by_email_and_a_call() {
    let (sys, _dir) = system(|_| {}).await;
    sys.case_ok(&opened(
        "CASE-9",
        "client-0",
        CaseChannel::Portal,
        Priority::High,
    ))
    .await;
    sys.wait_until_idle().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let empty = herald.run(&["report", "incident", "CASE-9", "--summary", " "]);
    assert_eq!(empty.status.code(), Some(3), "{}", stderr(&empty));
    assert!(
        stderr(&empty).contains("incident.summary"),
        "{}",
        stderr(&empty)
    );
    let never = herald.run(&["report", "incident", "CASE-0", "--summary", "x"]);
    assert_eq!(never.status.code(), Some(3), "{}", stderr(&never));
    assert!(
        stderr(&never).contains("incident.case_id"),
        "{}",
        stderr(&never)
    );

    let sent = herald.run(&[
        "report",
        "incident",
        "CASE-9",
        "--summary",
        "The portal was unavailable from 09:00 to 09:40",
    ]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let mail = sys
        .smtp
        .wait_for_mail_to(
            CLIENT_0,
            "Incident report: REF-CASE-9",
            Duration::from_secs(30),
        )
        .await;
    assert!(
        mail.body()
            .contains("What happened: The portal was unavailable from 09:00 to 09:40"),
        "{}",
        mail.body()
    );
    let calls = sys
        .http
        .wait_for("/voice", 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        calls[0].field("To"),
        Some(client(0).phone.as_deref().unwrap())
    );
    let twiml = calls[0].field("Twiml").unwrap_or_default();
    assert!(
        twiml.contains("incident report about REF-CASE-9"),
        "{twiml}"
    );
}

fn feedback(case_id: &str, rating: u32, category: &str) -> CaseEvent {
    CaseEvent {
        feedback: Some(Feedback {
            rating,
            comment: "thank you".into(),
            category: category.into(),
        }),
        ..event(case_id, "feedback", CaseEventKind::FeedbackReceived)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_listed_across_cases_and_the_trend_counts_each_departments() {
    let at = an_hour_ahead();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut sys = TestSystem::start_with(|cfg| {
        fast_policies(cfg, &path, Duration::from_secs(3600));
        let file = cfg.escalation.policy_file.clone().unwrap();
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&format!(
            "[feedback.trend]\ncadence = \"weekly\"\nweekday = \"{}\"\nat = \"{}\"\n",
            at.with_timezone(&chrono_tz::Europe::London).format("%A"),
            at.with_timezone(&chrono_tz::Europe::London).format("%H:%M"),
        ));
        std::fs::write(&file, text).unwrap();
    })
    .await;
    let mut people = staff();
    people.extend([client(0), client(1), client(2)]);
    sys.add_contacts(&people).await;
    let clock = ManualClock::at(Utc::now());
    sys.start_escalation_with_clock(Arc::new(clock.clone()))
        .await;
    for (case, who, rating, category) in [
        ("FB-1", "client-0", 2, "billing"),
        ("FB-2", "client-1", 4, "billing"),
        ("FB-3", "client-2", 5, "service"),
    ] {
        sys.case_ok(&opened(case, who, CaseChannel::Portal, Priority::Normal))
            .await;
        sys.case_ok(&feedback(case, rating, category)).await;
    }
    sys.wait_until_idle().await;
    let herald = Cli::new(env!("CARGO_BIN_EXE_herald"), &sys);
    let moved = herald.run(&["feedback", "update", "FB-2", "--status", "resolved"]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    sys.wait_until_idle().await;
    let list = |args: &[&str]| {
        let mut all = vec!["feedback", "list", "--json"];
        all.extend(args);
        let out = herald.run(&all);
        assert!(out.status.success(), "{all:?}: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| v["case_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(&[]), ["FB-1", "FB-2", "FB-3"]);
    assert_eq!(list(&["--department", "Finance"]), ["FB-1", "FB-2"]);
    assert_eq!(list(&["--status", "resolved"]), ["FB-2"]);
    assert_eq!(
        list(&["--department", "Finance", "--status", "received"]),
        ["FB-1"]
    );
    let tomorrow = (Utc::now() + TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert!(list(&["--since", &tomorrow]).is_empty());
    let bad = herald.run(&["feedback", "list", "--status", "lost"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    // The trend's day comes.
    clock.set(at + TimeDelta::minutes(1));
    let finance = sys
        .smtp
        .wait_for_mail_to(
            "joe@staff.example.org",
            "Feedback trend for Finance",
            Duration::from_secs(30),
        )
        .await;
    let body = finance.body();
    for want in [
        ": 2 (average rating 3.0)",
        "- billing: 2",
        "- 4/5: 1",
        "- 2/5: 1",
        "- 5/5: 0",
        "- received: 1",
        "- resolved: 1",
    ] {
        assert!(body.contains(want), "{want:?} not in:\n{body}");
    }
    assert!(!body.contains("service"), "{body}");
    let services = sys
        .smtp
        .wait_for_mail_to(
            "kim@staff.example.org",
            "Feedback trend for Client Services",
            Duration::from_secs(30),
        )
        .await;
    let body = services.body();
    for want in [": 1 (average rating 5.0)", "- service: 1", "- 5/5: 1"] {
        assert!(body.contains(want), "{want:?} not in:\n{body}");
    }
    sys.wait_until_idle().await;
    assert_eq!(
        sys.smtp
            .mails_to("joe@staff.example.org", "Feedback trend")
            .len(),
        1
    );
}
