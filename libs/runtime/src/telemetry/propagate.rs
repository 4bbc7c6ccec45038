//! The W3C trace context carried across every hop: NATS headers, gRPC and
//! HTTP `traceparent`, and a `traceparent` stored beside work that resumes
//! later.
//!
//! Only a sampled trace is propagated: a message, call or stored clock from
//! work that is not traced carries no `traceparent`, which is how the next
//! service knows not to trace it either (see [`super::sampling`]).

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Puts the current span's W3C trace context into outgoing NATS headers.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    inject_from(&Span::current(), headers);
}

/// Puts `span`'s W3C trace context into outgoing NATS headers, when it is
/// part of a sampled trace; otherwise the headers stay as they are.
pub fn inject_from(span: &Span, headers: &mut async_nats::HeaderMap) {
    if !super::sampling::is_traced(span) {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The trace context named in incoming NATS headers, if they name one.
pub(super) fn extract_headers(headers: &async_nats::HeaderMap) -> Option<Context> {
    headers.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace context named by a `traceparent` received outside NATS.
pub(super) fn extract_traceparent(traceparent: &str) -> Option<Context> {
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the trace named in incoming NATS headers.
pub fn adopt(span: &Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(h) = headers {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(h));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
    record_trace_id(span);
}

/// Records the span's trace id in its `trace_id` field, for spans that
/// declare one. Log lines carry the trace id without it; this is for code
/// that wants the id among the span's own fields.
pub fn record_trace_id(span: &Span) {
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// The trace id of `span` (32 hex digits), if it is part of a trace.
pub fn trace_id(span: &Span) -> Option<String> {
    let sc = span.context().span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The W3C `traceparent` of the current span, for protocols other than NATS
/// and for storing beside work that resumes later.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The W3C `traceparent` of `span`, when it is part of a sampled trace.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if !super::sampling::is_traced(span) {
        return None;
    }
    let cx = span.context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of a `traceparent` received outside NATS (gRPC
/// metadata, HTTP headers, a value stored with a clock in Redis).
pub fn adopt_traceparent(span: &Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let mut carrier = std::collections::HashMap::new();
        carrier.insert("traceparent".to_string(), tp.to_string());
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
    record_trace_id(span);
}

struct HeaderInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}
