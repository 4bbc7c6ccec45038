//! Telemetry in one place: structured logs (plain or JSON) carrying the trace
//! id, OpenTelemetry spans exported over OTLP when the standard `OTEL_*`
//! variables ask for it, and the W3C trace context carried across every hop.
//!
//! One notification is one trace. The pieces that make it so:
//!
//! - NATS: [`crate::bus::Bus::publish`] opens a *producer* span and puts its
//!   `traceparent` in the message headers; [`spans::process_span`] opens
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
//! Spans are built only for work that is traced: with no exporter
//! configured, none; with one, the work its sampler keeps, decided before
//! the first span of it is opened ([`sampling`]).
//!
//! Personal data never leaves the process in telemetry: every log line and
//! every exported span attribute, event and status passes through
//! [`crate::pii::scrub`] on its way out, on top of code that records only
//! identifiers, channels and outcomes.

mod export;
mod logs;
mod propagate;
pub mod sampling;
pub mod spans;

use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::Targets,
    fmt::{MakeWriter, format::Format},
    layer::SubscriberExt,
};

use herald_config::{LogFormat, TelemetryConfig};

pub use export::{ExportPlan, scrub_span};
pub use logs::ScrubbingLine;
pub use propagate::{
    adopt, adopt_traceparent, current_traceparent, inject, inject_from, record_trace_id, trace_id,
    traceparent_of,
};
pub use spans::{grpc_server_span, http_server_span, provider_span, record_outcome};

use export::ScrubbingExporter;
use logs::{ScrubbingWriter, WithTraceId};
use sampling::{Sampling, SamplingLayer};

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

    // Spans are built only when they are exported, and then only for
    // sampled work: the sampling rule (OTEL_TRACES_SAMPLER and its ARG)
    // is applied by the span constructors before a span exists (see
    // `sampling`), so the SDK keeps everything it is handed. The batch
    // settings come from OTEL_BSP_*.
    let tracing = match ExportPlan::from_env(|k| std::env::var(k).ok()) {
        ExportPlan::None => None,
        ExportPlan::Otlp { warning } => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_resource(resource)
                .with_sampler(Sampler::AlwaysOn)
                .with_batch_exporter(ScrubbingExporter { inner: exporter })
                .build();
            let (rule, unknown) = Sampling::from_env(|k| std::env::var(k).ok());
            for w in warning.iter().chain(unknown.iter()) {
                eprintln!("{service}: {w}");
            }
            global::set_tracer_provider(provider.clone());
            Some((provider, rule))
        }
    };
    let subscriber = subscriber(
        tracing
            .as_ref()
            .map(|(provider, rule)| (provider.tracer("herald"), *rule)),
        cfg,
        writer,
    );
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(TelemetryGuard {
        provider: tracing.map(|(provider, _)| provider),
    })
}

/// The subscriber every service runs under: log lines filtered by the log
/// level, and, when `tracing` names a tracer, the spans of sampled work
/// handed to it under `rule`. Without a tracer no OpenTelemetry layer is
/// installed, so spans cost what a log line's context costs and nothing
/// more.
pub(crate) fn subscriber<W>(
    tracing: Option<(opentelemetry_sdk::trace::Tracer, Sampling)>,
    cfg: &TelemetryConfig,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // The log level filters log lines only. Sampled spans are recorded at
    // info level whatever it is, so a quiet log (RUST_LOG=warn) still
    // yields whole traces and trace ids.
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
    let (tracer, rule) = tracing.unzip();
    // Entering and leaving spans happens at every poll of every traced
    // future: keep it cheap. No busy/idle timing, thread or source-location
    // attributes, and no OpenTelemetry context made current on entry (the
    // few places that need a span's context ask the span for it).
    let otel_layer = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_context_activation(false)
            .with_filter(span_filter())
    });
    tracing_subscriber::registry()
        .with(rule.map(SamplingLayer))
        .with(otel_layer)
        .with(fmt_layer)
}

/// What becomes part of a trace: info-level spans and events, except spans
/// of work that is not sampled (opened under [`sampling::UNTRACED`]) and
/// those of the libraries under us (HTTP/2, gRPC, the exporter itself), which are
/// not part of a notification's story; exporting the exporter's own spans
/// would feed on itself.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target(sampling::UNTRACED, LevelFilter::OFF)
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

#[cfg(test)]
mod tests;
