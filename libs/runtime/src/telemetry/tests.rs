//! What a service's telemetry builds and passes on, with and without an
//! exporter, under a subscriber of the test's own.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter},
};

use super::{
    sampling::{RootSampler, Sampling},
    spans::{process_span, publish_span},
    subscriber,
};
use herald_config::TelemetryConfig;
use herald_proto::subjects;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Keeps every span handed to it.
#[derive(Debug, Clone, Default)]
struct Kept(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

impl Kept {
    fn names(&self) -> Vec<String> {
        let spans = self.0.lock().unwrap();
        spans.iter().map(|s| s.name.to_string()).collect()
    }
}

/// Log lines written, as one string.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn message(subject: &str, traceparent: Option<&str>) -> async_nats::Message {
    let headers = traceparent.map(|tp| {
        let mut h = async_nats::HeaderMap::new();
        h.insert("traceparent", tp);
        h
    });
    async_nats::Message {
        subject: subject.into(),
        reply: None,
        payload: bytes::Bytes::from_static(b"x"),
        headers,
        status: None,
        description: None,
        length: 1,
    }
}

/// A caller's request, as intake receives it.
fn from_caller(traceparent: Option<&str>) -> async_nats::Message {
    message(
        &subjects::from_caller(subjects::INTAKE_NOTIFY, "publisher"),
        traceparent,
    )
}

/// Handles `msg` as a service does: a consumer span, a log line and a
/// publish inside it. Returns the headers the publish would carry.
fn handle(msg: &async_nats::Message) -> async_nats::HeaderMap {
    let span = process_span("router route", msg);
    span.in_scope(|| {
        tracing::info!(notification_id = "ntf_1", "routed");
        let publish = publish_span(subjects::NOTIFY_ACCEPTED, Some("ntf_1"));
        let mut headers = async_nats::HeaderMap::new();
        super::inject_from(&publish, &mut headers);
        headers
    })
}

fn cfg() -> TelemetryConfig {
    TelemetryConfig {
        log_level: "info".into(),
        ..TelemetryConfig::default()
    }
}

#[test]
fn with_no_exporter_no_trace_is_made_or_passed_on_but_logs_still_name_the_work() {
    let lines = Lines::default();
    let writer = lines.clone();
    let sub = subscriber(None, &cfg(), move || writer.clone());
    tracing::subscriber::with_default(sub, || {
        let caller = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let headers = handle(&from_caller(Some(&caller)));
        assert!(headers.get("traceparent").is_none(), "{headers:?}");
        let span = process_span("router route", &from_caller(None));
        assert_eq!(super::traceparent_of(&span), None);
        assert_eq!(super::trace_id(&span), None);
    });
    let logs = lines.text();
    assert!(logs.contains("routed") && logs.contains("ntf_1"), "{logs}");
    assert!(!logs.contains("trace_id"), "{logs}");
}

/// Runs `f` under a subscriber exporting to a fresh [`Kept`] with `rule`.
fn exporting(rule: Sampling, f: impl FnOnce()) -> Kept {
    let kept = Kept::default();
    // The SDK keeps whatever it is given, so what it exports is exactly
    // what was built.
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_simple_exporter(kept.clone())
        .build();
    let sub = subscriber(
        Some((provider.tracer("herald"), rule)),
        &cfg(),
        std::io::sink,
    );
    tracing::subscriber::with_default(sub, f);
    let _ = provider.force_flush();
    kept
}

#[test]
fn a_sampled_caller_is_traced_and_its_trace_passed_on() {
    let mut passed = None;
    let kept = exporting(Sampling::default(), || {
        let caller = format!("00-{TRACE}-00f067aa0ba902b7-01");
        passed = handle(&from_caller(Some(&caller)))
            .get("traceparent")
            .map(|v| v.to_string());
    });
    let tp = passed.expect("the publish carries a traceparent");
    assert!(
        tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    let mut names = kept.names();
    names.sort();
    assert_eq!(names, ["publish herald.v1.notify.accepted", "router route"]);
}

#[test]
fn work_the_sampler_drops_builds_no_span_and_passes_no_trace_on() {
    let unsampled_caller = format!("00-{TRACE}-00f067aa0ba902b7-00");
    let mut passed = Vec::new();
    let kept = exporting(Sampling::default(), || {
        // The caller did not sample its trace.
        passed.push(handle(&from_caller(Some(&unsampled_caller))));
        // A message between services that its publisher did not trace.
        passed.push(handle(&message(subjects::NOTIFY_ACCEPTED, None)));
    });
    assert_eq!(kept.names(), Vec::<String>::new());
    assert!(passed.iter().all(|h| h.get("traceparent").is_none()));

    let never = Sampling {
        root: RootSampler::AlwaysOff,
        parent_based: false,
    };
    let kept = exporting(never, || {
        let caller = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert!(handle(&from_caller(Some(&caller))).is_empty());
        assert!(handle(&from_caller(None)).is_empty());
    });
    assert_eq!(kept.names(), Vec::<String>::new());
}

#[test]
fn a_caller_without_a_trace_starts_one_when_the_sampler_keeps_it() {
    let mut passed = None;
    let kept = exporting(Sampling::default(), || {
        passed = handle(&from_caller(None))
            .get("traceparent")
            .map(|v| v.to_string());
    });
    assert!(passed.is_some_and(|tp| tp.ends_with("-01")));
    assert_eq!(kept.names().len(), 2);
}
