//! Rate limits, measured where they matter: at the provider and at the
//! person. Limited messages are late, never lost.

use std::time::{Duration, Instant};

use herald_proto::v1::{Channel, Lane};
use herald_testkit::{
    TestSystem,
    count::{count_http, count_mail, job_id, jobs},
    fixtures::{contact, inquiry, inquiry_to, person},
    http::Reply,
    scrape,
    submit::{submit, submit_all},
    wait::until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_never_gets_more_than_its_rate_or_its_connections() {
    const N: usize = 60;
    const RATE: f64 = 20.0;
    const CONNECTIONS: usize = 3;
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.sms_rate = RATE;
        cfg.delivery.sms_connections = CONNECTIONS;
    })
    .await;
    // A slow provider: without the connection limit, many requests would
    // be open at once.
    sys.http.set_delay(Duration::from_millis(100));
    let reqs = (0..N)
        .map(|i| inquiry_to(&format!("rate-{i}"), person(i, &[Channel::Sms])))
        .collect();
    let ids = submit_all(&sys.client, reqs, 64).await;
    let expected = jobs(&ids, Channel::Sms);
    until("every SMS accepted", Duration::from_secs(60), || {
        count_http(&sys.http.requests_to("/sms"), &expected).arrived == N
    })
    .await;
    let requests = sys.http.requests_to("/sms");
    let c = count_http(&requests, &expected);
    assert_eq!((c.lost, c.duplicated), (0, 0), "{c:?}");
    assert!(
        sys.http.max_in_flight() <= CONNECTIONS,
        "{} requests open at once",
        sys.http.max_in_flight()
    );
    // Paced: N sends at RATE per second take at least (N - 1) / RATE.
    let first = requests.iter().map(|r| r.at).min().unwrap();
    let last = requests.iter().map(|r| r.at).max().unwrap();
    let span = last.duration_since(first);
    let least = Duration::from_secs_f64((N - 1) as f64 / RATE);
    assert!(
        span + Duration::from_millis(100) >= least,
        "{N} SMS in {span:?}: faster than {RATE}/s"
    );
    let page = scrape::metrics(sys.http_addr("delivery")).await;
    assert!(page.sum("herald_delivery_held_total", &[("reason", "provider_rate")]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_gets_no_more_calls_than_the_window_allows_except_in_an_emergency() {
    const WINDOW: Duration = Duration::from_secs(4);
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.contact_max_voice = 2;
        cfg.delivery.contact_window = WINDOW;
    })
    .await;
    sys.add_contacts(&[contact("vera", None, Some("+447700900555"), "voice")])
        .await;
    let call = |key: &str| {
        let mut req = inquiry(key, "vera", key);
        req.channel_override = vec![Channel::Voice as i32];
        req
    };
    let start = Instant::now();
    let mut normal = Vec::new();
    for k in 0..5 {
        normal.push(submit(&sys.client, &call(&format!("call-{k}")), Lane::Normal).await);
    }
    // The window is full by now; an emergency call still goes at once.
    sys.http
        .wait_for("/voice", 2, Duration::from_secs(10))
        .await;
    let emergency_sent = Instant::now();
    let emergency = submit(&sys.client, &call("urgent"), Lane::Emergency).await;
    let urgent_job = job_id(&emergency, Channel::Voice);
    let calls = sys
        .http
        .wait_for("/voice", 6, Duration::from_secs(30))
        .await;
    let urgent = calls
        .iter()
        .find(|r| r.header("idempotency-key") == Some(urgent_job.as_str()))
        .expect("the emergency call was made");
    // Calls are timed at the sink, a little after the window admitted
    // them; the slack absorbs that.
    let slack = Duration::from_millis(500);
    // Held by the full window like an ordinary call, it could not have been
    // made before the first call left the window: it went while the window
    // was still full. (How long it took depends on the machine; that it
    // beat the window does not.)
    let first = calls.iter().map(|r| r.at).min().unwrap();
    assert!(
        urgent.at + slack < first + WINDOW,
        "the emergency call waited for the window: made {:?} after it was sent, {:?} after the first call",
        urgent.at.duration_since(emergency_sent),
        urgent.at.duration_since(first)
    );
    // Every normal call was made, once, and none while two others had
    // been made within the window before it (emergency calls count too:
    // the person was called).
    let expected = jobs(&normal, Channel::Voice);
    let c = count_http(&calls, &expected);
    assert_eq!((c.lost, c.duplicated), (0, 0), "{c:?}");
    for r in calls
        .iter()
        .filter(|r| expected.contains(r.header("idempotency-key").unwrap()))
    {
        let before = calls
            .iter()
            .filter(|x| x.at < r.at && r.at.duration_since(x.at) + slack < WINDOW)
            .count();
        assert!(
            before < 2,
            "a call made with {before} others in the window before it"
        );
    }
    // Five normal calls and one emergency call at two per window: the last
    // one can only go out after two full windows.
    let last = calls.iter().map(|r| r.at).max().unwrap();
    assert!(last.duration_since(start) >= WINDOW * 2 - slack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_message_never_queues_behind_ordinary_ones_for_a_connection() {
    const BACKLOG: usize = 160;
    const DELAY: Duration = Duration::from_millis(250);
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.sms_connections = 4;
    })
    .await;
    // A slow provider: the ordinary backlog takes seconds to clear (the
    // test does not wait for that).
    sys.http.set_delay(DELAY);
    let reqs = (0..BACKLOG)
        .map(|i| inquiry_to(&format!("bulk-{i}"), person(i, &[Channel::Sms])))
        .collect();
    let ids = submit_all(&sys.client, reqs, 64).await;
    sys.http.wait_for("/sms", 4, Duration::from_secs(20)).await;
    let sent = Instant::now();
    let urgent = submit(
        &sys.client,
        &inquiry_to("urgent-sms", person(BACKLOG, &[Channel::Sms])),
        Lane::Emergency,
    )
    .await;
    let key = job_id(&urgent, Channel::Sms);
    until("the emergency SMS arrived", Duration::from_secs(20), || {
        sys.http
            .requests_to("/sms")
            .iter()
            .any(|r| r.header("idempotency-key") == Some(key.as_str()))
    })
    .await;
    let waited = sent.elapsed();
    let ordinary_left =
        BACKLOG - count_http(&sys.http.requests_to("/sms"), &jobs(&ids, Channel::Sms)).arrived;
    // Queued behind the ordinary messages waiting for a connection, it
    // would have let them go first: the provider paces those (it is never
    // faster on a loaded machine), so most of the backlog would be gone.
    assert!(
        ordinary_left > BACKLOG / 2,
        "the emergency SMS went after {} of the {BACKLOG} ordinary ones",
        BACKLOG - ordinary_left
    );
    // The same in time: half the backlog needs BACKLOG / 2 × 250 ms over
    // the 3 connections ordinary traffic may use, about 6.7 s.
    let half_the_backlog = DELAY * (BACKLOG / 2) as u32 / 3;
    assert!(
        waited < half_the_backlog,
        "the emergency SMS waited {waited:?} behind ordinary traffic"
    );
    assert!(sys.http.max_in_flight() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_asking_for_an_hour_of_quiet_does_not_hold_messages_past_their_time_limit() {
    const N: usize = 100;
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.give_up_after = Duration::from_secs(3);
    })
    .await;
    sys.http
        .respond_with(|_, _| Reply::status(429).retry_after("3600"));
    let reqs = (0..N)
        .map(|i| {
            inquiry_to(
                &format!("quiet-{i}"),
                person(i, &[Channel::Sms, Channel::Email]),
            )
        })
        .collect();
    let started = Instant::now();
    let ids = submit_all(&sys.client, reqs, 64).await;
    let expected: std::collections::HashSet<String> = ids
        .iter()
        .map(|id| format!("{}-fb-email", job_id(id, Channel::Sms)))
        .collect();
    until(
        "every SMS fell back to email",
        Duration::from_secs(60),
        || count_mail(&sys.smtp.mails(), &expected).arrived == N,
    )
    .await;
    let took = started.elapsed();
    let c = count_mail(&sys.smtp.mails(), &expected);
    assert_eq!((c.lost, c.duplicated), (0, 0), "{c:?}");
    // The provider was asked only by the workers that held a connection
    // when it first said 429, then left alone.
    let asked = sys.http.requests_to("/sms").len();
    println!("{asked} requests before the provider's pause was seen by all");
    assert!(
        asked <= sys.cfg.delivery.sms_connections,
        "{asked} requests to a provider that asked for quiet"
    );
    // Held for the provider's hour, they would take 3600 s; their 3 s limit
    // and half a minute for a loaded machine is far from that.
    assert!(
        took < sys.cfg.delivery.give_up_after + Duration::from_secs(30),
        "every SMS fell back only after {took:?}"
    );
}

/// A provider connection is busy only while the provider is being asked:
/// once it has answered, the next message may use the connection even if
/// writing down the first one's result is still going on. With one
/// connection and the first job's bookkeeping held up, the second message
/// still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_free_for_the_next_message_as_soon_as_the_provider_answers() {
    let mut sys = TestSystem::start_with(|cfg| {
        cfg.delivery.sms_connections = 1;
        // A long lease: a job whose "sent" cannot be written holds on for
        // half of it (over 30 s) before it gives up.
        cfg.delivery.attempt_timeout = Duration::from_secs(30);
        // Status callbacks on: a sent SMS then adds a line to its attempt
        // history, which is what the test blocks.
        cfg.delivery.status_callback_base = Some("https://herald.test/cb".into());
        cfg.delivery.provider_token = Some("provider-signing-secret".into());
    })
    .await;
    sys.stop("delivery").await;
    let ids = vec![
        submit(
            &sys.client,
            &inquiry_to("slot-1", person(1, &[Channel::Sms])),
            Lane::Normal,
        )
        .await,
        submit(
            &sys.client,
            &inquiry_to("slot-2", person(2, &[Channel::Sms])),
            Lane::Normal,
        )
        .await,
    ];
    // Each job's attempt history is made unwritable, so recording a send
    // (which appends to it) fails and is retried until the test allows it.
    let mut redis =
        herald_runtime::store::connect(&sys.cfg.redis, &tokio_util::sync::CancellationToken::new())
            .await
            .expect("redis");
    let keyspace = herald_proto::keyspace::DELIVERY.prefix(&sys.cfg.redis.prefix);
    let history = |id: &str| format!("{keyspace}jobhist:{}", job_id(id, Channel::Sms));
    for id in &ids {
        let _: () = redis::cmd("SET")
            .arg(history(id))
            .arg("not a list")
            .query_async(&mut redis)
            .await
            .expect("history blocked");
    }
    sys.start_delivery().await;

    let sms = sys.http.wait_for("/sms", 2, Duration::from_secs(10)).await;
    // Both went out while neither could be recorded yet.
    for id in &ids {
        let still_blocked: Option<String> = redis::cmd("GET")
            .arg(history(id))
            .query_async(&mut redis)
            .await
            .expect("readable");
        assert_eq!(still_blocked.as_deref(), Some("not a list"));
    }
    assert_eq!(sms.len(), 2);

    // Once the bookkeeping can be written, it is, and nothing goes twice.
    for id in &ids {
        let _: () = redis::cmd("DEL")
            .arg(history(id))
            .query_async(&mut redis)
            .await
            .expect("unblocked");
    }
    let expected = jobs(&ids, Channel::Sms);
    for id in &ids {
        sys.wait_for_step(
            id,
            herald_proto::v1::AuditStep::Sent,
            Duration::from_secs(20),
        )
        .await;
    }
    let c = count_http(&sys.http.requests_to("/sms"), &expected);
    assert_eq!((c.arrived, c.lost, c.duplicated), (2, 0, 0), "{c:?}");
}
