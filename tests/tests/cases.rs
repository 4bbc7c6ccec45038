//! Cases end to end over real NATS, Redis, SMTP and HTTP: clocks that run
//! out and escalate level by level, acknowledgements that stop what is
//! pending (under races), the sla service killed mid-way and run twice,
//! follow-up surveys, and case events refused field by field.
//!
//! Policies are measured in seconds on a round-the-clock calendar
//! (`herald_testkit::cases::fast_policies`).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use futures::StreamExt;
use herald_proto::v1::{AuditStep, CaseChannel, CaseEventKind, ErrorCode, Priority, case_reply};
use herald_testkit::{
    TestSystem,
    cases::{
        BreachCounter, client, escalation_view, event, fast_policies, feedback, opened, sla_view,
        staff, summaries,
    },
    process::ServiceProcess,
    scrape,
    smtp::Mail,
    wait::until,
};
use tokio_util::sync::CancellationToken;

/// A whole Herald with sla and escalation, fast policies, the staff roster
/// and `clients` clients.
async fn system(level: Duration, clients: usize) -> (TestSystem, tempfile::TempDir) {
    let (mut sys, dir) = without_sla(level, clients).await;
    sys.start_sla().await;
    sys.start_escalation().await;
    (sys, dir)
}

/// The same, with neither sla nor escalation running: the test runs its
/// own sla instances.
async fn without_sla(level: Duration, clients: usize) -> (TestSystem, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = dir.path().to_path_buf();
    let sys = TestSystem::start_with(|cfg| fast_policies(cfg, &path, level)).await;
    let mut people = staff();
    people.extend((0..clients).map(client));
    sys.add_contacts(&people).await;
    (sys, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_case_breaches_and_escalates_level_by_level() {
    let (sys, _dir) = system(Duration::from_millis(1500), 1).await;
    let case = "CASE-LADDER";
    let started = Instant::now();
    sys.case_ok(&opened(
        case,
        "client-0",
        CaseChannel::Email,
        Priority::Normal,
    ))
    .await;
    let reference = format!("REF-{case}");
    let client = "client-0@clients.example.org";

    // Level 1 once the 2-second acknowledgement clock runs out: the
    // responsible agent, and the client told who now handles the matter.
    let frontline = sys
        .smtp
        .wait_for_mail_to("sam@staff.example.org", &reference, Duration::from_secs(10))
        .await;
    assert!(frontline.subject().contains("Escalated to you (frontline)"));
    assert!(frontline.body().contains("acknowledgement time ran out"));
    let breached_after = frontline.at - started;
    assert!(
        breached_after >= Duration::from_millis(1900),
        "escalated {breached_after:?} after opening, before the deadline"
    );
    let notice = sys
        .smtp
        .wait_for_mail_to(client, "Fl-sam", Duration::from_secs(5))
        .await;
    assert!(notice.subject().contains("has been escalated"));
    // The frontline level has 1.5 s before the next: "within 1 minute".
    assert!(
        notice.body().contains("within 1 minute"),
        "{}",
        notice.body()
    );

    // Level 2 after the level's 1.5 s: the team lead of this team only.
    let lead = sys
        .smtp
        .wait_for_mail_to("kim@staff.example.org", &reference, Duration::from_secs(6))
        .await;
    assert!(lead.subject().contains("(team lead)"));
    let gap = lead.at - frontline.at;
    assert!(
        (Duration::from_millis(1300)..Duration::from_secs(4)).contains(&gap),
        "team lead {gap:?} after frontline"
    );
    sys.smtp
        .wait_for_mail_to(client, "Tl-kim", Duration::from_secs(5))
        .await;

    // Level 3: the supervisor prefers SMS.
    let sms = sys
        .http
        .wait_for("/sms", 1, Duration::from_secs(6))
        .await
        .into_iter()
        .find(|r| r.field("To") == Some("+447700900501"))
        .expect("an SMS to the supervisor");
    let body = sms.field("Body").unwrap_or_default();
    assert!(
        body.contains(&reference) && body.contains("supervisor"),
        "{body}"
    );
    sys.smtp
        .wait_for_mail_to(client, "Sup-ana", Duration::from_secs(5))
        .await;

    // Level 4: management, and the client hears the level's timeframe.
    sys.smtp
        .wait_for_mail_to("joe@staff.example.org", &reference, Duration::from_secs(6))
        .await;
    let last = sys
        .smtp
        .wait_for_mail_to(client, "Mgr-joe", Duration::from_secs(5))
        .await;
    assert!(last.body().contains("within 4 hours"), "{}", last.body());

    // Then nothing is left to try; the trail says so, and every step.
    let trail = sys
        .wait_for_case_steps(case, AuditStep::Escalated, 5, Duration::from_secs(10))
        .await;
    let escalated = summaries(&trail, AuditStep::Escalated);
    assert!(
        escalated[0].starts_with(
            "escalated to frontline (level 1 of 4): notified fl-sam; client client-0 told"
        ),
        "{escalated:#?}"
    );
    assert!(
        escalated[1].contains("team lead (level 2 of 4): notified tl-kim"),
        "{escalated:#?}"
    );
    assert!(
        escalated[4].contains("nobody acknowledged"),
        "{escalated:#?}"
    );
    assert_eq!(summaries(&trail, AuditStep::CaseEvent).len(), 1);
    assert!(
        summaries(&trail, AuditStep::ClockStarted)[0].contains("acknowledgement clock started")
    );
    assert_eq!(summaries(&trail, AuditStep::SlaWarning).len(), 1);
    assert_eq!(summaries(&trail, AuditStep::SlaBreach).len(), 1);
    assert!(
        sys.smtp
            .mails_to("other@staff.example.org", &reference)
            .is_empty(),
        "another team's lead is never paged"
    );
    assert_eq!(
        sys.smtp.mails_to(client, &reference).len(),
        4,
        "one notice per level"
    );
    let view = escalation_view(&sys, case).await;
    assert_eq!((view.state.as_str(), view.level), ("exhausted", 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_between_levels_stops_the_next_level() {
    let (sys, _dir) = system(Duration::from_millis(1500), 1).await;
    let case = "CASE-ACK";
    let reference = format!("REF-{case}");
    sys.case_ok(&opened(
        case,
        "client-0",
        CaseChannel::Email,
        Priority::Normal,
    ))
    .await;
    sys.smtp
        .wait_for_mail_to("kim@staff.example.org", &reference, Duration::from_secs(10))
        .await;
    // The team lead acknowledges once Herald says the case is with them
    // (as `herald case show` would): the mail is sent a moment before
    // escalation has stored its new level.
    let deadline = Instant::now() + Duration::from_secs(10);
    while escalation_view(&sys, case).await.level < 2 {
        assert!(Instant::now() < deadline, "the case never reached level 2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ack = event(case, "ack-1", CaseEventKind::Acknowledged);
    let ack = herald_proto::v1::CaseEvent {
        actor: "tl-kim".into(),
        ..ack
    };
    sys.case_ok(&ack).await;
    let acked = Instant::now();

    // The supervisor's level would come from the case's escalation timer,
    // 1.5 s after the team lead's. Once no timer is left anywhere (the
    // acknowledgement removed it, or, had it not, it has fired) and nothing
    // is on its way, everything that will ever be sent has been.
    sys.wait_until_settled().await;
    assert!(
        sys.http.requests_to("/sms").is_empty(),
        "no SMS to the supervisor after the acknowledgement"
    );
    assert!(
        sys.smtp
            .mails_to("joe@staff.example.org", &reference)
            .is_empty()
    );
    let late: Vec<Mail> = sys
        .smtp
        .mails()
        .into_iter()
        .filter(|m| m.at > acked)
        .collect();
    assert!(
        late.is_empty(),
        "{} mail(s) after the acknowledgement",
        late.len()
    );

    let trail = sys
        .wait_for_case_steps(
            case,
            AuditStep::EscalationStopped,
            1,
            Duration::from_secs(5),
        )
        .await;
    let stopped = summaries(&trail, AuditStep::EscalationStopped);
    assert!(
        stopped[0].contains("stopped at level 2 (team lead): acknowledged by tl-kim"),
        "{stopped:?}"
    );
    assert_eq!(summaries(&trail, AuditStep::Escalated).len(), 2);
    assert!(summaries(&trail, AuditStep::ClockStopped)[0].contains("after its deadline"));
    let view = escalation_view(&sys, case).await;
    assert_eq!(view.state, "stopped");
    assert_eq!(view.stopped_by, "acknowledged by tl-kim");
    assert_eq!(view.level_name, "team_lead");
}

/// The race the reference systems lose (OnCall #4654, #4760): an
/// acknowledgement arriving at the very moment the next level fires. For
/// many cases at once, each acknowledged at a different instant around the
/// moment its second level is due; whatever reached a provider for a case
/// must have reached it before that case's acknowledgement was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notification_reaches_a_provider_after_an_acknowledgement() {
    const CASES: usize = 24;
    let level = Duration::from_millis(1200);
    let (sys, _dir) = system(level, CASES).await;
    // Level 2 is due one level's timeout after level 1 (the escalation
    // service says exactly when): acknowledge each case at an offset from
    // -200 ms to +375 ms around that moment, so some acknowledgements come
    // before it fires, some while its messages are on their way, some
    // after they arrived.
    let mut runs = Vec::new();
    for i in 0..CASES {
        // Fixed width: no reference is the start of another.
        let case = format!("CASE-RACE-{i:02}");
        sys.case_ok(&opened(
            &case,
            &format!("client-{i}"),
            CaseChannel::Email,
            Priority::Normal,
        ))
        .await;
        runs.push(case);
    }
    let answered: HashMap<String, Instant> = futures::stream::iter(runs.iter().enumerate())
        .map(|(i, case)| {
            let sys = &sys;
            async move {
                let reference = format!("REF-{case}");
                sys.smtp
                    .wait_for_mail_to("sam@staff.example.org", &reference, Duration::from_secs(15))
                    .await;
                // When the escalation service will fire level 2.
                let view = escalation_view(sys, case).await;
                let fires = herald_proto::system_time(view.next_at.as_ref());
                let until_fire = fires
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                let offset_ms = -200 + (i as i64 * 25);
                let fire = Instant::now() + until_fire;
                let at = if offset_ms < 0 {
                    fire - Duration::from_millis(offset_ms.unsigned_abs())
                } else {
                    fire + Duration::from_millis(offset_ms as u64)
                };
                tokio::time::sleep_until(at.into()).await;
                let ack = herald_proto::v1::CaseEvent {
                    actor: "tl-kim".into(),
                    ..event(case, "ack", CaseEventKind::Acknowledged)
                };
                sys.case_ok(&ack).await;
                (case.clone(), Instant::now())
            }
        })
        .buffer_unordered(CASES)
        .collect()
        .await;
    // Anything still to come is on its way or waits in a timer (a level
    // that was not stopped): once neither is so, it has arrived. A level
    // firing the moment its case was acknowledged may have lost its timer
    // to the acknowledgement while still running, out of sight; it began
    // at least 375 ms (the latest offset) before the last acknowledgement
    // was answered, and firing a level takes milliseconds.
    sys.wait_until_settled().await;

    let mut late = Vec::new();
    let mut second_level_sent = 0;
    let mut second_level_cancelled = 0;
    for case in &runs {
        let reference = format!("REF-{case}");
        let acked = answered[case];
        let arrivals: Vec<Instant> = sys
            .smtp
            .mails()
            .iter()
            .filter(|m| m.subject().contains(&reference) || m.body().contains(&reference))
            .map(|m| m.at)
            .chain(
                sys.http
                    .requests()
                    .iter()
                    .filter(|r| r.field("Body").unwrap_or_default().contains(&reference))
                    .map(|r| r.at),
            )
            .collect();
        late.extend(
            arrivals
                .iter()
                .filter(|at| **at > acked)
                .map(|at| (case.clone(), *at - acked)),
        );
        if !sys
            .smtp
            .mails_to("kim@staff.example.org", &reference)
            .is_empty()
        {
            second_level_sent += 1;
        }
        let trail = sys.case_trail(case).await;
        if trail.iter().any(|r| r.step == AuditStep::Cancelled as i32) {
            second_level_cancelled += 1;
        }
        assert!(
            sys.smtp
                .mails_to("joe@staff.example.org", &reference)
                .is_empty(),
            "{case}: management paged after the acknowledgement"
        );
    }
    println!(
        "\n| ack race | {CASES} cases | level 2 reached the team lead before the ack: {second_level_sent} | level 2 messages cancelled in delivery: {second_level_cancelled} | after the ack: {} |",
        late.len()
    );
    assert!(
        late.is_empty(),
        "messages after the acknowledgement: {late:?}"
    );
    // The offsets straddle the level's firing: some cases were acknowledged
    // before it (no team lead message), some after it had gone out.
    assert!(
        second_level_sent > 0 && second_level_sent < CASES,
        "{second_level_sent}"
    );
}

/// Cases whose acknowledgement clocks run out over a few seconds; the
/// sla service is SIGKILLed while they do and started again. Every case
/// breaches exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sla_service_mid_way_neither_loses_nor_doubles_a_breach() {
    const CASES: usize = 150;
    let (sys, _dir) = without_sla(Duration::from_secs(60), CASES).await;
    let mut sla = ServiceProcess::spawn("sla", &sys.cfg_for("sla"));
    let mut breaches = BreachCounter::start(&sys).await;

    // Portal cases: 3 s to acknowledge. Opened 20 ms apart, so their
    // deadlines run out one after another over three seconds.
    let opened_at = Instant::now();
    for i in 0..CASES {
        sys.case_ok(&opened(
            &format!("CASE-KILL-{i}"),
            &format!("client-{i}"),
            CaseChannel::Portal,
            Priority::Normal,
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Kill it while breaches are firing.
    until("some breaches fired", Duration::from_secs(20), || {
        breaches.unique() > 10
    })
    .await;
    sla.kill();
    let at_kill = breaches.unique();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sla.start();
    let recovered = until("every case breached", Duration::from_secs(60), || {
        breaches.unique() == CASES
    })
    .await;
    // Whatever the dead instance had claimed stays claimed until its lease
    // runs out, then fires again: once no clock timer is left, pending or
    // claimed, and the counter has read the whole case stream, any late
    // repeat has been counted.
    sys.wait_until_settled().await;
    breaches.caught_up(&sys).await;
    breaches.stop().await;
    let counted = breaches.counts();
    let twice: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "\n| sla SIGKILL | {CASES} | lost {} | doubled {} | {at_kill} breached before the kill; all {CASES} {:.1} s after opening began |",
        CASES - counted.len(),
        twice.len(),
        (recovered - opened_at).as_secs_f64()
    );
    assert_eq!(counted.len(), CASES, "every case breached");
    assert!(twice.is_empty(), "breached twice: {twice:?}");
    drop(sla);
}

/// Two sla instances share the clocks: every breach is fired (counted in
/// each instance's metrics) by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sla_instances_never_fire_the_same_breach_twice() {
    const CASES: usize = 400;
    let (sys, _dir) = without_sla(Duration::from_secs(60), CASES).await;
    let mut cfg = sys.cfg_for("sla");
    // Small batches, so both instances keep claiming.
    cfg.sla.batch = 20;
    let stops = [CancellationToken::new(), CancellationToken::new()];
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for stop in &stops {
        let running = herald_sla::start(cfg.clone(), stop.clone())
            .await
            .expect("sla starts");
        addrs.push(running.http_addr);
        tasks.push(tokio::spawn(running.wait()));
    }
    let mut breaches = BreachCounter::start(&sys).await;
    let reqs: Vec<_> = (0..CASES)
        .map(|i| {
            opened(
                &format!("CASE-TWO-{i}"),
                &format!("client-{i}"),
                CaseChannel::Portal,
                Priority::Normal,
            )
        })
        .collect();
    futures::stream::iter(reqs.iter())
        .for_each_concurrent(32, |ev| {
            let sys = &sys;
            async move {
                sys.case_ok(ev).await;
            }
        })
        .await;
    until("every case breached", Duration::from_secs(30), || {
        breaches.unique() == CASES
    })
    .await;
    // A second firing of a breach would be on its way, or its timer still
    // held by the other instance: count once neither is so.
    sys.wait_until_settled().await;
    breaches.caught_up(&sys).await;
    breaches.stop().await;
    let mut fired = Vec::new();
    for addr in &addrs {
        fired.push(
            scrape::metrics(*addr)
                .await
                .sum("herald_sla_breaches_total", &[]),
        );
    }
    for s in &stops {
        s.cancel();
    }
    for t in tasks {
        let _ = t.await;
    }
    let counted = breaches.counts();
    println!(
        "\n| two sla instances | {CASES} | fired by each: {fired:?} | in the stream: {} |",
        counted.values().sum::<usize>()
    );
    assert_eq!(counted.len(), CASES);
    assert!(counted.values().all(|n| *n == 1));
    assert_eq!(fired.iter().sum::<f64>() as usize, CASES, "{fired:?}");
    assert!(
        fired.iter().all(|f| *f > 0.0),
        "both instances worked: {fired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_case_is_escalated_the_moment_it_opens() {
    const LEVEL: Duration = Duration::from_secs(30);
    let (sys, _dir) = system(LEVEL, 1).await;
    let case = "CASE-CRIT";
    let opened_at = Instant::now();
    sys.case_ok(&opened(
        case,
        "client-0",
        CaseChannel::SupportTicket,
        Priority::Critical,
    ))
    .await;
    // Nothing but the opening can have sent it this soon: the ticket's
    // acknowledgement clock has an hour, and a level lasts 30 s. Half a
    // level leaves a loaded machine room.
    let first = sys
        .smtp
        .wait_for_mail_to("sam@staff.example.org", "REF-CASE-CRIT", LEVEL / 2)
        .await;
    assert!(
        first.at - opened_at < LEVEL / 2,
        "{:?}",
        first.at - opened_at
    );
    assert!(first.body().contains("it is critical"), "{}", first.body());
    sys.smtp
        .wait_for_mail_to(
            "client-0@clients.example.org",
            "Fl-sam",
            Duration::from_secs(5),
        )
        .await;
    let view = escalation_view(&sys, case).await;
    assert_eq!(
        (view.state.as_str(), view.trigger.as_str()),
        ("active", "critical")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_now_goes_to_the_team_lead_and_up_again_on_request() {
    let (sys, _dir) = system(Duration::from_secs(30), 1).await;
    let case = "CASE-ASK";
    let reference = format!("REF-{case}");
    sys.case_ok(&opened(
        case,
        "client-0",
        CaseChannel::SupportTicket,
        Priority::Normal,
    ))
    .await;
    let ask = |id: &str| herald_proto::v1::CaseEvent {
        reason: "client asked for a manager".into(),
        ..event(case, id, CaseEventKind::EscalateNow)
    };
    sys.case_ok(&ask("ask-1")).await;
    sys.smtp
        .wait_for_mail_to("kim@staff.example.org", &reference, Duration::from_secs(10))
        .await;
    assert!(
        sys.smtp
            .mails_to("sam@staff.example.org", &reference)
            .is_empty()
    );
    sys.case_ok(&ask("ask-2")).await;
    sys.http.wait_for("/sms", 1, Duration::from_secs(10)).await;
    // The service sends a level before it writes that it is there: ask as
    // `herald case show` would, until it says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view = escalation_view(&sys, case).await;
        if view.level_name == "supervisor" {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "still at {} (level {}) 10 s after the supervisor's SMS",
            view.level_name,
            view.level
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view.trigger, "request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_case_gets_a_signed_survey_and_one_reminder_unless_answered() {
    let (sys, _dir) = system(Duration::from_secs(60), 3).await;
    // Tickets here have an hour to acknowledge: nothing escalates.
    for i in 0..3 {
        let case = format!("CASE-FU-{i}");
        sys.case_ok(&opened(
            &case,
            &format!("client-{i}"),
            CaseChannel::SupportTicket,
            Priority::Normal,
        ))
        .await;
        sys.case_ok(&event(&case, "resolved", CaseEventKind::Resolved))
            .await;
    }
    // Case 2 is reopened before its survey is due: no survey.
    sys.case_ok(&event("CASE-FU-2", "reopened", CaseEventKind::Reopened))
        .await;

    let survey0 = sys
        .smtp
        .wait_for_mail_to(
            "client-0@clients.example.org",
            "How did we do",
            Duration::from_secs(10),
        )
        .await;
    let survey1 = sys
        .smtp
        .wait_for_mail_to(
            "client-1@clients.example.org",
            "How did we do",
            Duration::from_secs(10),
        )
        .await;
    // The link is signed for the case.
    let body = survey0.body();
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with("https://feedback.example.org/survey?case=CASE-FU-0"))
        .unwrap_or_else(|| panic!("no survey link in {body}"));
    let (query, token) = link.rsplit_once("&token=").unwrap();
    let round: u64 = query.rsplit_once("round=").unwrap().1.parse().unwrap();
    assert!(herald_escalation::survey::verify(
        "test-survey-secret-0123",
        "CASE-FU-0",
        round,
        token
    ));
    // Case 1 answers; the comment is stored with the event, never in the
    // trail.
    sys.case_ok(&feedback(
        "CASE-FU-1",
        5,
        "Call me on +447700900999, thanks",
    ))
    .await;
    let _ = survey1;

    // Case 0 gets its one reminder two seconds after the survey.
    let reminder = sys
        .smtp
        .wait_for_mail_to(
            "client-0@clients.example.org",
            "A minute for",
            Duration::from_secs(10),
        )
        .await;
    assert!(reminder.at - survey0.at >= Duration::from_millis(1800));
    // Surveys and reminders come from the follow-up timers. Once none is
    // left (sent, answered or called off, or, had one been kept, fired)
    // and nothing is on its way, these are all the mails there will be.
    sys.wait_until_settled().await;
    assert_eq!(
        sys.smtp
            .mails_to("client-0@clients.example.org", "REF-CASE-FU-0")
            .len(),
        2,
        "survey and one reminder"
    );
    // Answered: the survey and no reminder (the feedback's receipt, a
    // message of its own, also names the case).
    assert_eq!(
        sys.smtp
            .mails_to(
                "client-1@clients.example.org",
                "How did we do with REF-CASE-FU-1"
            )
            .len(),
        1,
        "one survey"
    );
    assert!(
        sys.smtp
            .mails_to("client-1@clients.example.org", "A minute for")
            .is_empty(),
        "answered: no reminder"
    );
    assert!(
        sys.smtp
            .mails_to("client-2@clients.example.org", "REF-CASE-FU-2")
            .is_empty(),
        "reopened: no survey"
    );

    let trail = sys.case_trail("CASE-FU-1").await;
    let follow = summaries(&trail, AuditStep::FollowUp);
    assert!(
        follow
            .iter()
            .any(|s| s == "feedback recorded on the case: rating 5/5"),
        "{follow:?}"
    );
    let all = format!("{trail:?}");
    assert!(
        !all.contains("+447700900999"),
        "the comment is not in the trail"
    );
    assert!(
        summaries(&sys.case_trail("CASE-FU-2").await, AuditStep::FollowUp)
            .iter()
            .any(|s| s.contains("called off"))
    );
    let view = escalation_view(&sys, "CASE-FU-1").await;
    assert_eq!((view.follow_up.as_str(), view.rating), ("answered", 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_the_client_pauses_the_clock_until_the_reply() {
    let (sys, _dir) = system(Duration::from_secs(60), 1).await;
    let case = "CASE-PAUSE";
    sys.case_ok(&opened(
        case,
        "client-0",
        CaseChannel::Portal,
        Priority::Normal,
    ))
    .await;
    sys.case_ok(&event(case, "wait", CaseEventKind::WaitingOnClient))
        .await;
    // Paused: no breach. A paused clock has no timer; had it kept one, it
    // would fire at the 3 s deadline, and settling waits for that.
    sys.wait_until_settled().await;
    let v = sla_view(&sys, case).await;
    assert_eq!(
        v.clocks[0].state,
        herald_proto::v1::ClockState::Paused as i32
    );
    assert!(!v.clocks[0].breached);
    assert!(v.clocks[0].seconds_left > 0, "{:?}", v.clocks[0]);
    sys.case_ok(&event(case, "reply", CaseEventKind::ClientReplied))
        .await;
    let trail = sys
        .wait_for_case_steps(case, AuditStep::SlaBreach, 1, Duration::from_secs(10))
        .await;
    assert!(summaries(&trail, AuditStep::ClockPaused)[0].contains("paused"));
    assert!(
        summaries(&trail, AuditStep::ClockStarted)
            .iter()
            .any(|s| s.contains("resumed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_case_events_are_refused_naming_the_field_over_nats_and_grpc() {
    let (sys, _dir) = system(Duration::from_secs(60), 1).await;
    let refused = |r: herald_proto::v1::CaseReply| match r.result {
        Some(case_reply::Result::Rejected(r)) => (ErrorCode::try_from(r.code).unwrap(), r.field),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let mut no_client = opened("CASE-BAD", "nobody", CaseChannel::Email, Priority::Normal);
    assert_eq!(
        refused(sys.case_event(&no_client).await),
        (
            ErrorCode::UnknownContact,
            "details.client_contact_id".into()
        )
    );
    no_client.details.as_mut().unwrap().channel = 0;
    assert_eq!(
        refused(sys.case_event(&no_client).await),
        (ErrorCode::InvalidArgument, "details.channel".into())
    );
    assert_eq!(
        refused(
            sys.case_event(&event("CASE-NEVER", "a", CaseEventKind::Acknowledged))
                .await
        ),
        (ErrorCode::NotFound, "case_id".into())
    );
    assert_eq!(
        refused(sys.case_event(&feedback("CASE-NEVER", 9, "")).await),
        (ErrorCode::InvalidArgument, "feedback.rating".into())
    );

    // Accepted once; the same event again is a duplicate at the same
    // position; the same id for something else is a conflict.
    let open = opened("CASE-OK", "client-0", CaseChannel::Email, Priority::Normal);
    let first = sys.case_ok(&open).await;
    match sys.case_event(&open).await.result {
        Some(case_reply::Result::Accepted(a)) => {
            assert!(a.duplicate);
            assert_eq!(a.sequence, first);
        }
        other => panic!("{other:?}"),
    }
    let mut other = open.clone();
    other.details.as_mut().unwrap().reference = "different".into();
    assert_eq!(
        refused(sys.case_event(&other).await),
        (ErrorCode::IdempotencyConflict, "event_id".into())
    );
    let again = herald_proto::v1::CaseEvent {
        event_id: "open-again".into(),
        ..open.clone()
    };
    assert_eq!(
        refused(sys.case_event(&again).await),
        (ErrorCode::InvalidState, "kind".into())
    );

    // gRPC: the same rules, as status codes with the field named.
    let mut grpc = herald_testkit::grpc::client(sys.grpc_addr).await;
    let status = grpc
        .submit_case_event(event("CASE-NEVER", "g", CaseEventKind::Resolved))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(
        status.message().starts_with("case_id:"),
        "{}",
        status.message()
    );
    let ok = grpc
        .submit_case_event(event("CASE-OK", "ack-grpc", CaseEventKind::Acknowledged))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(ok.result, Some(case_reply::Result::Accepted(_))));
    let trail = sys.case_trail("CASE-OK").await;
    let events: HashSet<String> = summaries(&trail, AuditStep::CaseEvent)
        .into_iter()
        .collect();
    assert!(
        events
            .iter()
            .any(|s| s.starts_with("opened: channel email, priority normal, team support")),
        "{events:?}"
    );
    assert!(events.contains("acknowledged"), "{events:?}");
}

/// A case whose stored state went bad (a bad restore, a hand edit) is set
/// aside with the reason; the other cases of its partition flow on. Before,
/// its next event was retried forever and held up one case in sixteen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_case_is_set_aside_and_the_rest_of_its_partition_flows() {
    use herald_proto::{
        Message, keyspace,
        subjects::{self, case_partition},
        v1::DeadMessage,
    };
    let (sys, _dir) = system(Duration::from_secs(30), 1).await;
    let bad = "CASE-ROTTEN";
    let good = (0..)
        .map(|i| format!("CASE-SOUND-{i}"))
        .find(|c| case_partition(c) == case_partition(bad))
        .unwrap();
    sys.case_ok(&opened(
        bad,
        "client-0",
        CaseChannel::SupportTicket,
        Priority::Normal,
    ))
    .await;
    sys.wait_until_idle().await;
    // Both services' stored state of the case is overwritten with garbage.
    let mut redis = redis::Client::open(sys.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = &sys.cfg.redis.prefix;
    for ks in [keyspace::ESCALATION, keyspace::SLA] {
        let key = format!("{}case:{bad}", ks.prefix(prefix));
        let existed: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(existed, "{key} was stored");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(b"\xff{not a case".as_slice())
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let ask = |case: &str, id: &str| herald_proto::v1::CaseEvent {
        reason: "client asked for a manager".into(),
        ..event(case, id, CaseEventKind::EscalateNow)
    };
    sys.case_ok(&ask(bad, "ask-rotten")).await;
    // Stored after it, in the same partition: it must not wait behind it.
    sys.case_ok(&opened(
        &good,
        "client-0",
        CaseChannel::SupportTicket,
        Priority::Normal,
    ))
    .await;
    sys.case_ok(&ask(&good, "ask-sound")).await;
    sys.smtp
        .wait_for_mail_to(
            "kim@staff.example.org",
            &format!("REF-{good}"),
            Duration::from_secs(20),
        )
        .await;

    // The bad case's event is in the dead-letter stream, once per service
    // that could not read its state, naming the case and the key.
    let js = async_nats::jetstream::new(sys.client.clone());
    let stream = js.get_stream(subjects::STREAM_DLQ).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let last = stream
            .get_info()
            .await
            .map(|i| i.state.last_sequence)
            .unwrap_or(0);
        let mut found = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await
                && m.subject
                    .starts_with(subjects::dlq_messages().trim_end_matches('>'))
            {
                found.push(DeadMessage::decode(m.payload.clone()).unwrap());
            }
        }
        if found.len() >= 2 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the bad case's event was not set aside: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let consumers: HashSet<String> = letters.iter().map(|l| l.consumer.clone()).collect();
    let partition = case_partition(bad);
    assert_eq!(
        consumers,
        HashSet::from([
            format!("escalation-{partition}"),
            format!("sla-{partition}")
        ])
    );
    for l in &letters {
        assert!(l.reason.contains(bad), "{}", l.reason);
        assert_eq!(l.stream, subjects::STREAM_CASES);
        assert!(l.subject.contains(bad), "{}", l.subject);
        assert!(!l.payload.is_empty());
    }
    assert!(
        sys.smtp
            .mails_to("kim@staff.example.org", &format!("REF-{bad}"))
            .is_empty(),
        "nothing escalated from state that could not be read"
    );
}
