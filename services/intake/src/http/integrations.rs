//! The two tool-shaped routes: Alertmanager's webhook and PagerDuty's
//! Events API v2. Each answers in what its tool expects: Alertmanager
//! looks only at the status (it retries a 5xx, not a 4xx), PagerDuty
//! clients read their own JSON shapes.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use herald_config::IntegrationKind;
use herald_proto::v1::{ErrorCode, Lane, Rejected};
use herald_runtime::telemetry::http_server_span;
use serde_json::json;
use tracing::{Instrument, info, warn};

use super::{Api, problem::Problem};
use crate::{
    integrations::{
        Outcome,
        alertmanager::{self, Asked},
        pagerduty::{self, Action, Invalid},
    },
    note_refusal,
    validate::reject,
};

const NO_INTEGRATION: &str = "no Alertmanager integration of that name holds this key; send `Authorization: Bearer <key>` with the integration's key (`http_config.authorization.credentials`)";

pub(super) async fn alertmanager(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = http_server_span(
        "POST",
        "/v1/integrations/alertmanager/{integration}",
        &headers,
    );
    async move {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::keys::bearer);
        let integration = presented.and_then(|key| {
            api.intake
                .integrations
                .holding(IntegrationKind::Alertmanager, Some(&name), key)
        });
        let Some(g) = integration.cloned() else {
            let r = reject(ErrorCode::Unauthorized, "authorization", NO_INTEGRATION);
            note_refusal(&api.intake.metrics.rejected, Lane::Normal, &r, "webhook");
            return Err(Problem::of(&r));
        };
        let bytes = api
            .body(&headers, body)
            .await
            .map_err(|r| refused(&api, r))?;
        let (asked, alert) = alertmanager::read(&bytes, &g).map_err(|r| refused(&api, r))?;
        let outcome = match asked {
            Asked::Fire => api.intake.alert_fired(&g, &alert).await,
            Asked::Resolve => api.intake.alert_resolved(&g, &alert).await,
        }
        .map_err(|r| refused(&api, r))?;
        info!(integration = %g.name, outcome = outcome.name(), "Alertmanager webhook");
        Ok(Json(answer(&outcome)).into_response())
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

fn answer(outcome: &Outcome) -> serde_json::Value {
    match outcome.case_id() {
        Some(c) => json!({"outcome": outcome.name(), "caseId": c}),
        None => json!({"outcome": outcome.name()}),
    }
}

fn refused(api: &Api, r: Rejected) -> Problem {
    note_refusal(&api.intake.metrics.rejected, Lane::Normal, &r, "webhook");
    let unsupported = r.field == "content-type";
    let p = Problem::of(&r);
    if unsupported {
        p.with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    } else {
        p
    }
}

/// A PagerDuty-shaped answer.
fn pd(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn invalid(errors: Vec<String>) -> Response {
    pd(
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

pub(super) async fn enqueue(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let span = http_server_span("POST", "/v2/enqueue", &headers);
    async move {
        let bytes = match api.body(&headers, body).await {
            Ok(b) => b,
            Err(r) => {
                let status = if r.code() == ErrorCode::PayloadTooLarge {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return pd(
                    status,
                    json!({"status": "invalid event", "message": r.message, "errors": [r.message]}),
                );
            }
        };
        let event = match pagerduty::read(&bytes) {
            Ok(e) => e,
            Err(Invalid::NotJson) => {
                return pd(
                    StatusCode::BAD_REQUEST,
                    json!({"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["JSON parse error"]}),
                );
            }
            Err(Invalid::Fields(errors)) => return invalid(errors),
        };
        let Some(g) = api
            .intake
            .integrations
            .holding(IntegrationKind::Pagerduty, None, &event.routing_key)
            .cloned()
        else {
            let r = reject(
                ErrorCode::Unauthorized,
                "routing_key",
                "is not the key of a PagerDuty integration",
            );
            note_refusal(&api.intake.metrics.rejected, Lane::Normal, &r, "event");
            return invalid(vec![
                "'routing_key' is not the key of one of this Herald's integrations".into(),
            ]);
        };
        let (key, done) = match &event.action {
            Action::Trigger(alert) => (alert.key.clone(), api.intake.alert_fired(&g, alert).await),
            Action::Acknowledge { key, actor } => (
                key.clone(),
                api.intake.alert_acknowledged(&g, key, actor).await,
            ),
            Action::Resolve(alert) => (alert.key.clone(), api.intake.alert_resolved(&g, alert).await),
        };
        match done {
            Ok(outcome) => {
                info!(integration = %g.name, outcome = outcome.name(), made_key = event.made_key, "PagerDuty event");
                pd(
                    StatusCode::ACCEPTED,
                    json!({"status": "success", "message": "Event processed", "dedup_key": key}),
                )
            }
            Err(r) => {
                note_refusal(&api.intake.metrics.rejected, Lane::Normal, &r, "event");
                let detail = if r.field.is_empty() {
                    r.message.clone()
                } else {
                    format!("{}: {}", r.field, r.message)
                };
                warn!(integration = %g.name, code = %ErrorCode::name_of(r.code), "PagerDuty event not acted on");
                let status = if r.code() == ErrorCode::Unavailable {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                pd(
                    status,
                    json!({"status": "error", "message": "The event could not be processed; retry later", "errors": [detail]}),
                )
            }
        }
    }
    .instrument(span)
    .await
}
