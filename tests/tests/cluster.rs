//! Herald on a cluster losing a node: three nats-servers with every stream
//! replicated three times, Redis as a primary and a replica behind three
//! Sentinels, two processes of each service, and mid-run the server leading
//! the delivery stream SIGKILLed, then one process of each service struck,
//! then the Redis primary SIGKILLed. Counted exactly at the sinks, like the other fault runs,
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
    sentinel::RedisHa,
    submit::submit_all,
    wait::until,
};

const SERVICES: [&str; 3] = ["intake", "router", "delivery"];

/// Waits until `n` messages have reached the sinks.
async fn until_sent(sys: &ClusterSystem<RedisHa>, n: usize) {
    until(
        &format!("{n} messages sent"),
        Duration::from_secs(90),
        || sys.sent() >= n,
    )
    .await;
}

/// When each copy of every SMS that arrived more than once came, after
/// each strike: what a failure of the duplicate count is read with.
fn repeats(sys: &ClusterSystem<RedisHa>, strikes: &[(&str, Instant)]) -> String {
    let mut copies: std::collections::BTreeMap<String, Vec<Instant>> = Default::default();
    for r in sys.http.requests_to("/sms") {
        let key = r.header("idempotency-key").unwrap_or_default().to_string();
        copies.entry(key).or_default().push(r.at);
    }
    let strikes: Vec<String> = strikes
        .iter()
        .map(|(what, at)| format!("{what} at {:?}", at.saturating_duration_since(strikes[0].1)))
        .collect();
    let first = copies.values().flatten().min().copied();
    let repeats: Vec<String> = copies
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .take(10)
        .map(|(k, at)| {
            let at: Vec<_> = at
                .iter()
                .map(|t| first.map(|f| t.saturating_duration_since(f)))
                .collect();
            format!("{k}: {at:?}")
        })
        .collect();
    format!("strikes: {strikes:?}; repeated SMS (time since the first SMS): {repeats:#?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_losing_its_stream_leader_and_a_process_of_each_service_loses_nothing_and_sends_nothing_twice()
 {
    let _serial = serial().await;
    const N: usize = 3000;
    let nats = match NatsCluster::start(3).await {
        Ok(c) => c,
        Err(why) => {
            println!("SKIPPED: this machine cannot run a three-server NATS cluster: {why}");
            return;
        }
    };
    let redis = match RedisHa::start().await {
        Ok(r) => r,
        Err(why) => {
            println!("SKIPPED: this machine cannot run Redis with a replica and Sentinels: {why}");
            return;
        }
    };
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
    let re_led = sys
        .nats
        .watch_re_lead(leader, Duration::from_secs(60))
        .await;
    let struck = Instant::now();
    sys.nats.kill(leader);
    let at_kill = sys.sent();

    // Then one process of each service: intake and router SIGKILLed
    // mid-request, delivery stopped as a node being drained is (SIGTERM:
    // a SIGKILLed sender's last send is the one window no ledger closes,
    // which the faults test measures on its own).
    until_sent(&sys, N / 2).await;
    let at_services = sys.sent();
    let services_struck = Instant::now();
    sys.kill("intake", 0);
    sys.kill("router", 0);
    sys.terminate("delivery", 0);

    // Then the Redis primary, SIGKILLed: the Sentinels promote the
    // replica, and every service follows it.
    until_sent(&sys, 2 * N / 3).await;
    let at_redis = sys.sent();
    let redis_struck = Instant::now();
    let old_primary = sys.redis.kill_primary().await;
    let failover = sys
        .redis
        .wait_for_failover(old_primary, Duration::from_secs(30))
        .await;

    // Everything back: the services first, while a NATS server and a Redis
    // server are still down (a process starts on the servers it can reach),
    // then the servers, which rejoin as followers.
    for s in SERVICES {
        sys.restart(s, 0).await;
    }
    sys.nats.restart(leader);
    sys.redis.restart(old_primary).await;
    let back = Instant::now();
    let re_elected = re_led
        .await
        .expect("the watch ends")
        .unwrap_or_else(|| panic!("streams not led again within a minute"));

    let ids = submitted.await.expect("every request accepted");
    let (sms, email) = chaos::split(&ids);
    let count = |sys: &ClusterSystem<RedisHa>| {
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
    let arrivals = sys.arrivals();
    let gap = longest_gap(&arrivals, struck, redis_struck);
    let last = arrivals.last().copied().unwrap_or(done);
    let redis_gap = longest_gap(&arrivals, redis_struck, last);

    assert_eq!((s.lost, e.lost), (0, 0), "sms {s:?} email {e:?}");
    // Raw wire counts: the SMS sink takes a repeated Idempotency-Key as a
    // new message, the SMTP sink counts every message it receives.
    assert_eq!(
        (s.duplicated, e.duplicated),
        (0, 0),
        "sms {s:?} email {e:?}; {}",
        repeats(
            &sys,
            &[
                ("NATS leader killed", struck),
                ("services struck", services_struck),
                ("Redis primary killed", redis_struck)
            ]
        )
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
        "3-server NATS cluster (R3 streams), Redis primary + replica + 3 Sentinels, \
         2 of each service: stream leader SIGKILLed, then 1 intake and 1 router SIGKILLed \
         and 1 delivery SIGTERMed, then the Redis primary SIGKILLed",
        N,
        &both,
        Some(done.saturating_duration_since(back)),
        &format!(
            "leader {} (led {}) killed after {at_kill} sends, streams re-led in {:.1} s, \
             longest stretch with no arrival until the Redis kill {:.1} s; services struck after {at_services} sends; \
             Redis primary killed after {at_redis} sends, replica promoted in {:.1} s, \
             longest stretch with no arrival {:.1} s; \
             raw wire counts, no idempotency help; every notification has its accepted and sent records",
            sys.nats.nodes[leader].name,
            led.join(", "),
            re_elected.as_secs_f64(),
            gap.as_secs_f64(),
            failover.as_secs_f64(),
            redis_gap.as_secs_f64()
        ),
    );
}
