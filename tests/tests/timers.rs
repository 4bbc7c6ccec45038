//! Durable timers over a real redis-server: due ones fire once across
//! competing instances, a dead holder's timers come back, moved and
//! cancelled ones behave. And cancel keys: a cancelled notification never
//! reaches the provider.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{TimeDelta, TimeZone, Utc};
use herald_config::RedisConfig;
use herald_durable::timers::{self, RunOptions, Timers};
use herald_proto::{
    Message, subjects,
    v1::{AuditStep, CancelReply, CancelRequest, cancel_reply},
};
use herald_runtime::clock::{Clock, ManualClock, SystemClock};
use herald_testkit::{TestSystem, fixtures::contact, servers::RedisServer, wait::until};
use tokio_util::sync::CancellationToken;

async fn queue(redis: &RedisServer, name: &str) -> Timers {
    let cfg = RedisConfig {
        url: redis.url().into(),
        prefix: "t:".into(),
        ..Default::default()
    };
    let conn = herald_runtime::store::connect(&cfg, &CancellationToken::new())
        .await
        .expect("redis");
    Timers::new(conn, &cfg.prefix, name)
}

#[tokio::test]
async fn timers_fire_when_due_in_order_and_not_before() {
    let redis = RedisServer::start();
    let t = queue(&redis, "order").await;
    let start = Utc.with_ymd_and_hms(2026, 3, 6, 17, 0, 0).unwrap();
    let clock = ManualClock::at(start);
    t.schedule("b", start + TimeDelta::minutes(2))
        .await
        .unwrap();
    t.schedule("a", start + TimeDelta::minutes(1))
        .await
        .unwrap();
    t.schedule("c", start + TimeDelta::hours(1)).await.unwrap();
    let lease = Duration::from_secs(30);

    assert!(
        t.claim_due(clock.now(), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(TimeDelta::minutes(2));
    let due = t.claim_due(clock.now(), 10, lease).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(due[0].due_at, start + TimeDelta::minutes(1));
    // Claimed ones are not handed out again while their lease runs.
    assert!(
        t.claim_due(clock.now(), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    t.complete(&["a".into(), "b".into()]).await.unwrap();
    assert_eq!(
        t.next_due().await.unwrap(),
        Some(start + TimeDelta::hours(1))
    );
}

#[tokio::test]
async fn a_dead_holders_timers_fire_again_once_its_lease_runs_out() {
    let redis = RedisServer::start();
    let t = queue(&redis, "lease").await;
    let start = Utc.with_ymd_and_hms(2026, 3, 6, 17, 0, 0).unwrap();
    let clock = ManualClock::at(start);
    t.schedule("x", start).await.unwrap();
    let first = t
        .claim_due(clock.now(), 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // The holder dies without completing. Before the lease ends, nothing.
    clock.advance(TimeDelta::seconds(29));
    assert!(
        t.claim_due(clock.now(), 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(TimeDelta::seconds(2));
    let again = t
        .claim_due(clock.now(), 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the timer came back");
    assert_eq!(again[0].id, "x");
}

#[tokio::test]
async fn moving_a_held_timer_keeps_the_new_time_and_cancel_removes_it_anywhere() {
    let redis = RedisServer::start();
    let t = queue(&redis, "move").await;
    let start = Utc.with_ymd_and_hms(2026, 3, 6, 17, 0, 0).unwrap();
    let lease = Duration::from_secs(30);
    t.schedule("warn-then-breach", start).await.unwrap();
    let held = t.claim_due(start, 10, lease).await.unwrap();
    assert_eq!(held.len(), 1);
    // The handler arms the next stage under the same id, then completes.
    t.schedule("warn-then-breach", start + TimeDelta::minutes(15))
        .await
        .unwrap();
    t.complete(&["warn-then-breach".into()]).await.unwrap();
    assert_eq!(
        t.due_at("warn-then-breach").await.unwrap(),
        Some(start + TimeDelta::minutes(15))
    );

    t.schedule("gone", start).await.unwrap();
    t.claim_due(start, 10, lease).await.unwrap();
    assert!(t.cancel("gone").await.unwrap());
    assert!(!t.cancel("gone").await.unwrap());
    // Cancelled while held: it does not come back when the lease ends.
    assert!(
        t.claim_due(start + TimeDelta::minutes(1), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Two runners on one queue, as two instances would be: each of many timers
/// is handled exactly once, and none is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_share_the_due_timers_and_never_fire_one_twice() {
    const N: usize = 5_000;
    let redis = RedisServer::start();
    let a = queue(&redis, "shared").await;
    let b = queue(&redis, "shared").await;
    let now = Utc::now();
    let items: Vec<(String, chrono::DateTime<Utc>)> = (0..N)
        .map(|i| {
            (
                format!("t{i}"),
                now + TimeDelta::milliseconds((i % 500) as i64),
            )
        })
        .collect();
    a.schedule_many(&items).await.unwrap();

    let fired: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let stop = CancellationToken::new();
    let mut runners = Vec::new();
    for t in [a.clone(), b.clone()] {
        let fired = fired.clone();
        let stop = stop.clone();
        runners.push(tokio::spawn(timers::run(
            t,
            Arc::new(SystemClock),
            RunOptions {
                batch: 100,
                ..RunOptions::default()
            },
            stop,
            move |batch| {
                let fired = fired.clone();
                async move {
                    let mut f = fired.lock().unwrap();
                    for d in &batch {
                        *f.entry(d.id.clone()).or_default() += 1;
                    }
                    batch.into_iter().map(|d| d.id).collect()
                }
            },
        )));
    }
    until("every timer fired", Duration::from_secs(20), || {
        fired.lock().unwrap().len() == N
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for r in runners {
        r.await.unwrap().unwrap();
    }
    let (handled, twice) = {
        let f = fired.lock().unwrap();
        (f.len(), f.values().filter(|n| **n > 1).count())
    };
    assert_eq!((handled, twice), (N, 0));
    assert_eq!(a.pending().await.unwrap(), 0);
    assert_eq!(a.next_due().await.unwrap(), None, "no lease left behind");
}

/// A notification whose cancel key is cancelled before delivery gets to it
/// never reaches the provider, and its trail says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_key_stops_the_notification_before_the_provider() {
    let mut sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "carol",
        Some("carol@example.org"),
        Some("+447700900200"),
        "sms",
    )])
    .await;
    // Hold delivery back so the cancel surely comes first: the stop waits
    // for delivery in the stops stream.
    sys.stop("delivery").await;
    let mut req = herald_testkit::fixtures::inquiry("cancel-1", "carol", "INQ-9");
    req.cancel_keys = vec!["case-7-esc-1".into()];
    let id = sys.notify_ok(&req).await;
    let mut kept = herald_testkit::fixtures::inquiry("cancel-2", "carol", "INQ-10");
    kept.cancel_keys = vec!["case-7-esc-2".into()];
    let kept_id = sys.notify_ok(&kept).await;
    sys.wait_for_step(&id, AuditStep::Rendered, Duration::from_secs(10))
        .await;

    // As an escalation service or another system would: over NATS.
    let cancel = |reason: &str| CancelRequest {
        cancel_key: "case-7-esc-1".into(),
        reason: reason.into(),
        requester: "anna".into(),
    };
    assert_eq!(
        cancel_over_nats(&sys, cancel("acknowledged")).await,
        cancel_reply::Result::Cancelled(true)
    );
    match cancel_over_nats(
        &sys,
        CancelRequest {
            cancel_key: "no.dots".into(),
            ..Default::default()
        },
    )
    .await
    {
        cancel_reply::Result::Rejected(r) => assert_eq!(r.field, "cancel_key"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Delivery, which keeps the cancel keys, applies the stop kept for it
    // before it takes a job; asked again, it knows the key was cancelled.
    sys.start_delivery().await;
    assert_eq!(
        cancel_over_nats(&sys, cancel("again")).await,
        cancel_reply::Result::Cancelled(false),
        "cancelling twice is harmless"
    );
    let trail = sys
        .wait_for_step(&id, AuditStep::Cancelled, Duration::from_secs(10))
        .await;
    let cancelled = trail
        .iter()
        .find(|r| r.step == AuditStep::Cancelled as i32)
        .unwrap();
    assert!(
        cancelled.summary.contains("acknowledged (by anna)"),
        "{}",
        cancelled.summary
    );
    sys.wait_for_step(&kept_id, AuditStep::Sent, Duration::from_secs(10))
        .await;
    let sms = sys.http.requests_to("/sms");
    assert_eq!(sms.len(), 1, "only the notification not cancelled was sent");
    assert!(sms[0].field("Body").unwrap_or_default().contains("INQ-10"));
}

async fn cancel_over_nats(sys: &TestSystem, req: CancelRequest) -> cancel_reply::Result {
    let msg = sys
        .publisher
        .request(
            subjects::from_caller(subjects::INTAKE_CANCEL, "publisher"),
            req.encode_to_vec().into(),
        )
        .await
        .expect("intake answers");
    CancelReply::decode(msg.payload)
        .expect("a CancelReply")
        .result
        .expect("a result")
}

#[tokio::test]
async fn a_bad_cancel_key_is_refused_naming_the_field() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("dan", Some("dan@example.org"), None, "email")])
        .await;
    let mut req = herald_testkit::fixtures::inquiry("bad-cancel", "dan", "INQ-1");
    req.cancel_keys = vec!["ok-key".into(), "has a space".into()];
    match sys.notify(&req).await.result {
        Some(herald_proto::v1::intake_reply::Result::Rejected(r)) => {
            assert_eq!(r.field, "cancel_keys[1]");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A state value and its timers change in one step, only if the value is
/// still what the writer read.
#[tokio::test]
async fn state_and_its_timers_change_together_or_not_at_all() {
    use herald_durable::timers::TimerChange;
    let redis = RedisServer::start();
    let t = queue(&redis, "swap").await;
    let start = Utc.with_ymd_and_hms(2026, 3, 6, 17, 0, 0).unwrap();
    let at = herald_runtime::clock::millis(start);
    let key = "t:state:case-1";
    let never = Duration::ZERO;
    assert!(
        t.swap_state(key, None, b"v1", never, &[TimerChange::At("x".into(), at)])
            .await
            .unwrap()
    );
    assert_eq!(t.due_at("x").await.unwrap(), Some(start));
    // A writer that read nothing (or an old value) loses and changes
    // nothing, timers included.
    assert!(
        !t.swap_state(key, None, b"v2", never, &[TimerChange::Cancel("x".into())])
            .await
            .unwrap()
    );
    assert!(
        !t.swap_state(key, Some(b"v0"), b"v2", never, &[])
            .await
            .unwrap()
    );
    assert_eq!(t.due_at("x").await.unwrap(), Some(start));
    // The right one wins; a claimed timer is cancelled as well.
    t.claim_due(start, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        t.swap_state(
            key,
            Some(b"v1"),
            b"v2",
            never,
            &[TimerChange::Cancel("x".into())]
        )
        .await
        .unwrap()
    );
    assert_eq!(t.next_due().await.unwrap(), None, "neither due nor held");
    // With a time to live, the value goes away by itself.
    assert!(
        t.swap_state(key, Some(b"v2"), b"v3", Duration::from_secs(1), &[])
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        t.swap_state(key, None, b"v4", never, &[]).await.unwrap(),
        "expired"
    );
}

/// Stopping a cancel family waits for a send already at a provider and
/// refuses every later send of what it stops, and nothing else.
#[tokio::test]
async fn a_stop_waits_for_sends_under_way_and_refuses_later_ones() {
    use herald_delivery::cancel::Cancellations;
    use herald_proto::cancel_keys::{escalation_family, family_key};
    let redis = RedisServer::start();
    let conn = herald_runtime::store::connect(
        &RedisConfig {
            url: redis.url().into(),
            prefix: "t:".into(),
            ..Default::default()
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let c = Cancellations::new(conn, "t:");
    let family = escalation_family("CASE-1");
    let (before, after) = (family_key(&family, 5), family_key(&family, 9));
    let hold = Duration::from_secs(10);

    // A send of an escalation begun at 5 is at the provider.
    assert_eq!(
        c.enter("job-a", std::slice::from_ref(&before), hold)
            .await
            .unwrap(),
        None
    );
    assert_eq!(c.busy(&family).await.unwrap(), 1);
    // An acknowledgement at 7 stops it; a stop at 6 does not move it back.
    assert!(
        c.stop_before(&family, 7, "acknowledged by anna")
            .await
            .unwrap()
    );
    assert!(!c.stop_before(&family, 6, "older").await.unwrap());
    assert_eq!(
        c.enter("job-b", std::slice::from_ref(&before), hold)
            .await
            .unwrap(),
        Some((before.clone(), "acknowledged by anna".into()))
    );
    // An escalation begun after the acknowledgement is not stopped.
    assert_eq!(
        c.enter("job-c", std::slice::from_ref(&after), hold)
            .await
            .unwrap(),
        None
    );
    c.leave("job-c", std::slice::from_ref(&after))
        .await
        .unwrap();

    // The acknowledgement waits for job A's send to finish.
    let waiter = {
        let (c, family) = (c.clone(), family.clone());
        tokio::spawn(async move { c.wait_idle(&family, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "still waiting for job A");
    c.leave("job-a", &[before]).await.unwrap();
    assert!(waiter.await.unwrap().unwrap());

    // A sender that died holds a key only until its hold runs out.
    let plain = "inq-7".to_string();
    assert_eq!(
        c.enter(
            "job-d",
            std::slice::from_ref(&plain),
            Duration::from_millis(500)
        )
        .await
        .unwrap(),
        None
    );
    assert!(c.cancel(&plain, "answered").await.unwrap());
    assert!(
        !c.wait_idle(&plain, Duration::from_millis(50))
            .await
            .unwrap()
    );
    assert!(c.wait_idle(&plain, Duration::from_secs(3)).await.unwrap());
    assert_eq!(
        c.first_cancelled(std::slice::from_ref(&plain))
            .await
            .unwrap(),
        Some((plain, "answered".into()))
    );
}
