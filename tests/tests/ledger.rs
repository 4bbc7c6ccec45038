//! The send ledger's promises seen from outside: what a job's trail says
//! when the provider's report and its answer cross, how a delivery process
//! recognises a claim it holds itself, and that a sent job is acknowledged
//! only once its documentation is stored.

use std::time::Duration;

use herald_delivery::ledger::{Claim, Ledger};
use herald_proto::v1::{AuditStep, Channel};
use herald_testkit::{
    TestSystem,
    count::job_id,
    fixtures::{contact, inquiry},
    http::Reply,
    servers::RedisServer,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A provider can report a message failed (its status callback) before the
/// answer to the send itself reaches Herald. The failure settled the job
/// and handed it on; the late answer must not add "sent" to the trail, or
/// the trail would say both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_provider_reported_failed_first_is_not_documented_as_sent() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "bob",
        Some("bob@example.org"),
        Some("+447700900002"),
        "sms",
    )])
    .await;
    // While the send is in flight, the ledger learns what a failure
    // callback would record: the job failed for good.
    let url = sys.redis.url();
    let keyspace = herald_proto::keyspace::DELIVERY.prefix(&sys.cfg.redis.prefix);
    sys.http.respond_with(move |req, _| {
        let job = req.header("idempotency-key").unwrap_or_default();
        let mut redis = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("redis");
        let _: () = redis::cmd("HSET")
            .arg(format!("{keyspace}job:{job}"))
            .arg("state")
            .arg("failed")
            .arg("handed_on")
            .arg("1")
            .query(&mut redis)
            .expect("failure recorded");
        Reply::ok("SM1")
    });

    let id = sys.notify_ok(&inquiry("crossed", "bob", "INQ-X")).await;
    sys.http.wait_for("/sms", 1, WAIT).await;
    sys.wait_until_idle().await;

    let trail = sys.trail(&id).await;
    let job = job_id(&id, Channel::Sms);
    assert!(
        trail
            .iter()
            .any(|r| r.step() == AuditStep::Rendered && r.job_id == job),
        "{trail:#?}"
    );
    assert!(
        !trail.iter().any(|r| r.step() == AuditStep::Sent),
        "documented as sent after the provider reported it failed: {trail:#?}"
    );
    assert_eq!(sys.http.requests_to("/sms").len(), 1);
}

/// A delivery process and the send ledger in a real Redis, as delivery
/// builds them: one owner id per process.
async fn process_ledger(redis: &RedisServer, lease: Duration) -> Ledger {
    let cfg = herald_config::RedisConfig {
        url: redis.url().into(),
        ..Default::default()
    };
    let conn = herald_runtime::store::connect(&cfg, &CancellationToken::new())
        .await
        .expect("redis");
    Ledger::new(
        conn,
        "herald:",
        &herald_proto::ids::owner_id(),
        lease,
        Duration::from_secs(3600),
    )
}

/// Redis restarts just after running a claim, so its reply is lost with
/// the connection: the job is "sending" under this very process, which
/// sent nothing. The redelivery takes it back at once, as the same attempt
/// and not as an interrupted one (which would say the provider may get it
/// twice); it does not wait out the lease. Only a redelivery arriving
/// while this process is really sending the job is told it is busy, as is
/// any other process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_reply_was_lost_is_taken_back_at_once_by_its_own_process() {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(600);
    let ledger = process_ledger(&redis, lease).await;
    let other_process = process_ledger(&redis, lease).await;

    // The claim runs; the worker never learns it did, and its turn ends.
    let first = ledger.in_flight("job-1");
    assert_eq!(
        ledger.claim(&first, None, None).await.expect("claim"),
        Claim::Claimed {
            attempt: 1,
            interrupted: false
        }
    );
    drop(first);

    // The redelivery.
    let again = ledger.in_flight("job-1");
    assert_eq!(
        ledger.claim(&again, None, None).await.expect("claim"),
        Claim::Claimed {
            attempt: 1,
            interrupted: false
        }
    );
    // Meanwhile, while it is being sent: a second redelivery here, and
    // another process, are both refused for the rest of the lease.
    let while_sending = ledger.in_flight("job-1");
    assert!(matches!(
        ledger.claim(&while_sending, None, None).await.expect("claim"),
        Claim::Busy(wait) if wait > lease / 2
    ));
    drop(while_sending);
    let elsewhere = other_process.in_flight("job-1");
    assert!(matches!(
        other_process.claim(&elsewhere, None, None).await.expect("claim"),
        Claim::Busy(wait) if wait > lease / 2
    ));

    // A send the provider took but the ledger could not record keeps the
    // job marked here: this process's own claim is not taken back as one
    // that sent nothing.
    again.keep_marked();
    let after_unrecorded = ledger.in_flight("job-1");
    assert!(matches!(
        ledger
            .claim(&after_unrecorded, None, None)
            .await
            .expect("claim"),
        Claim::Busy(_)
    ));
    assert_eq!(ledger.attempts("job-1").await.expect("attempts"), 1);
}

/// A lease left by another process (one that died mid-send) is still
/// waited out and its take-over counted as interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processs_lease_is_waited_out_and_its_take_over_counted_as_interrupted() {
    let redis = RedisServer::start();
    let lease = Duration::from_millis(300);
    let died = process_ledger(&redis, lease).await;
    let survivor = process_ledger(&redis, lease).await;
    let held = died.in_flight("job-2");
    assert!(matches!(
        died.claim(&held, None, None).await.expect("claim"),
        Claim::Claimed { attempt: 1, .. }
    ));
    let here = survivor.in_flight("job-2");
    assert!(matches!(
        survivor.claim(&here, None, None).await.expect("claim"),
        Claim::Busy(_)
    ));
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(
        survivor.claim(&here, None, None).await.expect("claim"),
        Claim::Claimed {
            attempt: 2,
            interrupted: true
        }
    );
}

/// A job is acknowledged only once its "sent" record, which is also its
/// `Sent` status, is stored. While the audit stream refuses writes, the
/// sent SMS keeps coming back, is never sent again, and is documented once
/// the stream takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_job_is_not_acknowledged_before_its_status_is_stored() {
    use async_nats::jetstream::stream::DiscardPolicy;
    use herald_proto::{subjects, v1::AuditStep, v1::DeliveryState};

    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact(
        "bob",
        Some("bob@example.org"),
        Some("+447700900002"),
        "sms",
    )])
    .await;
    let bus = sys.bus().await;
    let mut audit = bus
        .js
        .get_stream(subjects::STREAM_AUDIT)
        .await
        .expect("audit stream");
    let usual = audit.info().await.expect("info").config.clone();
    // Full, and refusing anything new.
    let mut full = usual.clone();
    full.max_bytes = 1;
    full.discard = DiscardPolicy::New;
    bus.js.update_stream(full).await.expect("audit stream full");

    let id = sys
        .notify_ok(&inquiry("undocumented", "bob", "INQ-U"))
        .await;
    let job = job_id(&id, Channel::Sms);
    sys.http.wait_for("/sms", 1, WAIT).await;
    // The job comes back rather than being acknowledged ...
    let mut jobs = bus
        .js
        .get_stream(subjects::delivery_stream(herald_proto::v1::Lane::Normal))
        .await
        .expect("delivery stream");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = jobs
        .get_consumer("delivery-normal")
        .await
        .expect("delivery consumer");
    let deadline = tokio::time::Instant::now() + WAIT;
    while consumer
        .info()
        .await
        .expect("info")
        .delivered
        .consumer_sequence
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sent job was not delivered again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(jobs.info().await.expect("info").state.messages, 1);
    // ... and is never sent again.
    assert_eq!(sys.http.requests_to("/sms").len(), 1);

    bus.js
        .update_stream(usual)
        .await
        .expect("audit stream back");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let trail = sys.trail(&id).await;
        let sent = trail
            .iter()
            .find(|r| r.step() == AuditStep::Sent && r.job_id == job);
        if let Some(record) = sent {
            let status = record
                .status
                .as_ref()
                .expect("the sent record is the status");
            assert_eq!(
                (status.job_id.as_str(), status.state()),
                (job.as_str(), DeliveryState::Sent)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the send was never documented"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sys.wait_until_idle().await;
    assert_eq!(jobs.info().await.expect("info").state.messages, 0);
    assert_eq!(sys.http.requests_to("/sms").len(), 1);
}

/// The attempt history is read only by a dead letter, which a sent job can
/// get only from a provider's failure report. A sent email (no report will
/// come) leaves no history behind; a sent SMS whose provider reports back
/// keeps the line that says how it went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_no_report_can_follow_writes_no_attempt_history() {
    let sys = TestSystem::start_with(|cfg| {
        cfg.delivery.status_callback_base = Some("https://herald.test/cb".into());
        cfg.delivery.provider_token = Some("provider-signing-secret".into());
    })
    .await;
    sys.add_contacts(&[
        contact("ivy", Some("ivy@example.org"), None, "email"),
        contact("bob", Some("bob@example.org"), Some("+447700900002"), "sms"),
    ])
    .await;
    let mail = sys.notify_ok(&inquiry("hist-email", "ivy", "INQ-H1")).await;
    let sms = sys.notify_ok(&inquiry("hist-sms", "bob", "INQ-H2")).await;
    sys.wait_for_step(&mail, AuditStep::Sent, WAIT).await;
    sys.wait_for_step(&sms, AuditStep::Sent, WAIT).await;
    let redis = herald_runtime::store::connect(&sys.cfg.redis, &CancellationToken::new())
        .await
        .expect("redis");
    let keyspace = herald_proto::keyspace::DELIVERY.prefix(&sys.cfg.redis.prefix);
    let lines = |id: String| {
        let key = format!("{keyspace}jobhist:{id}");
        let mut r = redis.clone();
        async move {
            let n: usize = redis::cmd("LLEN")
                .arg(key)
                .query_async(&mut r)
                .await
                .expect("LLEN");
            n
        }
    };
    assert_eq!(lines(job_id(&mail, Channel::Email)).await, 0);
    assert_eq!(lines(job_id(&sms, Channel::Sms)).await, 1);
}
