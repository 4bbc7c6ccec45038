//! What an operator sees: one trace per notification across the service
//! processes, metrics that move with the traffic, readiness that follows
//! NATS, and logs and spans free of personal data. The deploy files are
//! checked here too, since Docker is not needed to read them.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use herald_config::{Config, LogFormat};
use herald_directory::contacts::{Contact, Directory};
use herald_proto::{
    Message, subjects,
    v1::{IntakeReply, Lane, NotificationRequest, intake_client::IntakeClient, intake_reply},
};
use herald_testkit::{
    TestSystem,
    fixtures::{contact, inquiry},
    http::{HttpSink, Reply},
    otlp::{OtlpReceiver, ReceivedSpan},
    process::ServiceProcess,
    scrape::{self, Scrape},
    servers::{NatsServer, RedisServer, free_port},
    smtp::SmtpSink,
    system,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// Intake, router and delivery as three processes, exporting spans to a
/// real OTLP receiver, with their own NATS, Redis and provider sinks.
struct Herald {
    _nats: NatsServer,
    _redis: RedisServer,
    smtp: SmtpSink,
    http: HttpSink,
    otlp: OtlpReceiver,
    cfg: Config,
    client: async_nats::Client,
    services: Vec<(&'static str, ServiceProcess, SocketAddr)>,
    _outbox: tempfile::TempDir,
}

impl Herald {
    async fn start(log_format: LogFormat, rust_log: &str) -> Herald {
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let smtp = SmtpSink::start().await;
        let http = HttpSink::start().await;
        let otlp = OtlpReceiver::start().await;
        let outbox = tempfile::tempdir().expect("outbox dir");
        let mut cfg = system::config(&nats, &redis, &smtp, &http, outbox.path());
        cfg.telemetry.log_format = log_format;
        let endpoint = otlp.endpoint();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            // Export every 100 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", rust_log),
        ];
        // Ports are picked free but bound later by the service; should
        // another process take one meanwhile, the service exits and is
        // started again on fresh ports.
        let mut services = Vec::new();
        for round in 1..=3 {
            cfg.intake.grpc_addr = format!("127.0.0.1:{}", free_port());
            cfg.intake.http_addr = format!("127.0.0.1:{}", free_port());
            cfg.router.http_addr = format!("127.0.0.1:{}", free_port());
            cfg.delivery.http_addr = format!("127.0.0.1:{}", free_port());
            services.clear();
            for (name, addr) in [
                ("intake", &cfg.intake.http_addr),
                ("router", &cfg.router.http_addr),
                ("delivery", &cfg.delivery.http_addr),
            ] {
                let addr: SocketAddr = addr.parse().unwrap();
                services.push((name, ServiceProcess::spawn_with_env(name, &cfg, &env), addr));
            }
            if all_ready(&mut services, round == 3).await {
                break;
            }
        }
        let client = async_nats::connect(nats.url()).await.expect("client");
        Herald {
            _nats: nats,
            _redis: redis,
            smtp,
            http,
            otlp,
            cfg,
            client,
            services,
            _outbox: outbox,
        }
    }

    async fn add_contacts(&self, contacts: &[Contact]) {
        let redis = herald_runtime::store::connect(&self.cfg.redis, &CancellationToken::new())
            .await
            .expect("redis");
        Directory::new(redis, &self.cfg.redis.prefix)
            .put_all(contacts)
            .await
            .expect("contacts stored");
    }

    /// Sends a request over NATS as another system would, with the caller's
    /// trace context when given; returns the notification id.
    async fn notify(&self, req: &NotificationRequest, traceparent: Option<&str>) -> String {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(tp) = traceparent {
            headers.insert("traceparent", tp);
        }
        let msg = tokio::time::timeout(
            WAIT,
            self.client.request_with_headers(
                subjects::intake_notify(Lane::Normal),
                headers,
                req.encode_to_vec().into(),
            ),
        )
        .await
        .expect("intake answers in time")
        .expect("intake answers");
        accepted_id(IntakeReply::decode(msg.payload).expect("an IntakeReply"))
    }

    /// Stops every service with SIGTERM, so buffered logs and spans are
    /// flushed, and returns everything they logged.
    fn stop_and_collect_logs(&mut self) -> String {
        let mut logs = String::new();
        for (name, p, _) in &mut self.services {
            let graceful = tokio::task::block_in_place(|| p.terminate_within(WAIT));
            assert!(graceful, "{name} did not stop on SIGTERM");
            logs.push_str(&p.log());
        }
        logs
    }
}

/// Waits for every service's `/readyz`; false if one exited first (and
/// `last_try` is false), panics with its log otherwise.
async fn all_ready(
    services: &mut [(&'static str, ServiceProcess, SocketAddr)],
    last_try: bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (name, p, addr) in services.iter_mut() {
        while !matches!(scrape::get(*addr, "/readyz").await, Ok((200, _))) {
            let exited = !p.is_running();
            if exited && !last_try {
                return false;
            }
            assert!(
                !exited && tokio::time::Instant::now() < deadline,
                "{name} not ready (exited: {exited}); its log:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    true
}

fn accepted_id(reply: IntakeReply) -> String {
    match reply.result {
        Some(intake_reply::Result::Accepted(a)) => a.notification_id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

fn the_one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    f: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {what}, got {found:#?}"
    );
    found[0]
}

fn is_delivery_attempt(s: &ReceivedSpan, id: &str) -> bool {
    s.service == "herald-delivery"
        && s.name == "delivery send"
        && s.attr("notification_id") == Some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_is_one_trace_from_the_caller_through_every_delivery_attempt() {
    // Quiet logs: spans do not depend on the log level.
    let h = Herald::start(LogFormat::Plain, "warn").await;
    h.add_contacts(&[
        contact("bob", Some("bob@example.org"), Some("+447700900002"), "sms"),
        contact("alice", Some("alice@example.org"), None, "email"),
    ])
    .await;
    // The SMS provider is busy the first time, so delivery tries twice.
    h.http.respond_with(|_, before| {
        if before == 0 {
            Reply::status(503)
        } else {
            Reply::ok("SM1")
        }
    });

    // The calling system has a trace of its own; Herald joins it.
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER: &str = "00f067aa0ba902b7";
    let id = h
        .notify(
            &inquiry("trace-1", "bob", "INQ-T1"),
            Some(&format!("00-{TRACE}-{CALLER}-01")),
        )
        .await;
    let sms = h.http.wait_for("/sms", 2, WAIT).await;
    let spans = h
        .otlp
        .wait_for(WAIT, "intake's span and both delivery attempts", |spans| {
            // A span is exported no earlier than the spans that ended
            // inside it in the same process, so waiting for each service's
            // outermost spans waits for all of that service's.
            spans
                .iter()
                .any(|s| s.service == "herald-intake" && s.attr("notification_id") == Some(&id))
                && spans
                    .iter()
                    .filter(|s| is_delivery_attempt(s, &id) && s.attr("outcome").is_some())
                    .count()
                    == 2
                && spans
                    .iter()
                    .any(|s| s.name == "router route" && s.attr("notification_id") == Some(&id))
                && spans
                    .iter()
                    .filter(|s| s.trace_id == TRACE && s.kind == SpanKind::Client)
                    .count()
                    == 2
        })
        .await;
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == TRACE)
        .cloned()
        .collect();

    // intake: a consumer span under the caller's span ...
    let intake = the_one(&trace, "intake span", |s| {
        s.service == "herald-intake" && s.name == "intake notify"
    });
    assert_eq!(intake.parent_span_id, CALLER);
    assert_eq!(intake.kind, SpanKind::Consumer);
    assert_eq!(intake.attr("messaging.system"), Some("nats"));
    assert_eq!(intake.attr("messaging.operation.type"), Some("process"));
    assert_eq!(
        intake.attr("messaging.destination.name"),
        Some(subjects::INTAKE_NOTIFY)
    );
    assert_eq!(intake.attr("notification_id"), Some(id.as_str()));
    assert_eq!(intake.attr("outcome"), Some("accepted"));
    // ... which publishes the accepted notification as a producer ...
    let accepted = the_one(&trace, "publish of the accepted notification", |s| {
        s.service == "herald-intake"
            && s.kind == SpanKind::Producer
            && s.attr("messaging.destination.name") == Some(subjects::NOTIFY_ACCEPTED)
    });
    assert_eq!(accepted.parent_span_id, intake.span_id);
    assert_eq!(accepted.attr("messaging.operation.type"), Some("send"));
    assert_eq!(accepted.attr("messaging.message.id"), Some(id.as_str()));

    // router: consumes that message, publishes the job.
    let router = the_one(&trace, "router span", |s| {
        s.service == "herald-router" && s.name == "router route"
    });
    assert_eq!(router.parent_span_id, accepted.span_id);
    assert_eq!(router.kind, SpanKind::Consumer);
    assert_eq!(router.attr("attempt"), Some("1"));
    assert_eq!(
        router.attr("messaging.consumer.group.name"),
        Some("router-normal")
    );
    assert_eq!(router.attr("notification_id"), Some(id.as_str()));
    assert_eq!(router.attr("outcome"), Some("routed"));
    let job_id = format!("{id}-r0-sms");
    let job = the_one(&trace, "publish of the SMS job", |s| {
        s.service == "herald-router"
            && s.kind == SpanKind::Producer
            && s.attr("messaging.destination.name") == Some("herald.v1.delivery.job.sms")
    });
    assert_eq!(job.parent_span_id, router.span_id);
    assert_eq!(job.attr("messaging.message.id"), Some(job_id.as_str()));

    // delivery: each attempt is its own span under the job's publish, and
    // each provider call a client span under its attempt.
    let mut attempts: Vec<&ReceivedSpan> = trace
        .iter()
        .filter(|s| is_delivery_attempt(s, &id))
        .collect();
    attempts.sort_by_key(|s| s.attr("attempt").map(str::to_string));
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    for (n, (span, outcome)) in attempts.iter().zip(["retry", "sent"]).enumerate() {
        assert_eq!(span.parent_span_id, job.span_id, "attempt {}", n + 1);
        assert_eq!(span.kind, SpanKind::Consumer);
        assert_eq!(span.attr("attempt"), Some((n + 1).to_string().as_str()));
        assert_eq!(span.attr("channel"), Some("sms"));
        assert_eq!(span.attr("job_id"), Some(job_id.as_str()));
        assert_eq!(span.attr("outcome"), Some(outcome));
        assert_eq!(
            span.attr("messaging.consumer.group.name"),
            Some("delivery-normal")
        );
    }
    let calls: Vec<&ReceivedSpan> = attempts
        .iter()
        .map(|a| {
            the_one(&trace, "provider call", |s| {
                s.kind == SpanKind::Client && s.parent_span_id == a.span_id
            })
        })
        .collect();
    assert!(calls[0].error && calls[0].attr("outcome") == Some("transient_failure"));
    assert!(!calls[1].error && calls[1].attr("outcome") == Some("sent"));
    // The provider was told which call it was, in W3C form.
    assert_eq!(
        sms[1].header("traceparent"),
        Some(format!("00-{TRACE}-{}-01", calls[1].span_id).as_str())
    );

    // Every span of the trace comes from the three services and hangs off
    // another span of it (or off the caller): no broken links.
    let ids: Vec<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for s in &trace {
        assert!(
            ["herald-intake", "herald-router", "herald-delivery"].contains(&s.service.as_str()),
            "{s:#?}"
        );
        assert!(
            s.parent_span_id == CALLER || ids.contains(&s.parent_span_id.as_str()),
            "orphan span {s:#?}"
        );
    }
    // And nothing about this notification went into another trace.
    for s in &spans {
        if s.attr("notification_id") == Some(id.as_str()) {
            assert_eq!(s.trace_id, TRACE, "{s:#?}");
        }
    }

    // The gRPC door joins the caller's trace from the request metadata.
    const TRACE2: &str = "0af7651916cd43dd8448eb211c80319c";
    const CALLER2: &str = "b7ad6b7169203331";
    let mut grpc = IntakeClient::connect(format!("http://{}", h.cfg.intake.grpc_addr))
        .await
        .expect("gRPC connects");
    let mut request = tonic::Request::new(inquiry("trace-2", "alice", "INQ-T2"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE2}-{CALLER2}-01").parse().unwrap(),
    );
    let id2 = accepted_id(grpc.notify(request).await.expect("accepted").into_inner());
    h.smtp.wait_for(1, WAIT).await;
    let spans =
        h.otlp
            .wait_for(
                WAIT,
                "the gRPC call's span and the email's delivery",
                |spans| {
                    spans.iter().any(|s| {
                        s.kind == SpanKind::Server && s.attr("notification_id") == Some(&id2)
                    }) && spans
                        .iter()
                        .any(|s| is_delivery_attempt(s, &id2) && s.attr("outcome") == Some("sent"))
                },
            )
            .await;
    let rpc = the_one(&spans, "gRPC server span", |s| {
        s.service == "herald-intake" && s.kind == SpanKind::Server
    });
    assert_eq!(
        (rpc.trace_id.as_str(), rpc.parent_span_id.as_str()),
        (TRACE2, CALLER2)
    );
    assert_eq!(rpc.name, "herald.v1.Intake/Notify");
    assert_eq!(rpc.attr("rpc.system"), Some("grpc"));
    assert_eq!(rpc.attr("notification_id"), Some(id2.as_str()));
    for s in spans
        .iter()
        .filter(|s| s.attr("notification_id") == Some(id2.as_str()))
    {
        assert_eq!(s.trace_id, TRACE2, "{s:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_stays_out_of_logs_and_exported_spans() {
    let mut h = Herald::start(
        LogFormat::Json,
        "debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info",
    )
    .await;
    const EMAIL: &str = "zelda.quartermaine@example.org";
    const PHONE: &str = "+447700900777";
    const REFERENCE: &str = "ZQ-REF-5521";
    let mut zelda = contact("zq", Some(EMAIL), Some(PHONE), "sms");
    zelda.name = "Zelda Quartermaine".into();
    h.add_contacts(&[zelda]).await;
    // The SMS provider refuses twice, quoting the number and the text back
    // as providers do: first "busy", then "invalid". Delivery falls back to
    // email.
    h.http.respond_with(|req, before| {
        let quoted = serde_json::json!({
            "code": 21211,
            "message": format!(
                "The 'To' number {} is not valid; message '{}' refused",
                req.field("To").unwrap_or_default(),
                req.field("Body").unwrap_or_default()
            ),
        })
        .to_string();
        Reply {
            status: if before == 0 { 503 } else { 400 },
            headers: vec![("content-type".into(), "application/json".into())],
            body: quoted,
        }
    });

    let id = h.notify(&inquiry("pii-1", "zq", REFERENCE), None).await;
    let mails = h.smtp.wait_for(1, WAIT).await;
    let sms = h.http.wait_for("/sms", 2, WAIT).await;
    let email_body = mails[0].body();
    let sms_body = sms[0].field("Body").unwrap().to_string();
    assert!(email_body.contains(REFERENCE) && email_body.contains("Zelda Quartermaine"));
    assert!(sms_body.contains(REFERENCE));
    h.otlp
        .wait_for(WAIT, "the fallback email's delivery span", |spans| {
            spans.iter().any(|s| {
                is_delivery_attempt(s, &id)
                    && s.attr("channel") == Some("email")
                    && s.attr("outcome") == Some("sent")
            })
        })
        .await;
    let logs = h.stop_and_collect_logs();
    let spans = h.otlp.spans();
    let exported = format!("{:?}", h.otlp.requests());

    // The path went through the failures whose messages quote the data.
    assert!(
        spans
            .iter()
            .any(|s| is_delivery_attempt(s, &id) && s.attr("outcome") == Some("retry")),
        "the transient SMS failure is in the trace"
    );
    assert!(
        spans
            .iter()
            .any(|s| is_delivery_attempt(s, &id) && s.attr("outcome") == Some("fallback")),
        "the permanent SMS failure is in the trace"
    );
    assert!(logs.contains(&id), "the logs speak of the notification");
    assert!(
        exported.contains(&id),
        "the spans speak of the notification"
    );

    let personal = [
        EMAIL,
        "zelda.quartermaine",
        PHONE,
        &PHONE[1..],
        "Zelda",
        "Quartermaine",
        REFERENCE,
        sms_body.as_str(),
        email_body.trim(),
        "Thank you for contacting us",
    ];
    for value in personal {
        assert!(!logs.contains(value), "{value:?} in the logs:\n{logs}");
        assert!(!exported.contains(value), "{value:?} in the exported spans");
    }

    // The logs are JSON, and every line about this notification carries
    // its trace id.
    let trace_id = &spans
        .iter()
        .find(|s| s.service == "herald-intake" && s.attr("notification_id") == Some(&id))
        .expect("intake span")
        .trace_id;
    let mut about = 0;
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        if line.contains(&id) {
            about += 1;
            assert_eq!(v["trace_id"].as_str(), Some(trace_id.as_str()), "{line}");
            assert_eq!(v["span_id"].as_str().map(str::len), Some(16), "{line}");
        }
    }
    assert!(
        about > 0,
        "no JSON log line names the notification:\n{logs}"
    );

    // The audit trail keeps the provider's code, not its words.
    let bus = herald_runtime::bus::Bus::connect(&h.cfg.nats, "test", &CancellationToken::new())
        .await
        .expect("bus");
    let trail = herald_runtime::audit::read_trail(&bus, &subjects::audit_of_notification(&id))
        .await
        .expect("trail");
    let trail = format!("{trail:?}");
    assert!(trail.contains("code=21211"), "{trail}");
    for value in [PHONE, &PHONE[1..], REFERENCE, "Zelda"] {
        assert!(
            !trail.contains(value),
            "{value:?} in the audit trail: {trail}"
        );
    }
}

/// Polls `/metrics` on `addr` until `ready` holds, and returns that scrape.
async fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = scrape::metrics(addr).await;
        if ready(&m) {
            return m;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} not seen on {addr}/metrics within {WAIT:?}: {m:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let rules = yaml("prometheus/alerts.yaml");
    let mut used = 0;
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                used += 1;
                let base = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                assert!(
                    exposed.has(&name) || exposed.has(base),
                    "alert {:?} uses {name}, which no service exposes",
                    rule["alert"]
                );
            }
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

/// Herald metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("herald_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn deploy_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A deploy file as a tree of values. Compose resolves `<<: *anchor` merge
/// keys; so does the YAML reader.
fn yaml(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(deploy_dir().join(path))
        .unwrap_or_else(|e| panic!("deploy/{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

fn env_of(service: &serde_json::Value) -> BTreeMap<String, String> {
    let env = &service["environment"];
    if let Some(map) = env.as_object() {
        return map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => serde_saphyr::to_string(other).unwrap().trim().to_string(),
                    },
                )
            })
            .collect();
    }
    env.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_deploy_files_parse_and_point_at_each_other() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let service = |name: &str| {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose has no {name}"))
    };
    for name in [
        "nats",
        "redis",
        "otel-collector",
        "jaeger",
        "prometheus",
        "intake",
        "router",
        "delivery",
        "sla",
        "escalation",
        "broadcast",
    ] {
        service(name);
    }
    let nats_cmd = serde_saphyr::to_string(&service("nats")["command"]).unwrap();
    assert!(
        nats_cmd.contains("-js") || nats_cmd.contains("--jetstream"),
        "{nats_cmd}"
    );

    // Every file a service mounts from the repository is there.
    for (name, svc) in services {
        for volume in svc["volumes"].as_array().into_iter().flatten() {
            if let Some(src) = volume.as_str().and_then(|v| v.split(':').next())
                && src.starts_with('.')
            {
                assert!(
                    deploy_dir().join(src).exists(),
                    "{name:?} mounts {src}, which is not in deploy/"
                );
            }
        }
    }

    // The Herald services speak to NATS, Redis and the collector by name,
    // and expose the ports Prometheus scrapes.
    let prometheus = yaml("prometheus/prometheus.yml");
    let targets = serde_saphyr::to_string(&prometheus["scrape_configs"]).unwrap();
    for (name, http_key) in [
        ("intake", "HERALD_INTAKE_HTTP_ADDR"),
        ("router", "HERALD_ROUTER_HTTP_ADDR"),
        ("delivery", "HERALD_DELIVERY_HTTP_ADDR"),
        ("sla", "HERALD_SLA_HTTP_ADDR"),
        ("escalation", "HERALD_ESCALATION_HTTP_ADDR"),
        ("broadcast", "HERALD_BROADCAST_HTTP_ADDR"),
    ] {
        let svc = service(name);
        let env = env_of(svc);
        assert_eq!(env["HERALD_NATS_URL"], "nats://nats:4222", "{name}");
        assert_eq!(env["HERALD_REDIS_URL"], "redis://redis:6379", "{name}");
        assert_eq!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4317",
            "{name}"
        );
        let port = env[http_key].rsplit(':').next().unwrap().to_string();
        assert!(
            targets.contains(&format!("{name}:{port}")),
            "Prometheus does not scrape {name}:{port}: {targets}"
        );
        let dockerfile = svc["build"]["dockerfile"].as_str().expect("dockerfile");
        let context = svc["build"]["context"].as_str().expect("build context");
        assert!(
            deploy_dir().join(context).join(dockerfile).exists(),
            "{name}: {context}/{dockerfile}"
        );
    }
    assert!(
        serde_saphyr::to_string(&prometheus["rule_files"])
            .unwrap()
            .contains("alerts.yaml")
    );

    // The collector takes OTLP and hands traces to Jaeger.
    let collector = yaml("otel-collector.yaml");
    assert!(!collector["receivers"]["otlp"]["protocols"]["grpc"].is_null());
    let traces = &collector["service"]["pipelines"]["traces"];
    let receivers = serde_saphyr::to_string(&traces["receivers"]).unwrap();
    assert!(receivers.contains("otlp"), "{receivers}");
    let exporters = traces["exporters"].as_array().expect("trace exporters");
    assert!(!exporters.is_empty());
    for e in exporters {
        let e = e.as_str().unwrap();
        assert!(
            !collector["exporters"][e].is_null(),
            "pipeline uses exporter {e}, which is not defined"
        );
    }
    let to_jaeger = serde_saphyr::to_string(&collector["exporters"]).unwrap();
    assert!(to_jaeger.contains("jaeger:4317"), "{to_jaeger}");
}
