//! Fault tests for delivery: thousands of notifications through real
//! nats-server, redis-server, SMTP and HTTP while something breaks, and an
//! exact count of what reached the sinks.
//!
//! Each test prints one row of the fault-run table (N, lost, duplicated,
//! time to recover):
//!
//! ```text
//! cargo test -p herald-testkit --test faults -- --nocapture | grep '^| '
//! ```
//!
//! "Duplicated" counts messages a recipient would receive twice. Where a
//! test makes the HTTP sink honour `Idempotency-Key` as real providers do,
//! it says so and also reports the raw repeats the sink absorbed.
//!
//! The tests run one at a time (the kit's `chaos::serial`, a mutex), so
//! each one's timings are its own even when the harness runs tests in
//! parallel. The three that strike a running pipeline from outside (a
//! SIGKILL, a SIGTERM, nats-server killed) state only their
//! `chaos::Scenario`; `chaos::run` submits, strikes, restarts, waits and
//! counts.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use herald_config::Config;
use herald_proto::{
    Message, subjects,
    v1::{AuditStep, Channel, DeadLetter, DeliveryState, DeliveryStatus},
};
use herald_testkit::{
    TestSystem,
    chaos::{self, Fault, Scenario, row, serial},
    count::{Count, count_http, count_mail, job_id, jobs},
    fixtures::{email, index_of_phone, inquiry_to, person},
    http::{Reply, Request},
    scrape,
    submit::submit_all,
    wait::until,
};

/// A retry schedule long enough to ride out the outages below, as an
/// operator would configure for a provider known to have such hiccups.
fn patient(cfg: &mut Config) {
    cfg.delivery.retry_schedule = [500, 1000, 2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    cfg.delivery.give_up_after = Duration::from_secs(120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_provider_answering_503_and_429_gets_every_message_once_and_its_retry_after_honoured()
 {
    let _serial = serial().await;
    const N: usize = 2000;
    const RETRY_AFTER: Duration = Duration::from_secs(2);
    // From the first request: 3 s of 503 (no Retry-After), then 3 s of
    // 429 with Retry-After, then everything is accepted.
    const PHASE: Duration = Duration::from_secs(3);
    const OUTAGE: Duration = Duration::from_secs(6);
    let sys = TestSystem::start_with(|cfg| {
        patient(cfg);
        cfg.delivery.sms_connections = 8;
    })
    .await;
    let first: std::sync::Arc<std::sync::OnceLock<Instant>> = Default::default();
    {
        let first = first.clone();
        sys.http.respond_with(move |r, n| {
            let t0 = *first.get_or_init(|| r.at);
            let since = r.at.duration_since(t0);
            if since < PHASE {
                Reply::status(503)
            } else if since < OUTAGE {
                Reply::status(429).retry_after(&RETRY_AFTER.as_secs().to_string())
            } else {
                Reply::ok(&format!("SM{n:06}"))
            }
        });
    }

    let reqs = (0..N)
        .map(|i| inquiry_to(&format!("sms-{i}"), person(i, &[Channel::Sms])))
        .collect();
    let ids = submit_all(&sys.client, reqs, 64).await;
    let expected = jobs(&ids, Channel::Sms);
    let done = until("every SMS accepted", Duration::from_secs(120), || {
        count_http(&sys.http.requests_to("/sms"), &expected).arrived == N
    })
    .await;
    // A duplicate, if there were one, would still be on its way: count
    // once nothing is.
    sys.wait_until_idle().await;
    let requests = sys.http.requests_to("/sms");
    let c = count_http(&requests, &expected);
    let t0 = *first.get().expect("requests arrived");
    let recovered = done.saturating_duration_since(t0 + OUTAGE);

    // Every 429 is honoured by the job it answered ...
    let mut by_key: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in &requests {
        by_key
            .entry(r.header("idempotency-key").unwrap())
            .or_default()
            .push(r);
    }
    let mut told = 0;
    for (key, tries) in &by_key {
        for pair in tries.windows(2) {
            if pair[0].answered == 429 {
                told += 1;
                let gap = pair[1].at.duration_since(pair[0].at);
                assert!(
                    gap >= RETRY_AFTER,
                    "{key}: tried again {gap:?} after a 429 with Retry-After {RETRY_AFTER:?}"
                );
            }
        }
    }
    assert!(told > 0, "the provider said 429 and somebody listened");
    // ... and by everyone else: once delivery has read a 429, the provider
    // only sees requests that were already on their way (at most one per
    // connection) until the Retry-After has passed.
    let connections = sys.cfg.delivery.sms_connections;
    for r in requests.iter().filter(|r| r.answered == 429) {
        let from = r.at + Duration::from_millis(500);
        let to = r.at + RETRY_AFTER;
        let during = requests.iter().filter(|x| x.at > from && x.at < to).count();
        assert!(
            during <= connections,
            "{during} requests reached the provider while it had asked for {RETRY_AFTER:?} of quiet"
        );
    }

    assert_eq!(c.lost, 0, "{c:?}");
    assert_eq!(c.duplicated, 0, "{c:?}");
    assert_eq!(c.unexpected, 0, "{c:?}");
    row(
        "SMS provider answering 503 for 3 s, then 429 with Retry-After 2 s for 3 s",
        N,
        &c,
        Some(recovered),
        &format!(
            "{} requests on the wire ({} answered 503, {} answered 429, each 429 honoured)",
            requests.len(),
            requests.iter().filter(|r| r.answered == 503).count(),
            told
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_killed_with_sigkill_mid_run_and_restarted_loses_nothing() {
    let run = chaos::run(Scenario {
        n: 2000,
        tag: "kill",
        fault: Fault::KillDelivery {
            down: Duration::from_millis(500),
        },
        // A short attempt limit keeps the lease (2 × limit + 5 s), and so
        // the wait before a dead worker's jobs are taken over, short.
        configure: |cfg| cfg.delivery.attempt_timeout = Duration::from_secs(3),
        // The SMS sink behaves like a provider that honours
        // Idempotency-Key: a repeat of an accepted request gets the first
        // answer and is not sent on. Raw repeats are counted separately.
        // The SMTP sink is a plain server: every message it accepts counts.
        provider_honours_idempotency: true,
    })
    .await;
    let (s, e, cfg) = (&run.sms, &run.email, &run.sys.cfg);
    let page = scrape::metrics(run.delivery_addr()).await;
    let takeovers = page.sum("herald_delivery_interrupted_takeovers_total", &[]) as usize;
    let suppressed = page.sum("herald_delivery_duplicates_suppressed_total", &[]) as usize;

    // Nothing lost, on either channel.
    assert_eq!((s.lost, e.lost), (0, 0), "sms {s:?} email {e:?}");
    assert_eq!((s.unexpected, e.unexpected), (0, 0));
    // No SMS delivered twice: the ledger stopped every redelivered job it
    // had recorded, and the provider absorbed repeats of the few it had not.
    assert_eq!(s.duplicated, 0, "{s:?}");
    // The only way to reach a provider twice is the crash window between
    // the provider accepting and the ledger recording (see ledger.rs): each
    // such repeat is a job the restarted worker took over from the killed
    // one, so there can be no more repeats than take-overs. Email has no
    // idempotency key a plain SMTP server honours; its repeats, if any,
    // carry the first copy's Message-ID.
    assert!(
        s.absorbed + e.duplicated <= takeovers,
        "{} repeats on the wire but only {takeovers} interrupted attempts taken over",
        s.absorbed + e.duplicated
    );
    // And no more than could be on the wire at the instant of the kill: one
    // per connection the limits allow.
    assert!(
        e.duplicated <= cfg.delivery.smtp_pool_size as usize,
        "{e:?}"
    );
    assert!(s.absorbed <= cfg.delivery.sms_connections, "{s:?}");
    let (no_accepted, no_sent) = run.trail_gaps().await;
    assert_eq!(
        (no_accepted, no_sent),
        (0, 0),
        "notifications missing accepted / sent records"
    );
    row(
        "delivery SIGKILLed mid-run, restarted after 0.5 s",
        run.both().expected,
        &run.both(),
        Some(run.recovered),
        &format!(
            "killed after {} sends; {takeovers} interrupted attempts taken over; \
             SMS (provider honours Idempotency-Key): 0 delivered twice, {} raw repeats absorbed; \
             email (plain SMTP): {} delivered twice; {suppressed} redeliveries suppressed by the ledger; \
             every notification has its accepted and sent records",
            run.at_fault, s.absorbed, e.duplicated
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_stopped_with_sigterm_mid_run_finishes_its_sends_and_loses_nothing() {
    let run = chaos::run(Scenario {
        n: 2000,
        tag: "term",
        fault: Fault::StopDelivery,
        configure: |cfg| cfg.delivery.attempt_timeout = Duration::from_secs(3),
        // No idempotency help here: a graceful stop must not need it.
        provider_honours_idempotency: false,
    })
    .await;
    let (s, e) = (&run.sms, &run.email);
    let takeovers = scrape::metrics(run.delivery_addr())
        .await
        .sum("herald_delivery_interrupted_takeovers_total", &[]) as usize;

    assert_eq!((s.lost, e.lost), (0, 0), "sms {s:?} email {e:?}");
    // Raw wire counts, both channels: a graceful stop leaves nothing half
    // done, so nothing is sent twice and nothing needed taking over.
    assert_eq!(
        (s.duplicated, e.duplicated),
        (0, 0),
        "sms {s:?} email {e:?}"
    );
    assert_eq!(takeovers, 0);
    assert!(
        run.striking < run.sys.cfg.delivery.attempt_timeout + Duration::from_secs(5),
        "stopping took {:?}; delivery's log:\n{}",
        run.striking,
        run.delivery
            .as_ref()
            .map(|(p, _)| p.log())
            .unwrap_or_default()
    );
    row(
        "delivery stopped with SIGTERM mid-run, restarted",
        run.both().expected,
        &run.both(),
        Some(run.recovered),
        &format!(
            "stopped in {:.1} s; raw wire counts, no idempotency help; 0 take-overs",
            run.striking.as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restarted_mid_run_loses_nothing_and_sends_nothing_twice() {
    let run = chaos::run(Scenario {
        n: 2000,
        tag: "nats",
        fault: Fault::KillNats {
            down: Duration::from_secs(1),
        },
        configure: |_| {},
        provider_honours_idempotency: false,
    })
    .await;
    let (s, e) = (&run.sms, &run.email);
    assert_eq!((s.lost, e.lost), (0, 0), "sms {s:?} email {e:?}");
    // Raw wire counts: delivery kept running, so every job it sent was in
    // the ledger before the ack that NATS lost, and its redelivery was
    // recognised.
    assert_eq!(
        (s.duplicated, e.duplicated),
        (0, 0),
        "sms {s:?} email {e:?}"
    );
    assert_eq!((s.unexpected, e.unexpected), (0, 0));
    // Every notification documented: accepted (intake answers "accepted"
    // only once the record is stored) and sent.
    let (no_accepted, no_sent) = run.trail_gaps().await;
    assert_eq!(
        (no_accepted, no_sent),
        (0, 0),
        "notifications missing accepted / sent records"
    );
    row(
        "nats-server killed mid-run, restarted after 1 s",
        run.both().expected,
        &run.both(),
        Some(run.recovered),
        &format!(
            "killed after {} sends; raw wire counts, no idempotency help; every notification has its accepted and sent records",
            run.at_fault
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_refusing_connections_then_failing_temporarily_gets_every_email_after() {
    let _serial = serial().await;
    const N: usize = 2000;
    const DOWN: Duration = Duration::from_secs(4);
    const TEMPFAIL: Duration = Duration::from_secs(2);
    let sys = TestSystem::start_with(patient).await;
    let client = sys.client.clone();
    let reqs = (0..N)
        .map(|i| inquiry_to(&format!("smtp-{i}"), person(i, &[Channel::Email])))
        .collect();
    let submitted = tokio::spawn(async move { submit_all(&client, reqs, 64).await });
    until(
        "a quarter of the emails sent",
        Duration::from_secs(60),
        || sys.smtp.count() >= N / 4,
    )
    .await;
    // Down once the transactions it was in the middle of are cut off:
    // what it has now is everything from before the outage.
    let going_down = Instant::now();
    sys.smtp.down().await;
    let connections_before = sys.smtp.connections();
    let at_down = sys.smtp.count();
    tokio::time::sleep_until((going_down + DOWN).into()).await;
    // Back, but answering 451 to every transaction for a while.
    sys.smtp.set_tempfail(true);
    sys.smtp.up().await;
    tokio::time::sleep(TEMPFAIL).await;
    let during = sys.smtp.count() - at_down;
    sys.smtp.set_tempfail(false);
    let back = Instant::now();
    let ids = submitted.await.unwrap();
    let expected = jobs(&ids, Channel::Email);
    let done = until("every email delivered", Duration::from_secs(120), || {
        count_mail(&sys.smtp.mails(), &expected).arrived == N
    })
    .await;
    // A repeat, if there were one, would still be on its way: count once
    // nothing is.
    sys.wait_until_idle().await;
    let c = count_mail(&sys.smtp.mails(), &expected);
    assert_eq!(during, 0, "nothing can be accepted while refusing");
    assert!(
        sys.smtp.connections() > connections_before,
        "delivery came back to the server"
    );
    assert_eq!(c.lost, 0, "{c:?}");
    assert_eq!(c.duplicated, 0, "{c:?}");
    assert_eq!(c.unexpected, 0, "{c:?}");
    // The trail of an email that waited out the outage shows its retries,
    // then the send.
    let mut checked = false;
    for id in ids.iter().skip(at_down).step_by(50).take(20) {
        let trail = sys.trail(id).await;
        let retries = trail
            .iter()
            .filter(|r| r.step == AuditStep::RetryScheduled as i32)
            .count();
        if retries > 0 {
            assert!(retries <= sys.cfg.delivery.retry_schedule.len());
            assert_eq!(trail.last().unwrap().step, AuditStep::Sent as i32);
            checked = true;
            break;
        }
    }
    assert!(
        checked,
        "no email among those checked waited out the outage"
    );
    row(
        "SMTP refusing connections for 4 s, then 451 for 2 s",
        N,
        &c,
        Some(done.duration_since(back)),
        &format!("{at_down} emails before the outage; raw wire counts"),
    );
}

async fn dead_letters(sys: &TestSystem) -> Vec<DeadLetter> {
    use futures::StreamExt;
    let bus = sys.bus().await;
    let stream = bus.js.get_stream(subjects::STREAM_DLQ).await.unwrap();
    let total = stream.get_info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(total as usize)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    while let Some(m) = batch.next().await {
        out.push(DeadLetter::decode(m.unwrap().payload.clone()).unwrap());
    }
    out
}

async fn dlq_size(sys: &TestSystem) -> u64 {
    let bus = sys.bus().await;
    let mut stream = bus.js.get_stream(subjects::STREAM_DLQ).await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fall_back_or_are_dead_lettered_and_never_retried() {
    let _serial = serial().await;
    // A: SMS refused as an invalid number (400) → email.
    // B: email to a mailbox that does not exist (550), no other channel → DLQ.
    // C: SMS failing with 503 every time, past the schedule → email.
    // D: SMS refused (400), no other channel → DLQ.
    const A: std::ops::Range<usize> = 0..600;
    const B: std::ops::Range<usize> = 600..900;
    const C: std::ops::Range<usize> = 900..1200;
    const D: std::ops::Range<usize> = 1200..1500;
    const N: usize = 1500;
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.retry_schedule = [100, 200, 300]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
    })
    .await;
    let attempts_allowed = sys.cfg.delivery.retry_schedule.len() + 1;
    sys.http.respond_with(|r, _| {
        let i = index_of_phone(r.field("To").unwrap());
        if A.contains(&i) || D.contains(&i) {
            Reply {
                status: 400,
                headers: vec![],
                body: r#"{"code":21211,"message":"The 'To' number is not a valid phone number."}"#
                    .into(),
            }
        } else {
            Reply::status(503)
        }
    });
    for i in B.clone() {
        sys.smtp.reject_mailbox(&email(i));
    }
    let reqs = (0..N)
        .map(|i| {
            let channels: &[Channel] = if B.contains(&i) {
                &[Channel::Email]
            } else if D.contains(&i) {
                &[Channel::Sms]
            } else {
                &[Channel::Sms, Channel::Email]
            };
            inquiry_to(&format!("perm-{i}"), person(i, channels))
        })
        .collect();
    let ids = submit_all(&sys.client, reqs, 64).await;
    let submitted = Instant::now();
    let fallback_emails: HashSet<String> = ids[A.start..C.end]
        .iter()
        .enumerate()
        .filter(|(k, _)| !B.contains(&(k + A.start)))
        .map(|(_, id)| format!("{}-fb-email", job_id(id, Channel::Sms)))
        .collect();
    assert_eq!(fallback_emails.len(), A.len() + C.len());
    let settled = until(
        "every job delivered by fallback or dead-lettered",
        Duration::from_secs(120),
        || count_mail(&sys.smtp.mails(), &fallback_emails).arrived == fallback_emails.len(),
    )
    .await;
    let dlq_deadline = Instant::now() + Duration::from_secs(60);
    while dlq_size(&sys).await < (B.len() + D.len()) as u64 {
        assert!(Instant::now() < dlq_deadline, "dead letters missing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = settled.max(Instant::now());
    // Then nothing is left to retry: a job waiting for another attempt
    // keeps Herald busy, so once it is idle the attempts counted below are
    // all there will ever be.
    sys.wait_until_idle().await;

    // Attempts per job on the failing channel, as the wire saw them.
    let mut tries: HashMap<usize, usize> = HashMap::new();
    for r in sys.http.requests() {
        *tries
            .entry(index_of_phone(r.field("To").unwrap()))
            .or_default() += 1;
    }
    for i in A.clone().chain(D.clone()) {
        assert_eq!(tries.get(&i), Some(&1), "a 400 is final: person {i}");
    }
    for i in C.clone() {
        assert_eq!(
            tries.get(&i),
            Some(&attempts_allowed),
            "503 retried by the schedule, then given up: person {i}"
        );
    }
    let mut refused: HashMap<String, usize> = HashMap::new();
    for a in sys.smtp.refusals() {
        *refused.entry(a).or_default() += 1;
    }
    for i in B.clone() {
        assert_eq!(
            refused.get(&email(i)),
            Some(&1),
            "a 550 is final: person {i}"
        );
    }
    let c = count_mail(&sys.smtp.mails(), &fallback_emails);
    assert_eq!((c.lost, c.duplicated, c.unexpected), (0, 0, 0), "{c:?}");

    // The dead letters: one per job, with the reason and the history.
    let letters = dead_letters(&sys).await;
    assert_eq!(letters.len(), B.len() + D.len());
    let mut lettered = HashSet::new();
    for l in &letters {
        let job = l.job.as_ref().unwrap();
        assert!(lettered.insert(job.job_id.clone()), "one letter per job");
        assert_eq!(l.history.len(), 1, "{l:?}");
        assert_eq!(l.history[0].outcome, "permanent");
        match Channel::try_from(job.channel).unwrap() {
            Channel::Email => assert!(l.reason.contains("550"), "{}", l.reason),
            Channel::Sms => assert!(l.reason.contains("HTTP 400"), "{}", l.reason),
            other => panic!("{other:?}"),
        }
    }
    for i in B.clone() {
        assert!(lettered.contains(&job_id(&ids[i], Channel::Email)));
    }
    for i in D.clone() {
        assert!(lettered.contains(&job_id(&ids[i], Channel::Sms)));
    }

    // The trail says what happened.
    let trail = sys.trail(&ids[A.start]).await;
    let fb = trail
        .iter()
        .find(|r| r.step == AuditStep::Fallback as i32)
        .expect("a fallback record");
    assert!(
        fb.summary.contains("falling back to email"),
        "{}",
        fb.summary
    );
    let trail = sys.trail(&ids[C.start]).await;
    assert_eq!(
        trail
            .iter()
            .filter(|r| r.step == AuditStep::RetryScheduled as i32)
            .count(),
        attempts_allowed - 1
    );
    let trail = sys.trail(&ids[B.start]).await;
    assert!(
        trail
            .iter()
            .any(|r| r.step == AuditStep::DeadLettered as i32)
    );

    let all = Count {
        expected: N,
        arrived: c.arrived + letters.len(),
        lost: N - c.arrived - letters.len(),
        duplicated: c.duplicated,
        absorbed: 0,
        unexpected: 0,
    };
    assert_eq!(all.lost, 0);
    row(
        "permanent failures: SMS 400, SMS 503 past the schedule, SMTP 550",
        N,
        &all,
        Some(settled.duration_since(submitted)),
        &format!(
            "{} SMS→email after 400, {} SMS→email after {attempts_allowed} × 503, {} email 550 and {} SMS 400 dead-lettered; \
             each tried once (503: {attempts_allowed} times), nothing left to retry",
            A.len(),
            C.len(),
            B.len(),
            D.len()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_status_callback_gets_403_and_changes_nothing() {
    let _serial = serial().await;
    const N: usize = 400;
    const PUBLIC: &str = "https://herald.example.test";
    const SECRET: &str = "provider-secret";
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.status_callback_base = Some(PUBLIC.into());
        cfg.delivery.provider_account = Some("AC0001".into());
        cfg.delivery.provider_token = Some(SECRET.into());
    })
    .await;
    let local = format!("http://{}", sys.http_addr("delivery"));
    let reqs = (0..N)
        .map(|i| {
            inquiry_to(
                &format!("cb-{i}"),
                person(i, &[Channel::Sms, Channel::Email]),
            )
        })
        .collect();
    let ids = submit_all(&sys.client, reqs, 64).await;
    let sent = sys.http.wait_for("/sms", N, Duration::from_secs(60)).await;
    // The callback URL each SMS gave the provider, by job.
    let mut callback: HashMap<String, String> = HashMap::new();
    for r in &sent {
        let url = r
            .field("StatusCallback")
            .expect("a callback URL")
            .to_string();
        assert!(url.starts_with(PUBLIC), "{url}");
        callback.insert(r.header("idempotency-key").unwrap().to_string(), url);
    }
    let sms_jobs: Vec<String> = ids.iter().map(|id| job_id(id, Channel::Sms)).collect();
    let http = reqwest::Client::new();
    let post = |public_url: &str, params: Vec<(String, String)>, signature: Option<String>| {
        let local_url = public_url.replace(PUBLIC, &local);
        let mut req = http.post(local_url).form(&params);
        if let Some(sig) = signature {
            req = req.header("X-Twilio-Signature", sig);
        }
        async move {
            req.send()
                .await
                .expect("delivery answers")
                .status()
                .as_u16()
        }
    };
    let params = |status: &str| {
        vec![
            ("MessageSid".to_string(), "SM1".to_string()),
            ("MessageStatus".to_string(), status.to_string()),
            ("ErrorCode".to_string(), "30003".to_string()),
        ]
    };
    let sign = herald_content::signature::sign;

    // The sends' own status events are all stored once delivery has
    // acknowledged every job.
    sys.wait_until_idle().await;
    let statuses_before = status_events(&sys).await;
    let mut forged = 0;
    for (k, job) in sms_jobs.iter().enumerate() {
        let url = &callback[job];
        let other = &callback[&sms_jobs[(k + 1) % N]];
        let tries = [
            // No signature at all.
            (params("undelivered"), None),
            // Signed with the wrong secret.
            (
                params("undelivered"),
                Some(sign("guessed", url, &params("undelivered"))),
            ),
            // A genuine signature for "delivered", posted as "undelivered".
            (
                params("undelivered"),
                Some(sign(SECRET, url, &params("delivered"))),
            ),
            // A genuine signature for another job's callback.
            (
                params("undelivered"),
                Some(sign(SECRET, other, &params("undelivered"))),
            ),
            // Signed over the internal address rather than the public URL.
            (
                params("undelivered"),
                Some(sign(
                    SECRET,
                    &url.replace(PUBLIC, &local),
                    &params("undelivered"),
                )),
            ),
        ];
        for (p, sig) in tries {
            assert_eq!(post(url, p, sig).await, 403, "a forgery for {job}");
            forged += 1;
        }
    }
    // Nothing changed: no status event, no audit record, no fallback.
    // Each forgery was answered after anything it did was stored, and a
    // fallback it set going would be on its way: once Herald is idle, it
    // would be there. A genuine callback posted after them, which takes
    // the same way in, shows that what a callback does is seen here.
    // (An odd job, reported delivered later anyway, beyond the twenty
    // whose trails are read below.)
    let sentinel = &sms_jobs[21];
    let p = params("delivered");
    let url = &callback[sentinel];
    assert_eq!(post(url, p.clone(), Some(sign(SECRET, url, &p))).await, 204);
    sys.wait_until_idle().await;
    let statuses = status_events(&sys).await;
    assert_eq!(statuses[..statuses_before.len()], statuses_before[..]);
    let after: Vec<(&str, i32)> = statuses[statuses_before.len()..]
        .iter()
        .map(|e| (e.job_id.as_str(), e.state))
        .collect();
    assert_eq!(
        after,
        [(sentinel.as_str(), DeliveryState::Delivered as i32)],
        "only the genuine callback changed anything"
    );
    assert_eq!(sys.smtp.count(), 0, "a forged failure triggered a fallback");
    for id in ids.iter().take(20) {
        let trail = sys.trail(id).await;
        assert!(
            !trail.iter().any(|r| r.step == AuditStep::Status as i32),
            "{trail:?}"
        );
    }
    let page = scrape::metrics(sys.http_addr("delivery")).await;
    assert_eq!(
        page.sum(
            "herald_delivery_status_callbacks_total",
            &[("channel", "sms"), ("outcome", "rejected")]
        ),
        forged as f64
    );

    // Genuine callbacks: even jobs undelivered, odd ones delivered. Each
    // posted twice, as providers do when unsure; then a late "undelivered"
    // for the delivered ones, which must change nothing.
    for round in 0..2 {
        for (k, job) in sms_jobs.iter().enumerate() {
            let url = &callback[job];
            let p = params(if k % 2 == 0 {
                "undelivered"
            } else {
                "delivered"
            });
            let code = post(url, p.clone(), Some(sign(SECRET, url, &p))).await;
            assert_eq!(code, 204, "round {round}, {job}");
        }
    }
    for (k, job) in sms_jobs.iter().enumerate().filter(|(k, _)| k % 2 == 1) {
        let url = &callback[job];
        let p = params("undelivered");
        let code = post(url, p.clone(), Some(sign(SECRET, url, &p))).await;
        assert_eq!(code, 200, "late status for {k}");
    }
    let expected: HashSet<String> = sms_jobs
        .iter()
        .step_by(2)
        .map(|j| format!("{j}-fb-email"))
        .collect();
    sys.smtp
        .wait_for(expected.len(), Duration::from_secs(60))
        .await;
    // A second fallback, if there were one, would still be on its way.
    sys.wait_until_idle().await;
    let c = count_mail(&sys.smtp.mails(), &expected);
    assert_eq!((c.lost, c.duplicated, c.unexpected), (0, 0, 0), "{c:?}");
    let events = status_events(&sys).await;
    let count = |state: DeliveryState| {
        events
            .iter()
            .filter(|e| e.state == state as i32 && sms_jobs.contains(&e.job_id))
            .count()
    };
    assert_eq!(count(DeliveryState::Undelivered), N / 2);
    assert_eq!(count(DeliveryState::Delivered), N / 2);
    let trail = sys.trail(&ids[0]).await;
    let steps: Vec<AuditStep> = trail.iter().map(|r| r.step()).collect();
    assert!(
        steps.contains(&AuditStep::Status) && steps.contains(&AuditStep::Fallback),
        "{steps:?}"
    );
    row(
        "forged status callbacks (5 kinds per SMS)",
        N,
        &c,
        None,
        &format!(
            "{forged} forged callbacks: all 403, no event, audit record or fallback; \
             {N} genuine ones (each twice): {} fallback emails, none doubled",
            expected.len()
        ),
    );
}

/// Every job status Herald has documented, in the order written: each is
/// carried by the trail record of its step.
async fn status_events(sys: &TestSystem) -> Vec<DeliveryStatus> {
    herald_runtime::audit::read_trail(&sys.bus().await, &subjects::audit_everything())
        .await
        .expect("trail readable")
        .into_iter()
        .filter_map(|r| r.status)
        .collect()
}
