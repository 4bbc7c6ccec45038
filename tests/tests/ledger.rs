//! The send ledger's promises seen from outside: what a job's trail says
//! when the provider's report and its answer cross, and how a delivery
//! process recognises a claim it holds itself.

use std::time::Duration;

use herald_proto::v1::{AuditStep, Channel};
use herald_testkit::{
    TestSystem,
    count::job_id,
    fixtures::{contact, inquiry},
    http::Reply,
};

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
