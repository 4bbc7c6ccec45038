//! Herald on a cluster losing a node: three nats-servers with every stream
//! replicated three times, two processes of each service, and mid-run the
//! server leading the delivery stream SIGKILLed, then one process of each
//! service struck. Counted exactly at the sinks, like the other fault runs,
//! and printed as a row of the fault table:
//!
//! ```text
//! cargo test -p herald-testkit --test cluster -- --nocapture | grep '^| '
//! ```

use std::time::{Duration, Instant};

use herald_proto::{subjects, v1::Lane};
use herald_testkit::{
    chaos::{self, row, serial},
    cluster::NatsCluster,
    count::{Count, count_http, count_mail},
    fleet::{ClusterSystem, longest_gap},
    servers::RedisServer,
    submit::submit_all,
    wait::until,
};

const SERVICES: [&str; 3] = ["intake", "router", "delivery"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_losing_its_stream_leader_and_a_process_of_each_service_loses_nothing_and_sends_nothing_twice()
 {
    let _serial = serial().await;
    const N: usize = 2000;
    let nats = match NatsCluster::start(3).await {
        Ok(c) => c,
        Err(why) => {
            println!("SKIPPED: this machine cannot run a three-server NATS cluster: {why}");
            return;
        }
    };
    let redis = RedisServer::start();
    let mut sys = ClusterSystem::start(nats, redis, &SERVICES, 2, |cfg| {
        cfg.nats.replicas = 3;
        // A short attempt limit keeps a stopped worker's drain short.
        cfg.delivery.attempt_timeout = Duration::from_secs(3);
    })
    .await;
    let leaders = sys.nats.stream_leaders().await;
    assert!(
        leaders.values().all(|(l, r)| l.is_some() && *r == 3),
        "every stream replicated on three servers, with a leader: {leaders:?}"
    );

    let client = sys.client.clone();
    let reqs = chaos::mixed(N, "cluster");
    let submitted = tokio::spawn(async move { submit_all(&client, reqs, 64).await });
    until(
        "a quarter of the messages sent",
        Duration::from_secs(90),
        || sys.sent() >= N / 4,
    )
    .await;

    // The server leading the delivery stream, SIGKILLed.
    let stream = subjects::delivery_stream(Lane::Normal);
    let leader = sys.nats.leader_of(stream).await;
    let led: Vec<String> = leaders
        .iter()
        .filter(|(_, (l, _))| l.as_deref() == Some(sys.nats.nodes[leader].name.as_str()))
        .map(|(s, _)| s.clone())
        .collect();
    let struck = Instant::now();
    sys.nats.kill(leader);
    let at_kill = sys.sent();
    while !sys.nats.every_stream_led().await {
        assert!(
            struck.elapsed() < Duration::from_secs(30),
            "streams not led again within 30 s: {:?}",
            sys.nats.stream_leaders().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let re_elected = struck.elapsed();

    // Then one process of each service: intake and router SIGKILLed
    // mid-request, delivery stopped as a node being drained is (SIGTERM:
    // a SIGKILLed sender's last send is the one window no ledger closes,
    // which the faults test measures on its own).
    until("half the messages sent", Duration::from_secs(90), || {
        sys.sent() >= N / 2
    })
    .await;
    let at_services = sys.sent();
    sys.kill("intake", 0);
    sys.kill("router", 0);
    sys.terminate("delivery", 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    sys.nats.restart(leader);
    for s in SERVICES {
        sys.restart(s, 0).await;
    }
    let back = Instant::now();

    let ids = submitted.await.expect("every request accepted");
    let (sms, email) = chaos::split(&ids);
    let count = |sys: &ClusterSystem<RedisServer>| {
        (
            count_http(&sys.http.requests_to("/sms"), &sms),
            count_mail(&sys.smtp.mails(), &email),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(150);
    let done = loop {
        let (s, e) = count(&sys);
        if s.lost == 0 && e.lost == 0 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not every message arrived within 150 s: sms {s:?}, email {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A repeat, if there were one, would still be on its way: count once
    // nothing is.
    sys.wait_until_idle(Duration::from_secs(120)).await;
    let (s, e) = count(&sys);
    let gap = longest_gap(&sys.arrivals(), struck);

    assert_eq!((s.lost, e.lost), (0, 0), "sms {s:?} email {e:?}");
    // Raw wire counts: the SMS sink takes a repeated Idempotency-Key as a
    // new message, the SMTP sink counts every message it receives.
    assert_eq!(
        (s.duplicated, e.duplicated),
        (0, 0),
        "sms {s:?} email {e:?}"
    );
    assert_eq!((s.absorbed, s.unexpected, e.unexpected), (0, 0, 0));
    let (no_accepted, no_sent) = chaos::trail_gaps(&sys.bus().await, &ids).await;
    assert_eq!(
        (no_accepted, no_sent),
        (0, 0),
        "notifications missing accepted / sent records"
    );
    let both = Count {
        expected: s.expected + e.expected,
        arrived: s.arrived + e.arrived,
        lost: s.lost + e.lost,
        duplicated: s.duplicated + e.duplicated,
        absorbed: 0,
        unexpected: 0,
    };
    row(
        "3-server NATS cluster (R3 streams), 2 of each service: stream leader SIGKILLed, \
         then 1 intake and 1 router SIGKILLed, 1 delivery SIGTERMed",
        N,
        &both,
        Some(done.saturating_duration_since(back)),
        &format!(
            "leader {} (led {}) killed after {at_kill} sends, streams re-led in {:.1} s, \
             longest stretch with no arrival {:.1} s; services struck after {at_services} sends; \
             raw wire counts, no idempotency help; every notification has its accepted and sent records",
            sys.nats.nodes[leader].name,
            led.join(", "),
            re_elected.as_secs_f64(),
            gap.as_secs_f64()
        ),
    );
}
