//! Telemetry in one place: structured logs (plain or JSON) with personal data
//! scrubbed, OpenTelemetry spans exported over OTLP when the standard
//! `OTEL_*` variables ask for it, and the W3C trace context carried in NATS
//! message headers.

use std::io::Write;

use opentelemetry::{
    global,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, fmt::MakeWriter, layer::SubscriberExt};

use crate::config::{LogFormat, TelemetryConfig};

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

    // Spans always get real trace ids (so logs can carry them); they are
    // exported only when an OTLP endpoint is configured.
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service.to_string())
            .build(),
    );
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if exporting && std::env::var("OTEL_SDK_DISABLED").as_deref() != Ok("true") {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("herald");
    global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let scrubbed = ScrubbingWriter { inner: writer };
    let fmt_layer = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(scrubbed)
            .boxed(),
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .with_writer(scrubbed)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(fmt_layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// Puts the current span's W3C trace context into outgoing NATS headers.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let cx = Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// Makes `span` a child of the trace named in incoming NATS headers, and
/// records the trace id on it so every log line inside carries it.
pub fn adopt(span: &Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(h) = headers {
        let cx = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
    record_trace_id(span);
}

/// Records the span's trace id in its `trace_id` field.
pub fn record_trace_id(span: &Span) {
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// The W3C `traceparent` of the current span, for protocols other than NATS.
pub fn current_traceparent() -> Option<String> {
    let cx = Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of a `traceparent` received outside NATS (gRPC
/// metadata, HTTP headers).
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
