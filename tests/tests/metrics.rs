//! What an operator's Prometheus and load balancer see: counters and
//! histograms that move with the traffic, queue gauges that show a backlog
//! where it builds up, readiness (HTTP and gRPC) that follows NATS, and
//! the metrics the shipped alert rules name.

use std::{net::SocketAddr, time::Duration};

use herald_proto::{subjects, v1::intake_reply};
use herald_testkit::{
    TestSystem, deploy,
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

    // Every metric the shipped alert rules use is one a service exposes
    // (a family shows once it has a series, so use the scrapes taken while
    // the counters had moved).
    let mut exposed = Scrape::default();
    for m in [
        intake,
        router,
        delivery,
        backlog,
        sla_and_escalation_metrics(),
    ] {
        exposed.samples.extend(m.samples);
        exposed.families.extend(m.families);
    }
    let mut used = 0;
    for (alert, names) in deploy::alert_metrics() {
        for name in names {
            used += 1;
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exposed.has(&name) || exposed.has(base),
                "alert {alert:?} uses {name}, which no service exposes"
            );
        }
    }
    assert!(used >= 8, "the alert rules name only {used} metrics");

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

/// The SLA and escalation families as the services that keep clocks and
/// walk escalation chains will expose them, each with one series.
fn sla_and_escalation_metrics() -> Scrape {
    use herald_runtime::metrics::{EscalationLabel, EscalationMetrics, SlaLabel, SlaMetrics};
    let mut registry = prometheus_client::registry::Registry::with_prefix("herald");
    let sla = SlaMetrics::register(&mut registry);
    let escalation = EscalationMetrics::register(&mut registry);
    let clock = SlaLabel {
        lane: "normal".into(),
        channel: "email".into(),
        clock: "first_response".into(),
    };
    sla.warnings.get_or_create(&clock).inc();
    sla.breaches.get_or_create(&clock).inc();
    escalation
        .escalations
        .get_or_create(&EscalationLabel {
            lane: "normal".into(),
            level: "2".into(),
            trigger: "breach".into(),
        })
        .inc();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    scrape::parse(&text)
}
