//! The spans Herald opens: a consumer span per message handled and a
//! producer span per publish (OpenTelemetry messaging conventions), server
//! spans for gRPC and HTTP calls, client spans around provider calls, and
//! how an outcome is recorded on them. They carry identifiers, channels and
//! outcomes, never content.
//!
//! Each constructor first asks [`super::sampling`] whether the work is
//! traced and opens the span untraced when it is not, so an unsampled
//! notification (or every notification, with no exporter) costs the
//! OpenTelemetry layer nothing.

use std::future::Future;

use herald_proto::subjects;
use tracing::{Instrument, Span};

use super::{
    propagate::{extract_headers, extract_traceparent, record_trace_id},
    sampling::{self, UNTRACED},
};

/// `tracing::info_span!` with the span's target chosen by `traced`: the
/// usual one when it is traced, [`UNTRACED`] when not. (A span's target is
/// fixed at its call site, hence two of them.)
macro_rules! span_if {
    ($traced:expr, $($span:tt)+) => {
        if $traced {
            tracing::info_span!($($span)+)
        } else {
            tracing::info_span!(target: UNTRACED, $($span)+)
        }
    };
}

/// Whether work entering Herald with this caller `traceparent` is traced,
/// and the context to hang it under. Nothing is parsed when nothing is
/// exported.
fn door(traceparent: Option<&str>) -> (bool, Option<opentelemetry::Context>) {
    let Some(rule) = sampling::rule() else {
        return (false, None);
    };
    let parent = traceparent.and_then(extract_traceparent);
    let traced = rule.at_door(parent.as_ref().and_then(sampling::remote).as_ref());
    (traced, parent)
}

/// Makes a traced `span` the child of `parent` and records its trace id.
fn join(span: &Span, traced: bool, parent: Option<opentelemetry::Context>) {
    if !traced {
        return;
    }
    if let Some(cx) = parent {
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(span, cx);
    }
    record_trace_id(span);
}

/// A server span for one gRPC call, joined to the caller's trace when its
/// metadata carries a `traceparent`. Handlers record `notification_id`,
/// `case_id` and `outcome` on it.
pub fn grpc_server_span(service: &str, method: &str, traceparent: Option<&str>) -> Span {
    let (traced, parent) = door(traceparent);
    let span = span_if!(
        traced,
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
    join(&span, traced, parent);
    span
}

/// A server span for one HTTP request (a provider's status callback, an
/// operator's call), joined to the caller's trace when the request carries
/// a `traceparent`. `route` is the route template, never the raw path, so
/// ids and addresses in paths stay out of span names.
pub fn http_server_span(method: &str, route: &str, headers: &axum::http::HeaderMap) -> Span {
    let tp = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let (traced, parent) = door(tp);
    let span = span_if!(
        traced,
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
    join(&span, traced, parent);
    span
}

/// A client span around one call to a provider (SMTP server, SMS or voice
/// webhook). The `traceparent` sent to an HTTP provider names this span.
pub fn provider_span(channel: &str) -> Span {
    span_if!(
        sampling::current_is_traced(),
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

/// A consumer span for handling one message, the child of the producer
/// span that published it, with the OpenTelemetry messaging attributes.
/// A message from a caller is a door into Herald (see [`sampling`]); any
/// other is traced when its publisher traced it.
/// For a JetStream message it also names the durable consumer and which
/// delivery this is (`attempt`, 1 on the first), so each retry is its own
/// span in the trace. Handlers record `notification_id`, `case_id`,
/// `job_id`, `channel` and `outcome` on it: identifiers, never content.
pub fn process_span(name: &'static str, msg: &async_nats::Message) -> tracing::Span {
    let rule = sampling::rule();
    let parent = rule.and(msg.headers.as_ref()).and_then(extract_headers);
    let traced = rule.is_some_and(|rule| {
        let remote = parent.as_ref().and_then(sampling::remote);
        if subjects::caller_of(&msg.subject).is_some() {
            rule.at_door(remote.as_ref())
        } else {
            rule.between_services(remote.as_ref())
        }
    });
    let ack = msg.reply.as_deref().and_then(jetstream_ack_info);
    let span = span_if!(
        traced,
        "process",
        otel.name = name,
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %msg.subject,
        messaging.destination.template = subjects::destination_template(&msg.subject),
        messaging.message.id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str()),
        messaging.message.body.size = msg.payload.len(),
        messaging.consumer.group.name = ack.as_ref().map(|a| a.consumer),
        attempt = ack.as_ref().map(|a| a.delivered),
        notification_id = tracing::field::Empty,
        case_id = tracing::field::Empty,
        job_id = tracing::field::Empty,
        channel = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    join(&span, traced, parent);
    span
}

/// A producer span for one publish, named after the subject's template so
/// that span names stay few while the attribute keeps the exact subject.
pub fn publish_span(subject: &str, msg_id: Option<&str>) -> tracing::Span {
    let template = subjects::destination_template(subject);
    span_if!(
        sampling::current_is_traced(),
        "publish",
        otel.name = format!("publish {template}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = subject,
        messaging.destination.template = template,
        messaging.message.id = msg_id,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Where a JetStream message came from, read from its ack subject.
struct AckInfo<'a> {
    consumer: &'a str,
    delivered: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.…` and the newer form
/// with domain and account hash (`$JS.ACK.<domain>.<hash>.<stream>.…`).
fn jetstream_ack_info(reply: &str) -> Option<AckInfo<'_>> {
    let tokens: Vec<&str> = reply.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    let (consumer, delivered) = if tokens.len() == 9 {
        (tokens[3], tokens[4])
    } else {
        (tokens[5], tokens[6])
    };
    Some(AckInfo {
        consumer,
        delivered: delivered.parse().ok()?,
    })
}

/// Runs `fut` inside `span`.
pub fn in_span<F: Future>(span: tracing::Span, fut: F) -> tracing::instrument::Instrumented<F> {
    fut.instrument(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_name_the_consumer_and_the_delivery_count() {
        let old = jetstream_ack_info(
            "$JS.ACK.HERALD_DELIVERY.delivery-normal.3.17.12.1700000000000000000.0",
        )
        .unwrap();
        assert_eq!((old.consumer, old.delivered), ("delivery-normal", 3));
        let new = jetstream_ack_info(
            "$JS.ACK.hub.ACCHASH.HERALD_NOTIFY.router-normal.1.5.5.1700000000000000000.2.xyz",
        )
        .unwrap();
        assert_eq!((new.consumer, new.delivered), ("router-normal", 1));
        assert!(jetstream_ack_info("_INBOX.abc.def").is_none());
    }
}
