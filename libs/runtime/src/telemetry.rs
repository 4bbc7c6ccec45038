//! Telemetry in one place: structured logs (plain or JSON) carrying the trace
//! id, OpenTelemetry spans exported over OTLP when the standard `OTEL_*`
//! variables ask for it, and the W3C trace context carried across every hop.
//!
//! One notification is one trace. The pieces that make it so:
//!
//! - NATS: [`crate::bus::Bus::publish`] opens a *producer* span and puts its
//!   `traceparent` in the message headers; [`crate::bus::process_span`] opens
//!   the *consumer* span on the other side as its child. A redelivered
//!   message gets a new consumer span under the same producer span, so every
//!   attempt shows up on its own.
//! - gRPC and HTTP: [`grpc_server_span`] and [`http_server_span`] adopt the
//!   caller's `traceparent`; [`current_traceparent`] gives one to send on.
//! - Work resumed later (a response-time clock kept in Redis that breaches
//!   hours afterwards, a provider's status callback that names only a job):
//!   store [`current_traceparent`] beside the state when the work starts and
//!   hand it to [`adopt_traceparent`] on the span that resumes it.
//!
//! Personal data never leaves the process in telemetry: every log line and
//! every exported span attribute, event and status passes through
//! [`crate::pii::scrub`] on its way out, on top of code that records only
//! identifiers, channels and outcomes.

use std::{borrow::Cow, fmt, io::Write};

use opentelemetry::{
    KeyValue, Value, global,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{Status, TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing::{Event, Span, Subscriber, level_filters::LevelFilter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::Targets,
    fmt::{
        FmtContext, FormatEvent, FormatFields, MakeWriter,
        format::{Format, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
};

use herald_config::{LogFormat, TelemetryConfig};

/// Flushes spans still buffered for export when dropped; keep it alive for
/// the life of the process.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// Sets up logging and tracing for a service binary, writing logs to stdout.
pub fn init(service: &str, cfg: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    init_with_writer(service, cfg, std::io::stdout)
}

/// As [`init`], with logs going to `writer` (tests capture them this way).
/// A second call in the same process keeps the first subscriber.
pub fn init_with_writer<W>(
    service: &str,
    cfg: &TelemetryConfig,
    writer: W,
) -> anyhow::Result<TelemetryGuard>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    global::set_text_map_propagator(TraceContextPropagator::new());

    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the
    // resource builder; the service's own name is only the fallback.
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();

    // Spans always get real trace ids (so logs can carry them); they are
    // exported only when an OTLP endpoint is configured. The sampler and
    // the batch settings come from OTEL_TRACES_SAMPLER and OTEL_BSP_*.
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let plan = ExportPlan::from_env(|k| std::env::var(k).ok());
    if let ExportPlan::Otlp { warning } = &plan {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder.with_batch_exporter(ScrubbingExporter { inner: exporter });
        if let Some(w) = warning {
            eprintln!("{service}: {w}");
        }
    }
    let provider = builder.build();
    let tracer = provider.tracer("herald");
    global::set_tracer_provider(provider.clone());

    // The log level filters log lines only. Spans are always recorded at
    // info level, so a quiet log (RUST_LOG=warn) still yields whole traces
    // and trace ids.
    let log_filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&cfg.log_level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let scrubbed = ScrubbingWriter { inner: writer };
    let fmt_layer = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(WithTraceId {
                inner: Format::default()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
                json: true,
            })
            .with_writer(scrubbed)
            .with_filter(log_filter())
            .boxed(),
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(WithTraceId {
                inner: Format::default(),
                json: false,
            })
            .with_writer(scrubbed)
            .with_filter(log_filter())
            .boxed(),
    };
    // Entering and leaving spans happens at every poll of every traced
    // future: keep it cheap. No busy/idle timing, thread or source-location
    // attributes, and no OpenTelemetry context made current on entry (the
    // few places that need a span's context ask the span for it).
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_context_activation(false)
        .with_filter(span_filter());
    let subscriber = tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// What becomes part of a trace: info-level spans and events, except those
/// of the libraries under us (HTTP/2, gRPC, the exporter itself), which are
/// not part of a notification's story; exporting the exporter's own spans
/// would feed on itself.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
}

/// What the standard `OTEL_*` variables ask of the span exporter.
#[derive(Debug, PartialEq, Eq)]
pub enum ExportPlan {
    /// Keep spans in the process (trace ids in logs, nothing sent).
    None,
    /// Export over OTLP/gRPC, perhaps with a warning about a setting Herald
    /// does not follow.
    Otlp { warning: Option<String> },
}

impl ExportPlan {
    /// Decides from the variables `get` returns, so the rule can be tested
    /// without touching the process environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> ExportPlan {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return ExportPlan::None;
        }
        if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) {
            return ExportPlan::None;
        }
        if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return ExportPlan::None;
        }
        let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let warning = match protocol.as_deref().map(str::trim) {
            None | Some("grpc") => None,
            Some(other) => Some(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported; exporting spans over OTLP/gRPC (port 4317 on a collector)"
            )),
        };
        ExportPlan::Otlp { warning }
    }
}

/// Puts the current span's W3C trace context into outgoing NATS headers.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    inject_from(&Span::current(), headers);
}

/// Puts `span`'s W3C trace context into outgoing NATS headers.
pub fn inject_from(span: &Span, headers: &mut async_nats::HeaderMap) {
    let cx = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// Makes `span` a child of the trace named in incoming NATS headers.
pub fn adopt(span: &Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(h) = headers {
        let cx = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)));
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

/// The W3C `traceparent` of `span`.
pub fn traceparent_of(span: &Span) -> Option<String> {
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

/// A server span for one gRPC call, joined to the caller's trace when its
/// metadata carries a `traceparent`. Handlers record `notification_id`,
/// `case_id` and `outcome` on it.
pub fn grpc_server_span(service: &str, method: &str, traceparent: Option<&str>) -> Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        notification_id = tracing::field::Empty,
        case_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    adopt_traceparent(&span, traceparent);
    span
}

/// A server span for one HTTP request (a provider's status callback, an
/// operator's call), joined to the caller's trace when the request carries
/// a `traceparent`. `route` is the route template, never the raw path, so
/// ids and addresses in paths stay out of span names.
pub fn http_server_span(method: &str, route: &str, headers: &axum::http::HeaderMap) -> Span {
    let span = tracing::info_span!(
        "http",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        notification_id = tracing::field::Empty,
        case_id = tracing::field::Empty,
        job_id = tracing::field::Empty,
        channel = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let tp = headers.get("traceparent").and_then(|v| v.to_str().ok());
    adopt_traceparent(&span, tp);
    span
}

/// A client span around one call to a provider (SMTP server, SMS or voice
/// webhook). The `traceparent` sent to an HTTP provider names this span.
pub fn provider_span(channel: &str) -> Span {
    tracing::info_span!(
        "provider",
        otel.name = format!("provider send {channel}"),
        otel.kind = "client",
        channel = channel,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records how handling ended on `span` (its `outcome` field) and marks
/// the span as an error when the work failed for good, so trace search
/// finds failed notifications by status.
pub fn record_outcome(span: &Span, outcome: &str, failed: bool) {
    span.record("outcome", outcome);
    if failed {
        span.record("otel.status_code", "error");
    }
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

/// Adds the trace and span id of the span an event happens in to its log
/// line: first in a JSON object, last on a plain line. An operator pastes
/// the trace id into Jaeger and sees the whole notification.
struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The trace of whatever span the event happened inside.
        let cx = Span::current().context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let (trace, span) = (sc.trace_id(), sc.span_id());
        if self.json {
            if let Some(rest) = line.strip_prefix('{') {
                return write!(
                    writer,
                    "{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",{rest}"
                );
            }
        } else {
            let body = line.trim_end_matches('\n');
            return writeln!(writer, "{body} trace_id={trace} span_id={span}");
        }
        writer.write_str(&line)
    }
}

/// Every log line passes through [`crate::pii::scrub`] on its way out, so
/// an address that slips into a message or an error is masked anyway.
struct ScrubbingWriter<W> {
    inner: W,
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for ScrubbingWriter<W> {
    type Writer = ScrubbingLine<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingLine {
            inner: self.inner.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// Buffers one formatted event and writes it scrubbed when dropped.
pub struct ScrubbingLine<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for ScrubbingLine<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ScrubbingLine<W> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let _ = self.inner.write_all(crate::pii::scrub(&text).as_bytes());
        let _ = self.inner.flush();
    }
}

/// The span-side twin of [`ScrubbingWriter`]: every string a span carries
/// out of the process (attributes, events such as log lines inside the
/// span, link attributes, the error status) is scrubbed before export.
#[derive(Debug)]
struct ScrubbingExporter<E> {
    inner: E,
}

impl<E: SpanExporter> SpanExporter for ScrubbingExporter<E> {
    fn export(
        &self,
        mut batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        for span in &mut batch {
            scrub_span(span);
        }
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// Masks personal data in everything a span exports.
pub fn scrub_span(span: &mut SpanData) {
    if let Cow::Owned(name) = scrub_cow(&span.name) {
        span.name = Cow::Owned(name);
    }
    scrub_attributes(&mut span.attributes);
    for event in span.events.events.iter_mut() {
        if let Cow::Owned(name) = scrub_cow(&event.name) {
            event.name = Cow::Owned(name);
        }
        scrub_attributes(&mut event.attributes);
    }
    for link in span.links.links.iter_mut() {
        scrub_attributes(&mut link.attributes);
    }
    if let Status::Error { description } = &mut span.status
        && let Cow::Owned(d) = scrub_cow(description)
    {
        *description = Cow::Owned(d);
    }
}

fn scrub_attributes(attributes: &mut [KeyValue]) {
    for kv in attributes {
        match &kv.value {
            Value::String(s) => {
                if let Cow::Owned(clean) = scrub_cow(s.as_str()) {
                    kv.value = Value::String(clean.into());
                }
            }
            Value::Array(opentelemetry::Array::String(items)) => {
                let clean: Vec<_> = items
                    .iter()
                    .map(|s| crate::pii::scrub(s.as_str()).into())
                    .collect();
                kv.value = Value::Array(opentelemetry::Array::String(clean));
            }
            _ => {}
        }
    }
}

/// Scrubs `text`, allocating only when something was masked.
fn scrub_cow(text: &str) -> Cow<'_, str> {
    let clean = crate::pii::scrub(text);
    if clean == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn plan(vars: &[(&str, &str)]) -> ExportPlan {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportPlan::from_env(|k| vars.get(k).cloned())
    }

    #[test]
    fn spans_are_exported_only_when_an_endpoint_is_set_and_nothing_forbids_it() {
        assert_eq!(plan(&[]), ExportPlan::None);
        assert_eq!(
            plan(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]),
            ExportPlan::Otlp { warning: None }
        );
        assert_eq!(
            plan(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")]),
            ExportPlan::Otlp { warning: None }
        );
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_SDK_DISABLED", "true")
            ]),
            ExportPlan::None
        );
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_EXPORTER", "none")
            ]),
            ExportPlan::None
        );
        assert_eq!(
            plan(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]),
            ExportPlan::None
        );
    }

    #[test]
    fn an_unsupported_protocol_is_named_not_silently_ignored() {
        let ExportPlan::Otlp { warning: Some(w) } = plan(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]) else {
            panic!("expected a warning");
        };
        assert!(w.contains("http/protobuf"), "{w}");
        assert_eq!(
            plan(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
            ExportPlan::Otlp { warning: None }
        );
    }

    #[test]
    fn exported_spans_lose_addresses_in_attributes_events_and_status() {
        use opentelemetry::trace::{Event as OtelEvent, SpanContext, SpanKind};
        use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
        let mut events = SpanEvents::default();
        events.events.push(OtelEvent::new(
            "send failed for bob@example.org",
            std::time::SystemTime::now(),
            vec![KeyValue::new("error", "550 no such user <bob@example.org>")],
            0,
        ));
        let mut span = SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "deliver".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: vec![
                KeyValue::new("notification_id", "ntf_01"),
                KeyValue::new("to", "+447700900123"),
                KeyValue::new(
                    "list",
                    Value::Array(opentelemetry::Array::String(vec![
                        "carol@example.org".into(),
                    ])),
                ),
            ],
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::error("bounced: carol@example.org"),
            instrumentation_scope: Default::default(),
        };
        scrub_span(&mut span);
        let text = format!("{span:?}");
        for personal in ["bob@example.org", "+447700900123", "carol@example.org"] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        assert!(text.contains("ntf_01"), "{text}");
        assert!(
            text.contains("[email]") && text.contains("[phone]"),
            "{text}"
        );
    }
}
