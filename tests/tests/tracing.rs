//! One notification is one trace: a caller's trace context, joined at
//! intake over NATS or gRPC, runs through the router and every delivery
//! attempt in three separate processes, each hop a child of the one
//! before, and reaches the provider as `traceparent`.

use herald_config::LogFormat;
use herald_proto::subjects;
use herald_testkit::{
    fixtures::{contact, inquiry},
    http::Reply,
    otlp::{ReceivedSpan, the_one},
    traced::{TracedSystem, WAIT, accepted_id, is_delivery_attempt},
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_is_one_trace_from_the_caller_through_every_delivery_attempt() {
    // Quiet logs: spans do not depend on the log level.
    let h = TracedSystem::start(LogFormat::Plain, "warn").await;
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
        Some(subjects::from_caller(subjects::INTAKE_NOTIFY, "publisher").as_str())
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
    let mut grpc = herald_testkit::grpc::client(&h.cfg.intake.grpc_addr).await;
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
