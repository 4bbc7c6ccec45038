//! What an operator's Prometheus and load balancer see: counters and
//! histograms that move with the traffic, queue gauges that show a backlog
//! where it builds up, readiness (HTTP and gRPC) that follows NATS, and
//! every metric the shipped alert rules name exposed by a running service.

use std::{net::SocketAddr, time::Duration};

use herald_proto::{
    subjects,
    v1::{CaseChannel, Priority, intake_reply},
};
use herald_testkit::{
    TestSystem,
    cases::{client, fast_policies, opened, staff},
    deploy,
    fixtures::{contact, inquiry},
    http::Reply,
    scrape::{self, Scrape},
    servers::free_port,
};

const WAIT: Duration = Duration::from_secs(30);

async fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    scrape::metrics_until(addr, what, WAIT, ready).await
}

async fn grpc_health(addr: &str) -> Option<i32> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let reply = client
        .check(HealthCheckRequest {
            service: "herald.v1.Intake".into(),
        })
        .await
        .ok()?;
    Some(reply.into_inner().status)
}

async fn wait_grpc_health(
    addr: &str,
    want: tonic_health::pb::health_check_response::ServingStatus,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = grpc_health(addr).await;
        if got == Some(want as i32) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gRPC health on {addr} is {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_readiness_follows_nats() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut sys = TestSystem::start_with(|cfg| {
        cfg.telemetry.queue_poll_interval = Duration::from_millis(200);
        cfg.intake.grpc_addr = format!("127.0.0.1:{}", free_port());
    })
    .await;
    sys.add_contacts(&[
        contact("alice", Some("alice@example.org"), None, "email"),
        contact("bob", Some("bob@example.org"), Some("+447700900002"), "sms"),
    ])
    .await;
    sys.http.respond_with(|_, before| {
        if before == 0 {
            Reply::status(503)
        } else {
            Reply::ok("SM1")
        }
    });

    for i in 0..3 {
        sys.notify_ok(&inquiry(&format!("m-{i}"), "alice", "INQ-M"))
            .await;
    }
    sys.notify_ok(&inquiry("m-sms", "bob", "INQ-M")).await;
    let refused = sys.notify(&inquiry("m-bad", "nobody", "INQ-M")).await;
    assert!(matches!(
        refused.result,
        Some(intake_reply::Result::Rejected(_))
    ));
    sys.smtp.wait_for(3, WAIT).await;
    sys.http.wait_for("/sms", 2, WAIT).await;

    let normal = [("lane", "normal")];
    let intake = scrape::metrics(sys.http_addr("intake")).await;
    assert_eq!(intake.get("herald_intake_accepted_total", &normal), 4.0);
    assert_eq!(
        intake.get(
            "herald_intake_rejected_total",
            &[("lane", "normal"), ("reason", "unknown_contact")]
        ),
        1.0
    );
    assert_eq!(
        intake.get("herald_intake_request_seconds_count", &normal),
        4.0
    );

    let router = scrape_until(sys.http_addr("router"), "four routed", |m| {
        m.get("herald_router_routed_total", &normal) == 4.0
    })
    .await;
    let jobs = |channel| {
        router.get(
            "herald_router_jobs_total",
            &[
                ("lane", "normal"),
                ("channel", channel),
                ("outcome", "content"),
            ],
        )
    };
    assert_eq!((jobs("email"), jobs("sms")), (3.0, 1.0));

    let delivered = |m: &Scrape, channel| {
        m.get(
            "herald_delivery_jobs_total",
            &[
                ("lane", "normal"),
                ("channel", channel),
                ("outcome", "sent"),
            ],
        )
    };
    let delivery = scrape_until(sys.http_addr("delivery"), "four sent", |m| {
        delivered(m, "email") + delivered(m, "sms") == 4.0
    })
    .await;
    assert_eq!(
        (delivered(&delivery, "email"), delivered(&delivery, "sms")),
        (3.0, 1.0)
    );
    assert_eq!(
        delivery.get(
            "herald_delivery_retries_total",
            &[
                ("lane", "normal"),
                ("channel", "sms"),
                ("outcome", "transient")
            ]
        ),
        1.0
    );
    assert_eq!(
        delivery.get("herald_delivery_end_to_end_seconds_count", &normal),
        4.0
    );
    assert_eq!(
        delivery.get(
            "herald_delivery_attempt_seconds_count",
            &[
                ("lane", "normal"),
                ("channel", "sms"),
                ("outcome", "failed")
            ]
        ),
        1.0
    );

    // Queue gauges: each service reports the streams it feeds and the
    // consumers it runs. With delivery stopped, jobs pile up where the
    // router can see them, and drain when delivery is back.
    let delivery_stream = [("stream", subjects::STREAM_DELIVERY)];
    let delivery_consumer = [
        ("stream", subjects::STREAM_DELIVERY),
        ("consumer", "delivery-normal"),
    ];
    scrape_until(sys.http_addr("delivery"), "delivery's consumer lag", |m| {
        m.value("herald_consumer_pending_messages", &delivery_consumer) == Some(0.0)
            && m.value(
                "herald_stream_messages",
                &[("stream", subjects::STREAM_DLQ)],
            ) == Some(0.0)
    })
    .await;
    scrape_until(sys.http_addr("intake"), "the notify stream's depth", |m| {
        m.value(
            "herald_stream_messages",
            &[("stream", subjects::STREAM_NOTIFY)],
        ) == Some(0.0)
    })
    .await;
    sys.stop("delivery").await;
    for i in 0..2 {
        sys.notify_ok(&inquiry(&format!("q-{i}"), "alice", "INQ-Q"))
            .await;
    }
    let backlog = scrape_until(sys.http_addr("router"), "two jobs waiting", |m| {
        m.get("herald_stream_messages", &delivery_stream) == 2.0
    })
    .await;
    assert!(backlog.get("herald_stream_oldest_message_age_seconds", &delivery_stream) > 0.0);
    sys.start_delivery().await;
    sys.smtp.wait_for(5, WAIT).await;
    scrape_until(sys.http_addr("router"), "the backlog drained", |m| {
        m.get("herald_stream_messages", &delivery_stream) == 0.0
            && m.get("herald_stream_oldest_message_age_seconds", &delivery_stream) == 0.0
    })
    .await;

    // Readiness follows NATS: down when it goes, back when it returns.
    let grpc = sys.cfg.intake.grpc_addr.clone();
    wait_grpc_health(&grpc, ServingStatus::Serving).await;
    sys.nats.kill();
    for name in ["intake", "router", "delivery"] {
        let body = scrape::wait_readyz(sys.http_addr(name), 503, WAIT).await;
        assert!(body.contains("nats: not ready"), "{name}: {body}");
        let (alive, _) = scrape::get(sys.http_addr(name), "/healthz").await.unwrap();
        assert_eq!(alive, 200, "{name} is still alive");
    }
    wait_grpc_health(&grpc, ServingStatus::NotServing).await;
    sys.nats.restart();
    for name in ["intake", "router", "delivery"] {
        scrape::wait_readyz(sys.http_addr(name), 200, WAIT).await;
    }
    wait_grpc_health(&grpc, ServingStatus::Serving).await;
    // Ready means working: a notification goes through again.
    sys.notify_ok(&inquiry("after", "alice", "INQ-A")).await;
    sys.smtp.wait_for(6, WAIT).await;
}

/// Every metric the shipped alert rules name is one a running service
/// exposes, once there has been the traffic each is about: notifications
/// sent and refused, a provider failing once, a case whose clock ran out
/// and escalated. A family shows once it has a series, so the scrapes are
/// read until every name has appeared somewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alert_rules_name_is_exposed_by_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut sys = TestSystem::start_with(|cfg| {
        fast_policies(cfg, &path, Duration::from_secs(30));
        cfg.telemetry.queue_poll_interval = Duration::from_millis(200);
    })
    .await;
    sys.start_sla().await;
    sys.start_escalation().await;
    let mut people = staff();
    people.push(client(0));
    people.push(contact(
        "bob",
        Some("bob@example.org"),
        Some("+447700900002"),
        "sms",
    ));
    sys.add_contacts(&people).await;
    sys.http.respond_with(|_, before| {
        if before == 0 {
            Reply::status(503)
        } else {
            Reply::ok("SM1")
        }
    });

    // A case whose clock runs out (2 s) and escalates, ...
    sys.case_ok(&opened(
        "CASE-ALERTS",
        "client-0",
        CaseChannel::Email,
        Priority::Normal,
    ))
    .await;
    // ... an SMS the provider refuses once, and a request refused.
    sys.notify_ok(&inquiry("alerts-sms", "bob", "INQ-AL")).await;
    let refused = sys.notify(&inquiry("alerts-bad", "nobody", "INQ-AL")).await;
    assert!(matches!(
        refused.result,
        Some(intake_reply::Result::Rejected(_))
    ));
    sys.http.wait_for("/sms", 2, WAIT).await;
    sys.smtp
        .wait_for_mail_to("sam@staff.example.org", "REF-CASE-ALERTS", WAIT)
        .await;

    let named: Vec<(String, Vec<String>)> = deploy::alert_metrics();
    let used: usize = named.iter().map(|(_, m)| m.len()).sum();
    assert!(used >= 8, "the alert rules name only {used} metrics");
    let services = ["intake", "router", "delivery", "sla", "escalation"];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut exposed = Scrape::default();
        for name in services {
            exposed.extend(scrape::metrics(sys.http_addr(name)).await);
        }
        let missing: Vec<String> = named
            .iter()
            .flat_map(|(alert, metrics)| {
                metrics
                    .iter()
                    .filter(|m| !is_exposed(&exposed, m))
                    .map(move |m| format!("{alert} uses {m}"))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics no service exposes: {missing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a scrape exposes a name as PromQL uses it: a counter's
/// `_total`, a histogram's `_bucket`, `_count` or `_sum`, or the family.
fn is_exposed(scrape: &Scrape, name: &str) -> bool {
    let family = ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    scrape.has(name) || scrape.has(family)
}
