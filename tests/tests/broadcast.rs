//! Emergency broadcasts end to end, over real NATS and Redis, with the
//! emails arriving at a real SMTP server and the calls and SMS at a real
//! HTTP listener standing in for the providers: everyone gets an email and
//! a call; confirming by link, key press or SMS reply stops the calls to
//! that person; the unconfirmed are called again each cycle; no credential,
//! nothing sent; forged confirmations change nothing; a data breach reaches
//! the DPO and management.
//!
//! Call cycles are stepped with a `ManualClock` where the test counts calls
//! per cycle, and run on the wall clock (seconds apart) once.

use std::{sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use herald_directory::{contacts::Contact, groups::Group};
use herald_proto::{
    subjects,
    v1::{
        Audience, AuditRecord, AuditStep, BroadcastAccepted, BroadcastMessage, BroadcastReply,
        BroadcastState, BroadcastStatus, CancelBroadcast, Channel, CommunicationType, Cycles,
        ErrorCode, Rejected, Severity, StartBroadcast, UpdateBroadcast, broadcast_reply,
        broadcast_status_reply,
    },
};
use herald_runtime::clock::ManualClock;
use herald_testkit::{
    TestSystem,
    count::{count_http, jobs},
    fixtures::{self, contact},
    http::Request,
    submit::{submit, submit_all},
    system::{COORDINATOR_TOKEN, PUBLIC_URL},
    wait::until,
};

const WAIT: Duration = Duration::from_secs(20);
const PROVIDER_TOKEN: &str = "provider-signing-secret";

fn person(id: &str, n: u32, language: &str, org: &str) -> Contact {
    let mut c = contact(
        id,
        Some(&format!("{id}@example.org")),
        Some(&format!("+4477009{n:05}")),
        "sms",
    );
    c.language = language.into();
    c.organisation = Some(org.into());
    c
}

fn message(language: &str, subject: &str, speak: &str) -> BroadcastMessage {
    BroadcastMessage {
        language: language.into(),
        subject: subject.into(),
        body: format!("{subject}. Leave by the nearest exit and gather at point B."),
        speak: speak.into(),
        sms: String::new(),
    }
}

fn start(id: &str, audience: Audience, cycles: Cycles) -> StartBroadcast {
    StartBroadcast {
        broadcast_id: id.into(),
        credential: COORDINATOR_TOKEN.into(),
        severity: Severity::Extreme as i32,
        audience: Some(audience),
        messages: vec![
            message("en", "Evacuate building B", "Evacuate building B now."),
            message(
                "fr",
                "Évacuez le bâtiment B",
                "Évacuez le bâtiment B maintenant.",
            ),
        ],
        cycles: Some(cycles),
        ..Default::default()
    }
}

fn group(id: &str, members: &[&str]) -> Group {
    Group {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

fn accepted(reply: BroadcastReply) -> BroadcastAccepted {
    match reply.result {
        Some(broadcast_reply::Result::Accepted(a)) => a,
        other => panic!("expected accepted, got {other:?}"),
    }
}

fn rejected(reply: BroadcastReply) -> Rejected {
    match reply.result {
        Some(broadcast_reply::Result::Rejected(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn status(sys: &TestSystem, id: &str) -> BroadcastStatus {
    match sys.broadcast_status(id).await.result {
        Some(broadcast_status_reply::Result::Status(s)) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Polls the status until `done` holds.
async fn until_status(
    sys: &TestSystem,
    id: &str,
    what: &str,
    done: impl Fn(&BroadcastStatus) -> bool,
) -> BroadcastStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(broadcast_status_reply::Result::Status(s)) =
            sys.broadcast_status(id).await.result
            && done(&s)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a broadcast's trail until it holds a record whose summary starts
/// with `prefix`.
async fn until_trail(sys: &TestSystem, id: &str, prefix: &str) -> Vec<AuditRecord> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let trail = sys.trail(id).await;
        if trail.iter().any(|r| r.summary.starts_with(prefix)) {
            return trail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {prefix:?} in the trail of {id} within {WAIT:?}: {trail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn calls_to(sys: &TestSystem, phone: &str) -> Vec<Request> {
    sys.http
        .requests_to("/voice")
        .into_iter()
        .filter(|r| r.field("To") == Some(phone))
        .collect()
}

fn phone_of(c: &Contact) -> &str {
    c.phone.as_deref().unwrap()
}

/// The key-press address the call script gives the provider.
fn key_press_url(call: &Request) -> String {
    let twiml = call.field("Twiml").expect("a call script");
    let start = twiml.find("action=\"").expect("a Gather action") + "action=\"".len();
    let end = start + twiml[start..].find('"').unwrap();
    twiml[start..end].replace("&amp;", "&")
}

/// The confirmation link in an email.
fn link_in(body: &str) -> String {
    let start = body.find(PUBLIC_URL).expect("a confirmation link");
    body[start..].split_whitespace().next().unwrap().to_string()
}

/// Where a public address really leads in the test.
fn local(sys: &TestSystem, public: &str) -> String {
    public.replace(
        PUBLIC_URL,
        &format!("http://{}", sys.http_addr("broadcast")),
    )
}

/// Posts a provider callback, signed as the provider signs (or not).
async fn provider_post(
    sys: &TestSystem,
    public: &str,
    params: &[(&str, &str)],
    secret: Option<&str>,
) -> reqwest::Response {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut req = reqwest::Client::new().post(local(sys, public)).form(&owned);
    if let Some(secret) = secret {
        req = req.header(
            "X-Twilio-Signature",
            herald_content::signature::sign(secret, public, &owned),
        );
    }
    req.send().await.expect("the broadcast service answers")
}

async fn system(clock: Option<ManualClock>) -> TestSystem {
    let mut sys = TestSystem::start_with(|c| {
        c.delivery.provider_account = Some("AC-test".into());
        c.delivery.provider_token = Some(PROVIDER_TOKEN.into());
    })
    .await;
    match clock {
        Some(c) => sys.start_broadcast_with_clock(Arc::new(c)).await,
        None => sys.start_broadcast().await,
    }
    sys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipient_gets_an_email_and_a_call_once_however_often_they_are_named() {
    let sys = system(None).await;
    let mut alice = person("alice", 1, "en", "acme");
    // Preferences and consent govern ordinary traffic, not an emergency.
    alice.consent.voice = false;
    alice.preferred_channel = Some("email".into());
    let bob = person("bob", 2, "fr-CA", "acme");
    let mut carol = person("carol", 3, "en", "acme");
    carol.phone = None;
    carol.preferred_channel = Some("email".into());
    let outsider = person("olga", 4, "en", "elsewhere");
    sys.add_contacts(&[alice.clone(), bob.clone(), carol.clone(), outsider])
        .await;
    sys.add_groups(&[group("wardens", &["alice", "bob"])]).await;

    let fire_b = start(
        "fire-b",
        Audience {
            contact_ids: vec!["alice".into()],
            group_ids: vec!["wardens".into()],
            organisations: vec!["acme".into()],
            ..Default::default()
        },
        Cycles {
            cycles: 1,
            ..Default::default()
        },
    );
    let reply = sys
        .broadcast_request(subjects::BROADCAST_START, &fire_b)
        .await;
    let a = accepted(reply);
    assert_eq!((a.coordinator.as_str(), a.duplicate), ("anna", false));

    let mails = sys.smtp.wait_for(3, WAIT).await;
    let calls = sys.http.wait_for("/voice", 2, WAIT).await;
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        ["alice@example.org", "bob@example.org", "carol@example.org"],
        "each person once, whichever ways they were named"
    );
    let mut called: Vec<&str> = calls.iter().filter_map(|c| c.field("To")).collect();
    called.sort();
    assert_eq!(
        called,
        [phone_of(&alice), phone_of(&bob)],
        "carol has no phone"
    );

    let bobs = mails.iter().find(|m| m.to[0] == "bob@example.org").unwrap();
    assert_eq!(
        bobs.subject(),
        "Évacuez le bâtiment B",
        "bob reads French (fr-CA → fr)"
    );
    let body = bobs.body();
    assert!(body.contains("Merci de confirmer"), "{body}");
    assert!(link_in(&body).starts_with(&format!("{PUBLIC_URL}/v1/broadcast/confirm?b=fire-b&r=")));
    let alices_call = calls
        .iter()
        .find(|c| c.field("To") == Some(phone_of(&alice)))
        .unwrap();
    let twiml = alices_call.field("Twiml").unwrap();
    assert!(
        twiml.starts_with("<Response><Gather input=\"dtmf\" numDigits=\"1\""),
        "{twiml}"
    );
    assert!(
        twiml.contains("Evacuate building B now. Press 1 now to confirm"),
        "{twiml}"
    );
    assert!(
        key_press_url(alices_call)
            .starts_with(&format!("{PUBLIC_URL}/v1/broadcast/key?b=fire-b&r="))
    );
    assert!(
        sys.http.requests_to("/sms").is_empty(),
        "no SMS unless asked for"
    );

    // A repeated start changes nothing.
    let again = sys
        .broadcast_request(subjects::BROADCAST_START, &fire_b)
        .await;
    assert!(accepted(again).duplicate);

    let s = until_status(&sys, "fire-b", "every send recorded", |s| {
        s.channels.len() == 2 && s.channels[0].sent == 3 && s.channels[1].sent == 2
    })
    .await;
    assert_eq!(s.recipients, 3);
    assert_eq!(s.started_by, "anna");
    assert_eq!(
        s.channels[0].delivered, 3,
        "email counts as delivered once the server took it"
    );
    // One cycle, so nothing more is sent until the end (which sends
    // nothing): once nothing is on its way, these are all there will be.
    sys.wait_until_idle().await;
    assert_eq!(
        (sys.smtp.count(), sys.http.requests_to("/voice").len()),
        (3, 2)
    );

    let trail = sys.trail("fire-b").await;
    assert!(trail.iter().any(|r| {
        r.step == AuditStep::Broadcast as i32
            && r.actor == "anna"
            && r.summary
                .starts_with("start accepted from coordinator anna")
    }));
    assert!(trail.iter().any(|r| {
        r.step == AuditStep::Broadcast as i32
            && r.summary
                .starts_with("started by anna: 3 recipient(s); 3 email(s), 2 call(s)")
    }));
    assert_eq!(
        trail
            .iter()
            .filter(|r| r.step == AuditStep::Sent as i32)
            .count(),
        5
    );
    for r in &trail {
        let text = format!("{r:?}");
        assert!(
            !text.contains("@example.org") && !text.contains("+44770"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirming_by_link_or_key_press_stops_the_calls_and_the_rest_are_called_each_cycle() {
    let clock = ManualClock::at(Utc::now());
    let sys = system(Some(clock.clone())).await;
    let ann = person("ann", 11, "en", "acme");
    let ben = person("ben", 12, "en", "acme");
    let cal = person("cal", 13, "en", "acme");
    sys.add_contacts(&[ann.clone(), ben.clone(), cal.clone()])
        .await;
    sys.add_groups(&[group("all", &["ann", "ben", "cal"])])
        .await;
    accepted(
        sys.broadcast_request(
            subjects::BROADCAST_START,
            &start(
                "drill",
                Audience {
                    group_ids: vec!["all".into()],
                    ..Default::default()
                },
                Cycles {
                    interval_seconds: 60,
                    cycles: 3,
                    duration_seconds: 300,
                },
            ),
        )
        .await,
    );
    let mails = sys.smtp.wait_for(3, WAIT).await;
    sys.http.wait_for("/voice", 3, WAIT).await;

    // Ann opens her link: a page with a button; opening it confirms nothing
    // (mail scanners open links too). Pressing the button does.
    let anns = mails.iter().find(|m| m.to[0] == "ann@example.org").unwrap();
    let link = local(&sys, &link_in(&anns.body()));
    let http = reqwest::Client::new();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\">")
    );
    assert_eq!(status(&sys, "drill").await.confirmed, 0);
    let done = http.post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Your confirmation is recorded")
    );

    // Ben presses a key during the call; the provider reports it, signed.
    let bens_call = &calls_to(&sys, phone_of(&ben))[0];
    let action = key_press_url(bens_call);
    let pressed = provider_post(
        &sys,
        &action,
        &[("Digits", "1"), ("CallSid", "CA-ben")],
        Some(PROVIDER_TOKEN),
    )
    .await;
    assert_eq!(pressed.status(), 200);
    assert!(
        pressed
            .text()
            .await
            .unwrap()
            .contains("Your confirmation is recorded")
    );

    // Forgeries for Cal change nothing: no signature, a wrong one, Ben's
    // signed address pointed at Cal, a tampered link.
    let cals_action = key_press_url(&calls_to(&sys, phone_of(&cal))[0]);
    for (url, secret) in [
        (cals_action.clone(), None),
        (cals_action.clone(), Some("not-the-provider-token")),
        (action.replace("&r=1&", "&r=2&"), Some(PROVIDER_TOKEN)),
    ] {
        let r = provider_post(&sys, &url, &[("Digits", "1")], secret).await;
        assert_eq!(r.status(), 403, "{url}");
    }
    let tampered = link.replace("&r=0&", "&r=2&");
    assert_eq!(http.post(&tampered).send().await.unwrap().status(), 403);

    let s = status(&sys, "drill").await;
    assert_eq!(s.confirmed, 2);
    let by = |id: &str| {
        s.recipient_rows
            .iter()
            .find(|r| r.contact_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by("ann").confirmed_via, Channel::Email as i32);
    assert_eq!(by("ben").confirmed_via, Channel::Voice as i32);
    assert!(!by("cal").confirmed);

    // Each cycle calls Cal again, and only Cal.
    for (cycle, cal_calls) in [(2, 2), (3, 3)] {
        clock.advance(TimeDelta::seconds(60));
        let found = until_status(&sys, "drill", &format!("cycle {cycle}"), |s| {
            s.cycles_done == cycle
        })
        .await;
        assert_eq!(found.cycles_total, 3);
        let deadline = tokio::time::Instant::now() + WAIT;
        while calls_to(&sys, phone_of(&cal)).len() < cal_calls {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cal not called again in cycle {cycle}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The last cycle's calls are published before its record is written,
    // and the clock stands still: once the record is there and nothing is
    // on its way, no further call can come before the end.
    until_trail(&sys, "drill", "call cycle 3 of 3").await;
    sys.wait_until_idle().await;
    assert_eq!(
        calls_to(&sys, phone_of(&ann)).len(),
        1,
        "ann confirmed: one call"
    );
    assert_eq!(
        calls_to(&sys, phone_of(&ben)).len(),
        1,
        "ben confirmed: one call"
    );
    assert_eq!(
        calls_to(&sys, phone_of(&cal)).len(),
        3,
        "three cycles, three calls"
    );
    let cycle_ids: Vec<String> = calls_to(&sys, phone_of(&cal))
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(
        cycle_ids,
        [
            "drill-r2-voice-c1",
            "drill-r2-voice-c2",
            "drill-r2-voice-c3"
        ]
    );

    // The duration ends: Cal is reported not confirmed (reached, no answer).
    clock.advance(TimeDelta::seconds(181));
    let s = until_status(&sys, "drill", "the end", |s| {
        s.state == BroadcastState::Finished as i32
    })
    .await;
    assert_eq!((s.confirmed, s.not_confirmed, s.unreachable), (2, 1, 0));
    assert_eq!(by_outcome(&s, "cal"), "not_confirmed");
    // A confirmation after the end is too late.
    let late = provider_post(&sys, &cals_action, &[("Digits", "1")], Some(PROVIDER_TOKEN)).await;
    assert!(late.text().await.unwrap().contains("has ended"));
    assert_eq!(status(&sys, "drill").await.confirmed, 2);

    let trail = sys.trail("drill").await;
    let confirmed: Vec<(String, String)> = trail
        .iter()
        .filter(|r| r.step == AuditStep::Confirmed as i32)
        .map(|r| (r.actor.clone(), r.summary.clone()))
        .collect();
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert!(
        confirmed
            .iter()
            .any(|(a, s)| a == "contact:ann" && s.contains("by email link"))
    );
    assert!(
        confirmed
            .iter()
            .any(|(a, s)| a == "contact:ben" && s.contains("by key press"))
    );
    assert!(trail.iter().any(|r| {
        r.summary
            .starts_with("call cycle 2 of 3: 1 unconfirmed recipient(s) called again")
    }));
    assert!(trail.iter().any(|r| r.summary.starts_with(
        "finished (its duration is over): 2 of 3 confirmed, 1 not confirmed, 0 unreachable"
    )));
    assert!(
        trail
            .iter()
            .any(|r| r.contact_id == "cal" && r.summary.starts_with("recipient r2: not confirmed"))
    );
}

fn by_outcome(s: &BroadcastStatus, id: &str) -> String {
    s.recipient_rows
        .iter()
        .find(|r| r.contact_id == id)
        .unwrap()
        .outcome
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_recipient_is_called_again_on_the_wall_clock_and_reported_at_the_end() {
    let sys = system(None).await;
    let dee = person("dee", 21, "en", "acme");
    sys.add_contacts(std::slice::from_ref(&dee)).await;
    let t0 = std::time::Instant::now();
    accepted(
        sys.broadcast_request(
            subjects::BROADCAST_START,
            &start(
                "quick",
                Audience {
                    contact_ids: vec!["dee".into()],
                    ..Default::default()
                },
                Cycles {
                    interval_seconds: 2,
                    cycles: 2,
                    duration_seconds: 3,
                },
            ),
        )
        .await,
    );
    let calls = sys.http.wait_for("/voice", 2, WAIT).await;
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(
        gap >= Duration::from_millis(1800),
        "called again after {gap:?}, not 2 s"
    );
    let s = until_status(&sys, "quick", "the end", |s| {
        s.state == BroadcastState::Finished as i32
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_secs(3));
    assert_eq!((s.confirmed, s.not_confirmed), (0, 1));
    assert_eq!(s.recipient_rows[0].calls, 2);
    // The end cancels the broadcast's timers before it writes its record,
    // and a cycle never runs on a broadcast that is over: with the last
    // cycle's record and the end's in the trail, and nothing on its way,
    // no call can come after.
    until_trail(&sys, "quick", "call cycle 2 of 2").await;
    until_trail(&sys, "quick", "finished (its duration is over)").await;
    sys.wait_until_idle().await;
    assert_eq!(
        calls_to(&sys, phone_of(&dee)).len(),
        2,
        "no call after the last cycle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_without_a_coordinator_credential_is_refused_and_sends_nothing() {
    let sys = system(None).await;
    sys.add_contacts(&[person("eve", 31, "en", "acme")]).await;
    let audience = Audience {
        organisations: vec!["acme".into()],
        ..Default::default()
    };
    let mut req = start("no-cred", audience.clone(), Cycles::default());
    for credential in ["", "a-guess", COORDINATOR_TOKEN.trim_end_matches('n')] {
        req.credential = credential.into();
        let r = rejected(sys.broadcast_request(subjects::BROADCAST_START, &req).await);
        assert_eq!(r.code, ErrorCode::Unauthorized as i32);
        assert_eq!(r.field, "credential");
        assert!(r.message.contains("nothing was sent"), "{}", r.message);
    }
    // A cancel or update is refused the same way.
    let r = rejected(
        sys.broadcast_request(
            subjects::BROADCAST_CANCEL,
            &CancelBroadcast {
                broadcast_id: "no-cred".into(),
                credential: "a-guess".into(),
                reason: String::new(),
            },
        )
        .await,
    );
    assert_eq!(
        (r.code, r.field.as_str()),
        (ErrorCode::Unauthorized as i32, "credential")
    );
    // A coordinator with a bad field hears which.
    let mut bad = start(
        "no-cred",
        Audience {
            group_ids: vec!["nobody-here".into()],
            ..Default::default()
        },
        Cycles::default(),
    );
    bad.messages[1].subject.clear();
    let r = rejected(sys.broadcast_request(subjects::BROADCAST_START, &bad).await);
    assert_eq!(
        (r.code, r.field.as_str()),
        (ErrorCode::InvalidArgument as i32, "messages[1].subject")
    );
    bad.messages[1].subject = "Sujet".into();
    let r = rejected(sys.broadcast_request(subjects::BROADCAST_START, &bad).await);
    assert_eq!(
        (r.code, r.field.as_str()),
        (ErrorCode::NotFound as i32, "audience.group_ids[0]")
    );

    // A broadcast started properly after all that is sent at once: once it
    // has been and nothing is on its way, anything the refused requests
    // had set going would have been sent too. Only Zed, its audience, hears
    // anything.
    let zed = person("zed", 32, "en", "elsewhere");
    sys.add_contacts(std::slice::from_ref(&zed)).await;
    accepted(
        sys.broadcast_request(
            subjects::BROADCAST_START,
            &start(
                "after-the-refusals",
                Audience {
                    contact_ids: vec!["zed".into()],
                    ..Default::default()
                },
                Cycles {
                    cycles: 1,
                    ..Default::default()
                },
            ),
        )
        .await,
    );
    sys.smtp.wait_for(1, WAIT).await;
    sys.http.wait_for("/voice", 1, WAIT).await;
    sys.wait_until_idle().await;
    let mailed: Vec<Vec<String>> = sys.smtp.mails().into_iter().map(|m| m.to).collect();
    assert_eq!(mailed, [["zed@example.org"]], "no email but Zed's");
    let called: Vec<Option<String>> = sys
        .http
        .requests()
        .iter()
        .map(|r| r.field("To").map(str::to_string))
        .collect();
    assert_eq!(
        called,
        [Some(phone_of(&zed).to_string())],
        "no call but Zed's, no SMS"
    );
    match sys.broadcast_status("no-cred").await.result {
        Some(broadcast_status_reply::Result::Rejected(r)) => {
            assert_eq!(r.code, ErrorCode::NotFound as i32)
        }
        other => panic!("expected not found, got {other:?}"),
    }
    // Each refused attempt is documented, with who tried.
    let trail = sys.trail("no-cred").await;
    let refused: Vec<(String, String)> = trail
        .iter()
        .filter(|r| r.step == AuditStep::Broadcast as i32)
        .map(|r| (r.actor.clone(), r.summary.clone()))
        .collect();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert_eq!(
        refused
            .iter()
            .filter(|(a, s)| a == "unauthenticated caller"
                && s.contains("refused (credential): unauthorized"))
            .count(),
        4
    );
    assert!(
        refused
            .iter()
            .any(|(a, s)| a == "anna" && s == "start refused (audience.group_ids[0]): not_found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_breach_reaches_the_dpo_and_management_by_email_and_phone() {
    let sys = system(None).await;
    let mut dpo = person("dana", 41, "en", "herald-staff");
    dpo.role = Some("dpo".into());
    let mut boss = person("max", 42, "fr", "herald-staff");
    boss.role = Some("management".into());
    let mut lead = person("kim", 43, "en", "herald-staff");
    lead.role = Some("team_lead".into());
    let client = contact("alice", Some("alice@example.org"), None, "email");
    sys.add_contacts(&[dpo.clone(), boss.clone(), lead, client])
        .await;

    let id = sys
        .notify_ok(&herald_proto::v1::NotificationRequest {
            idempotency_key: "breach-1".into(),
            communication_type: CommunicationType::DataBreach as i32,
            recipients: vec![fixtures::to_contact("alice")],
            template_id: "incident_alert".into(),
            params: [
                ("reference".to_string(), "BR-7".to_string()),
                ("summary".to_string(), "Exposed export".to_string()),
            ]
            .into(),
            case_id: "CASE-BR-7".into(),
            requester: "monitoring".into(),
            ..Default::default()
        })
        .await;

    let mails = sys.smtp.wait_for(3, WAIT).await;
    let calls = sys.http.wait_for("/voice", 2, WAIT).await;
    let mut called: Vec<&str> = calls.iter().filter_map(|c| c.field("To")).collect();
    called.sort();
    assert_eq!(
        called,
        [phone_of(&dpo), phone_of(&boss)],
        "the DPO and management, not the team lead"
    );
    let alert = |to: &str| mails.iter().find(|m| m.to[0] == to).unwrap().clone();
    assert_eq!(
        alert("dana@example.org").subject(),
        "Data breach reported: CASE-BR-7"
    );
    assert_eq!(
        alert("max@example.org").subject(),
        "Violation de données signalée : CASE-BR-7"
    );
    assert!(
        alert("alice@example.org")
            .header("Message-ID")
            .unwrap()
            .contains(&id)
    );
    assert!(
        !alert("dana@example.org").body().contains("Exposed export"),
        "the alert names the reference only"
    );

    let trail = sys.trail(&id).await;
    assert!(trail.iter().any(|r| {
        r.step == AuditStep::Broadcast as i32
            && r.actor == "breach-protocol"
            && r.summary
                .contains("to every dpo and management by email and phone")
    }));
    let breach = format!("breach-{id}");
    let s = until_status(&sys, &breach, "the breach alert's sends", |s| {
        s.channels[1].sent == 2
    })
    .await;
    assert_eq!(
        (s.recipients, s.started_by.as_str()),
        (2, "breach-protocol")
    );
    // Its next cycle (calls only) is minutes away: once nothing is on its
    // way, these are all the emails there will be.
    sys.wait_until_idle().await;
    assert_eq!(sys.smtp.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_reply_confirms_an_update_reaches_everyone_and_a_cancel_stops_the_calls() {
    let clock = ManualClock::at(Utc::now());
    let sys = system(Some(clock.clone())).await;
    let fay = person("fay", 51, "en", "acme");
    let gus = person("gus", 52, "en", "acme");
    sys.add_contacts(&[fay.clone(), gus.clone()]).await;
    let mut req = start(
        "storm",
        Audience {
            contact_ids: vec!["fay".into(), "gus".into()],
            ..Default::default()
        },
        Cycles {
            interval_seconds: 60,
            cycles: 3,
            duration_seconds: 600,
        },
    );
    req.sms = true;
    accepted(sys.broadcast_request(subjects::BROADCAST_START, &req).await);
    let texts = sys.http.wait_for("/sms", 2, WAIT).await;
    assert!(
        texts[0]
            .field("Body")
            .unwrap()
            .ends_with("Reply YES to confirm you have received this.")
    );
    sys.http.wait_for("/voice", 2, WAIT).await;

    let inbound = format!("{PUBLIC_URL}/v1/broadcast/sms");
    let forged = provider_post(
        &sys,
        &inbound,
        &[("From", phone_of(&fay)), ("Body", "YES")],
        None,
    )
    .await;
    assert_eq!(forged.status(), 403);
    let reply = provider_post(
        &sys,
        &inbound,
        &[
            ("From", phone_of(&fay)),
            ("Body", " yes! "),
            ("MessageSid", "SM-in-1"),
        ],
        Some(PROVIDER_TOKEN),
    )
    .await;
    assert_eq!(reply.status(), 200);
    let s = status(&sys, "storm").await;
    assert_eq!(s.confirmed, 1);
    assert_eq!(s.recipient_rows[0].confirmed_via, Channel::Sms as i32);

    // An update goes to everyone at once, by email and SMS.
    accepted(
        sys.broadcast_request(
            subjects::BROADCAST_UPDATE,
            &UpdateBroadcast {
                broadcast_id: "storm".into(),
                credential: COORDINATOR_TOKEN.into(),
                messages: vec![message(
                    "en",
                    "Stay indoors",
                    "Stay indoors until further notice.",
                )],
                default_language: String::new(),
                ..Default::default()
            },
        )
        .await,
    );
    let mails = sys.smtp.wait_for(4, WAIT).await;
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject() == "Stay indoors")
            .count(),
        2
    );
    sys.http.wait_for("/sms", 4, WAIT).await;

    // Cycle 2 calls Gus, who has not confirmed; then the coordinator cancels.
    clock.advance(TimeDelta::seconds(60));
    let deadline = tokio::time::Instant::now() + WAIT;
    while calls_to(&sys, phone_of(&gus)).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gus not called again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        calls_to(&sys, phone_of(&gus))[1]
            .field("Twiml")
            .unwrap()
            .contains("Stay indoors until further notice."),
        "later calls speak the update"
    );
    let cancel = CancelBroadcast {
        broadcast_id: "storm".into(),
        credential: COORDINATOR_TOKEN.into(),
        reason: "all clear".into(),
    };
    assert!(
        !accepted(
            sys.broadcast_request(subjects::BROADCAST_CANCEL, &cancel)
                .await
        )
        .duplicate
    );
    assert!(
        accepted(
            sys.broadcast_request(subjects::BROADCAST_CANCEL, &cancel)
                .await
        )
        .duplicate
    );
    let s = until_status(&sys, "storm", "cancelled", |s| {
        s.state == BroadcastState::Cancelled as i32
    })
    .await;
    assert_eq!(s.cancelled, "cancelled by anna: all clear");
    assert_eq!(s.updates, 1);
    // The third cycle's time comes, and goes without a call. Another
    // broadcast, started now on the same clock, has its second cycle due a
    // second after the storm's third: the timers fire one at a time in the
    // order they are due, so once its cycle is in its trail (and nothing is
    // on its way) whatever the storm's third cycle did is done.
    let hana = person("hana", 53, "en", "acme");
    sys.add_contacts(std::slice::from_ref(&hana)).await;
    accepted(
        sys.broadcast_request(
            subjects::BROADCAST_START,
            &start(
                "after-the-storm",
                Audience {
                    contact_ids: vec!["hana".into()],
                    ..Default::default()
                },
                Cycles {
                    interval_seconds: 61,
                    cycles: 2,
                    duration_seconds: 600,
                },
            ),
        )
        .await,
    );
    until_status(&sys, "after-the-storm", "started", |s| s.cycles_done == 1).await;
    clock.advance(TimeDelta::seconds(120));
    until_trail(&sys, "after-the-storm", "call cycle 2 of 2").await;
    sys.wait_until_idle().await;
    assert_eq!(
        calls_to(&sys, phone_of(&gus)).len(),
        2,
        "no call after the cancel"
    );
    assert_eq!(calls_to(&sys, phone_of(&fay)).len(), 1);
    let r = rejected(
        sys.broadcast_request(
            subjects::BROADCAST_UPDATE,
            &UpdateBroadcast {
                broadcast_id: "storm".into(),
                credential: COORDINATOR_TOKEN.into(),
                messages: vec![message("en", "Too late", "Too late.")],
                default_language: String::new(),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(
        (r.code, r.field.as_str()),
        (ErrorCode::InvalidState as i32, "broadcast_id")
    );
    let trail = sys.trail("storm").await;
    assert!(
        trail
            .iter()
            .any(|r| r.actor == "contact:fay" && r.summary.contains("by SMS reply"))
    );
    assert!(
        trail
            .iter()
            .any(|r| r.actor == "anna" && r.summary == "cancel accepted from coordinator anna")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_stops_a_call_still_waiting_in_delivery() {
    let mut sys = system(None).await;
    let hal = person("hal", 61, "en", "acme");
    sys.add_contacts(std::slice::from_ref(&hal)).await;
    // Delivery is down: the call waits in the emergency stream.
    sys.stop("delivery").await;
    accepted(
        sys.broadcast_request(
            subjects::BROADCAST_START,
            &start(
                "outage",
                Audience {
                    contact_ids: vec!["hal".into()],
                    ..Default::default()
                },
                Cycles {
                    cycles: 1,
                    ..Default::default()
                },
            ),
        )
        .await,
    );
    until_status(&sys, "outage", "started", |s| s.recipients == 1).await;
    // Hal confirms (say, the link reached them some other way) before
    // delivery gets to the call.
    let signer = herald_broadcast::link::Signer::new(
        sys.cfg
            .broadcast
            .link_secret
            .as_ref()
            .unwrap()
            .expose_secret(),
        PUBLIC_URL,
    );
    let link = signer.url(herald_broadcast::link::Kind::Confirm, "outage", 0, &[]);
    let r = reqwest::Client::new()
        .post(local(&sys, &link))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    sys.start_delivery().await;
    sys.smtp.wait_for(1, WAIT).await;
    // The email still carries the message; the call is dropped.
    until_status(&sys, "outage", "email sent, call dropped", |s| {
        (
            s.recipient_rows[0].email.as_str(),
            s.recipient_rows[0].voice.as_str(),
        ) == ("delivered", "cancelled")
    })
    .await;
    assert!(
        sys.http.requests_to("/voice").is_empty(),
        "no call after the confirmation"
    );
    let trail = sys.trail("outage").await;
    assert!(trail.iter().any(|r| {
        r.step == AuditStep::Cancelled as i32
            && r.job_id == "outage-r0-voice-c1"
            && r.summary
                .contains("recipient confirmed receipt by email link")
    }));
}

/// The normal lane yields to emergency work anywhere: while some service
/// says it has emergency work (`herald.v1.emergency.busy`), ordinary
/// notifications wait at every step and an emergency one goes straight
/// through; afterwards every ordinary one arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_work_waits_while_emergency_work_is_under_way_and_none_is_lost() {
    use herald_proto::v1::{Lane, Priority};
    const N: usize = 60;
    let sys = TestSystem::start().await;
    // Another process busy with an emergency, as the broadcast service or
    // delivery would say it.
    let busy = tokio_util::sync::CancellationToken::new();
    let pulses = {
        let client = sys.client.clone();
        let busy = busy.clone();
        tokio::spawn(async move {
            while !busy.is_cancelled() {
                let _ = client
                    .publish(subjects::EMERGENCY_BUSY, "test-emergency".into())
                    .await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    // Nothing says when every service has heard the pulses; a few of
    // them is plenty, and one that had not would let ordinary SMS through
    // (the test fails, it does not pass falsely).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = sys.client.clone();
    let ordinary_sent = tokio::time::Instant::now();
    let ordinary = tokio::spawn(async move {
        let reqs = (0..N)
            .map(|i| {
                fixtures::inquiry_to(&format!("calm-{i}"), fixtures::person(i, &[Channel::Sms]))
            })
            .collect();
        submit_all(&client, reqs, 16).await
    });

    let mut urgent = fixtures::inquiry_to(
        "urgent-1",
        fixtures::person(9_000, &[Channel::Email, Channel::Voice]),
    );
    urgent.communication_type = CommunicationType::Incident as i32;
    urgent.priority = Priority::Critical as i32;
    urgent.template_id = "incident_alert".into();
    urgent.params = [
        ("reference".to_string(), "INC-9".to_string()),
        ("summary".to_string(), "Power cut".to_string()),
    ]
    .into();
    submit(&sys.client, &urgent, Lane::Emergency).await;
    sys.http.wait_for("/voice", 1, WAIT).await;
    sys.smtp.wait_for(1, WAIT).await;
    // Held back, the ordinary requests stay so for as long as emergency
    // work goes on: no event marks the moment they would have gone, so
    // this one waits. Let through, they reach the provider within a few
    // hundred milliseconds of being sent; a second after they were, none
    // has.
    tokio::time::sleep_until(ordinary_sent + Duration::from_secs(1)).await;
    assert!(
        sys.http.requests_to("/sms").is_empty(),
        "no ordinary SMS while emergency work is under way; got {}",
        sys.http.requests_to("/sms").len()
    );

    busy.cancel();
    pulses.await.unwrap();
    let ids = ordinary.await.unwrap();
    let expected = jobs(&ids, Channel::Sms);
    until("every ordinary SMS", WAIT, || {
        sys.http.requests_to("/sms").len() >= N
    })
    .await;
    // A second copy, if there were one, would still be on its way.
    sys.wait_until_idle().await;
    let c = count_http(&sys.http.requests_to("/sms"), &expected);
    assert_eq!((c.lost, c.duplicated, c.unexpected), (0, 0, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_holds_sensitive_content_to_the_people_it_affected_until_the_dpo_releases_it() {
    use herald_proto::{
        Message,
        v1::{BreachRelease, BreachReply, NotificationRequest, breach_reply},
    };
    let sys = system(None).await;
    let mut dpo = person("dana", 44, "en", "herald-staff");
    dpo.role = Some("dpo".into());
    let mut boss = person("max", 45, "en", "herald-staff");
    boss.role = Some("management".into());
    let ria = contact("ria", Some("ria@example.org"), None, "email");
    sys.add_contacts(&[dpo, boss, ria]).await;
    let complaint = |key: &str, reference: &str| NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::FeedbackComplaint as i32,
        recipients: vec![fixtures::to_contact("ria")],
        template_id: "complaint_received".into(),
        params: [("reference".to_string(), reference.to_string())].into(),
        ..Default::default()
    };

    // A sensitive message to ria waits on a relay that refuses for now.
    sys.smtp.set_tempfail(true);
    let queued = sys.notify_ok(&complaint("held-1", "CMP-H1")).await;
    sys.wait_for_step(&queued, AuditStep::RetryScheduled, WAIT)
        .await;

    // The breach names ria as affected: her queued sensitive mail, and a
    // new one, are held; the breach's own message to her is not.
    let breach = sys
        .notify_ok(&NotificationRequest {
            idempotency_key: "breach-h".into(),
            communication_type: CommunicationType::DataBreach as i32,
            recipients: vec![fixtures::to_contact("ria")],
            template_id: "incident_alert".into(),
            params: [
                ("reference".to_string(), "BR-H".to_string()),
                ("summary".to_string(), "Exposed export".to_string()),
            ]
            .into(),
            affected_contact_ids: vec!["ria".into()],
            ..Default::default()
        })
        .await;
    let later = sys.notify_ok(&complaint("held-2", "CMP-H2")).await;
    sys.smtp.set_tempfail(false);
    sys.smtp
        .wait_for_mail_to("ria@example.org", "BR-H", WAIT)
        .await;
    for id in [&queued, &later] {
        let trail = sys.wait_for_step(id, AuditStep::Held, WAIT).await;
        let held = trail
            .iter()
            .find(|r| r.step == AuditStep::Held as i32)
            .expect("held");
        assert!(
            held.summary.contains(&format!("breach-{breach}")),
            "{}",
            held.summary
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for reference in ["CMP-H1", "CMP-H2"] {
        assert!(
            sys.smtp.mails_to("ria@example.org", reference).is_empty(),
            "{reference} reached an affected contact during the breach"
        );
    }
    let contained = sys.trail(&breach).await;
    assert!(
        contained
            .iter()
            .any(|r| r.step == AuditStep::Held as i32 && r.summary.starts_with("breach contained"))
    );

    // Only the Data Protection Officer's identity may release it: a
    // publisher's request is refused by the server, and nothing moves.
    let release = BreachRelease {
        breach_id: format!("breach-{breach}"),
        reason: "contained and reported".into(),
        requester: "dana".into(),
    };
    let forbidden = tokio::time::timeout(
        Duration::from_secs(3),
        sys.publisher.request(
            subjects::from_caller(subjects::INTAKE_BREACH, "publisher"),
            release.encode_to_vec().into(),
        ),
    )
    .await;
    assert!(
        !matches!(forbidden, Ok(Ok(_))),
        "a publisher released a breach"
    );
    assert!(sys.smtp.mails_to("ria@example.org", "CMP-H1").is_empty());

    // The DPO releases the breach: each held mail goes out, once.
    let dpo_bus = sys.nats.connect_as("dpo").await;
    let reply = dpo_bus
        .request(
            subjects::from_caller(subjects::INTAKE_BREACH, "dpo"),
            release.encode_to_vec().into(),
        )
        .await
        .expect("intake answers");
    let reply = BreachReply::decode(reply.payload).expect("a breach reply");
    assert_eq!(reply.result, Some(breach_reply::Result::Released(true)));
    for reference in ["CMP-H1", "CMP-H2"] {
        sys.smtp
            .wait_for_mail_to("ria@example.org", reference, WAIT)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for reference in ["CMP-H1", "CMP-H2"] {
        assert_eq!(sys.smtp.mails_to("ria@example.org", reference).len(), 1);
    }
    assert!(sys.trail(&breach).await.iter().any(|r| {
        r.summary
            .starts_with(&format!("breach breach-{breach} released"))
    }));
}
