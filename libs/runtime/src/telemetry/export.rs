//! What leaves the process as spans: whether the standard `OTEL_*`
//! variables ask for export at all, and the exporter wrapper that masks
//! personal data in every span on its way out.

use std::borrow::Cow;

use opentelemetry::{KeyValue, Value, trace::Status};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};

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

/// The span-side twin of [`ScrubbingWriter`]: every string a span carries
/// out of the process (attributes, events such as log lines inside the
/// span, link attributes, the error status) is scrubbed before export.
#[derive(Debug)]
pub(super) struct ScrubbingExporter<E> {
    pub(super) inner: E,
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
