//! Whether a piece of work is traced, decided before any span of it is
//! built.
//!
//! Building an OpenTelemetry span (its attributes, its ids, its place in
//! the exporter's queue) costs as much as a good part of the work it
//! describes, and a span the sampler then drops was built for nothing. So
//! the decision comes first: the span constructors in [`super::spans`] ask
//! here, and a span that is not traced is opened under [`UNTRACED`], a
//! target the OpenTelemetry layer never sees. Log lines still get its
//! fields (notification id, job id, outcome); only the trace is missing.
//!
//! - No exporter configured: nothing is traced and no OpenTelemetry layer
//!   is installed at all.
//! - At a door into Herald (a caller's request over NATS, a gRPC or HTTP
//!   call): the caller's `traceparent` decides when the sampler is
//!   parent-based (`OTEL_TRACES_SAMPLER`, `parentbased_always_on` unless
//!   set), otherwise, and for a caller without one, the root sampler does
//!   (`always_on`, `always_off`, `traceidratio` with
//!   `OTEL_TRACES_SAMPLER_ARG`).
//! - Between Herald's own services: a message is traced when the service
//!   that published it traced it, which it says by sending a sampled
//!   `traceparent`. A message without one was not sampled upstream and
//!   stays untraced, so a notification is traced whole or not at all rather
//!   than in fragments started anew at every hop.
//! - Inside a traced span (a publish, a provider call): traced with it.

use opentelemetry::{
    Context,
    trace::{SpanContext, TraceContextExt, TraceId},
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;

/// The target of spans that are not traced: the OpenTelemetry layer's
/// filter turns it off, the log filter treats it like any other span of
/// this crate.
pub const UNTRACED: &str = "herald_runtime::telemetry::untraced";

/// How a trace without a (followed) parent is sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this fraction (0 to 1) of traces, chosen by trace id as the
    /// OpenTelemetry `TraceIdRatioBased` sampler chooses.
    Ratio(f64),
}

/// The sampling rule of `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub root: RootSampler,
    /// Follow a caller's sampled flag instead of sampling anew.
    pub parent_based: bool,
}

impl Default for Sampling {
    /// The OpenTelemetry default, `parentbased_always_on`.
    fn default() -> Self {
        Sampling {
            root: RootSampler::AlwaysOn,
            parent_based: true,
        }
    }
}

impl Sampling {
    /// Reads the rule from the variables `get` returns; a sampler Herald
    /// does not know gives the default and a warning naming it.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> (Sampling, Option<String>) {
        let name = get("OTEL_TRACES_SAMPLER")
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let arg = get("OTEL_TRACES_SAMPLER_ARG").filter(|v| !v.trim().is_empty());
        let ratio = || {
            let r = arg
                .as_deref()
                .and_then(|a| a.trim().parse::<f64>().ok())
                .filter(|r| r.is_finite())
                .unwrap_or(1.0);
            RootSampler::Ratio(r.clamp(0.0, 1.0))
        };
        let (root, parent_based) = match name.as_deref() {
            None | Some("parentbased_always_on") => (RootSampler::AlwaysOn, true),
            Some("parentbased_always_off") => (RootSampler::AlwaysOff, true),
            Some("parentbased_traceidratio") => (ratio(), true),
            Some("always_on") => (RootSampler::AlwaysOn, false),
            Some("always_off") => (RootSampler::AlwaysOff, false),
            Some("traceidratio") => (ratio(), false),
            Some(other) => {
                return (
                    Sampling::default(),
                    Some(format!(
                        "OTEL_TRACES_SAMPLER={other} is not supported; sampling parentbased_always_on"
                    )),
                );
            }
        };
        (Sampling { root, parent_based }, None)
    }

    /// Whether work entering Herald with `parent` (the caller's trace
    /// context, if it sent one) is traced.
    pub fn at_door(&self, parent: Option<&SpanContext>) -> bool {
        match parent {
            Some(p) if self.parent_based => p.is_sampled(),
            Some(p) => self.root_says(Some(p.trace_id())),
            None => self.root_says(None),
        }
    }

    /// Whether a message between Herald's services is traced: only when
    /// its publisher traced it.
    pub fn between_services(&self, parent: Option<&SpanContext>) -> bool {
        match parent {
            Some(p) if p.is_sampled() => self.parent_based || self.root_says(Some(p.trace_id())),
            _ => false,
        }
    }

    fn root_says(&self, trace_id: Option<TraceId>) -> bool {
        match self.root {
            RootSampler::AlwaysOn => true,
            RootSampler::AlwaysOff => false,
            RootSampler::Ratio(r) if r >= 1.0 => true,
            RootSampler::Ratio(r) if r <= 0.0 => false,
            RootSampler::Ratio(r) => {
                let id = trace_id.unwrap_or_else(|| RandomIdGenerator::default().new_trace_id());
                // The same arithmetic as the SDK's TraceIdRatioBased, so a
                // trace id is kept by both or by neither.
                let bytes = id.to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&bytes[8..16]);
                let draw = u64::from_be_bytes(low) >> 1;
                draw < (r * (1u64 << 63) as f64) as u64
            }
        }
    }
}

/// Carries the sampling rule inside the subscriber, so that span
/// constructors find it through the dispatcher they run under (and a test
/// with its own subscriber has its own rule). It has no callbacks: it is
/// never called per span or event. Installed only when spans are exported.
pub(super) struct SamplingLayer(pub(super) Sampling);

impl<S: Subscriber> Layer<S> for SamplingLayer {}

/// The rule in force, `None` when nothing is exported.
pub(super) fn rule() -> Option<Sampling> {
    tracing::dispatcher::get_default(|d| d.downcast_ref::<SamplingLayer>().map(|l| l.0))
}

/// Whether `span` is part of a sampled trace (always false when nothing
/// is exported, without asking the span).
pub(super) fn is_traced(span: &Span) -> bool {
    rule().is_some() && span_context(span).is_some_and(|c| c.is_sampled())
}

/// Whether work started inside the current span is traced.
pub(super) fn current_is_traced() -> bool {
    is_traced(&Span::current())
}

/// The valid trace context of `span`, if it has one.
pub(super) fn span_context(span: &Span) -> Option<SpanContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The span context inside an extracted `Context`, if valid.
pub(super) fn remote(cx: &Context) -> Option<SpanContext> {
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};
    use std::collections::HashMap;

    fn rule(vars: &[(&str, &str)]) -> (Sampling, Option<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Sampling::from_env(|k| vars.get(k).cloned())
    }

    fn parent(trace: u128, sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(7u64),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn the_default_follows_the_caller_and_traces_callers_without_a_trace() {
        let (s, warning) = rule(&[]);
        assert_eq!((s, warning), (Sampling::default(), None));
        assert!(s.at_door(None));
        assert!(s.at_door(Some(&parent(1, true))));
        assert!(!s.at_door(Some(&parent(1, false))));
    }

    #[test]
    fn between_services_only_what_the_publisher_traced_is_traced() {
        let (s, _) = rule(&[]);
        assert!(s.between_services(Some(&parent(1, true))));
        assert!(!s.between_services(Some(&parent(1, false))));
        assert!(!s.between_services(None));
    }

    #[test]
    fn a_ratio_keeps_the_same_traces_as_the_sdk_would() {
        let (s, _) = rule(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ]);
        assert_eq!(s.root, RootSampler::Ratio(0.5));
        // The low 64 bits, shifted right once, against half of 2^63.
        assert!(s.root_says(Some(TraceId::from(0x1u128))));
        assert!(!s.root_says(Some(TraceId::from(u64::MAX as u128))));
        // A caller's decision still wins over the ratio.
        assert!(s.at_door(Some(&parent(u64::MAX as u128, true))));
        let kept = (0..2000).filter(|_| s.at_door(None)).count();
        assert!((700..1300).contains(&kept), "{kept} of 2000 kept at 0.5");

        let (none, _) = rule(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ]);
        assert!(!none.at_door(Some(&parent(1, true))));
        assert!(!none.between_services(Some(&parent(1, true))));
    }

    #[test]
    fn an_unknown_sampler_is_named_and_the_default_used() {
        let (s, warning) = rule(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]);
        assert_eq!(s, Sampling::default());
        assert!(warning.is_some_and(|w| w.contains("jaeger_remote")));
        let (off, _) = rule(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert!(!off.at_door(None) && !off.at_door(Some(&parent(1, true))));
    }
}
