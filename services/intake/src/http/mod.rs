//! The HTTP/JSON face of intake, beside NATS and gRPC: the same messages
//! in the proto3 JSON mapping, the same checks, the same idempotency and
//! the same API keys (`Authorization: Bearer <key>`).
//!
//! - `POST /v1/notifications`: a `NotificationRequest`; 202 with the
//!   `Accepted` once it is stored, 200 when its idempotency key was seen.
//! - `POST /v1/cases/{case_id}/events`: a `CaseEvent` of that case.
//! - `POST /v1/cancel`: a `CancelRequest`.
//! - `GET /v1/notifications/{notification_id}/trail`: the audit trail of a
//!   notification the calling system submitted (another system's is not
//!   found, as an unknown id is).
//! - `GET /v1/trail?client=…&staff=…&case=…&since=…&until=…&type=…`: the
//!   trail of a client, a staff member or a case over a span, as JSON or
//!   CSV, for a system whose key has `read_trail` ([`trail`]).
//! - `POST /v1/integrations/alertmanager/{integration}` and
//!   `POST /v2/enqueue`: Alertmanager's webhook and PagerDuty's Events API
//!   v2, each with its integration's key (see [`crate::integrations`]).
//! - `POST /v1/broadcasts/cap` and `GET /v1/broadcasts/{id}.cap`:
//!   emergency broadcasts in OASIS CAP 1.2, for coordinators.
//! - `GET /openapi.json`: the OpenAPI 3.1 document, open like health and
//!   metrics.
//!
//! An `Idempotency-Key` header stands for the body's `idempotencyKey` (for
//! a case event, its `eventId`): the same key over HTTP, NATS and gRPC is
//! one notification. Every refusal is RFC 9457 problem details with the
//! Herald error code and the field by its JSON name. A JSON body may be
//! four times `intake.max_payload_bytes`; the message it holds is held to
//! the limit itself once encoded, as over NATS.

mod broadcasts;
mod integrations;
mod json;
mod openapi;
mod problem;
mod routes;
mod trail;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
};
use herald_config::IntakeConfig;
use herald_proto::{
    Message, subjects,
    v1::{
        AuditBatch, AuditStep, CancelRequest, CaseEvent, ErrorCode, Lane, NotificationRequest,
        Rejected, cancel_reply, case_reply, intake_reply,
    },
};
use herald_runtime::telemetry::http_server_span;
use tokio::sync::Semaphore;
use tracing::{Instrument, error};

use crate::{Intake, keys::ApiKeys, note_refusal, validate::reject};
use json::Schema;
use problem::Problem;
use routes::{Operation, ROUTES};

const NOTIFICATION: &str = "herald.v1.NotificationRequest";
const CASE_EVENT: &str = "herald.v1.CaseEvent";
const CANCEL: &str = "herald.v1.CancelRequest";

/// Trails read at once; each is a short-lived JetStream consumer.
const TRAILS_AT_ONCE: usize = 8;

#[derive(Clone)]
struct Api {
    intake: Intake,
    keys: ApiKeys,
    schema: Schema,
    document: Arc<serde_json::Value>,
    trails: Arc<Semaphore>,
    max_payload: usize,
}

/// The API's routes, for intake's public listener.
pub(crate) fn routes(intake: Intake, cfg: &IntakeConfig) -> anyhow::Result<Router> {
    let schema = Schema::load()?;
    let api = Api {
        intake,
        keys: ApiKeys::new(cfg),
        document: Arc::new(openapi::document(&schema)),
        schema,
        trails: Arc::new(Semaphore::new(TRAILS_AT_ONCE)),
        max_payload: cfg.max_payload_bytes,
    };
    let mut router = Router::new();
    for r in ROUTES {
        let filter = match r.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            other => anyhow::bail!("route {}: no method {other}", r.path),
        };
        let handler: MethodRouter<Api> = match r.operation {
            Operation::SubmitNotification => on(filter, submit_notification),
            Operation::SubmitCaseEvent => on(filter, submit_case_event),
            Operation::Cancel => on(filter, cancel),
            Operation::NotificationTrail => on(filter, trail),
            Operation::Trail => on(filter, trail::query),
            Operation::Alertmanager => on(filter, integrations::alertmanager),
            Operation::PagerDuty => on(filter, integrations::enqueue),
            Operation::CapBroadcast => on(filter, broadcasts::submit),
            Operation::CapExport => on(filter, broadcasts::export),
            Operation::OpenApi => on(filter, document),
        };
        router = router.route(&routes::router_path(r.path), handler);
    }
    Ok(router.fallback(no_route).with_state(api))
}

impl Api {
    /// The calling system, from the request's API key.
    fn caller(&self, headers: &HeaderMap) -> Result<String, Problem> {
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        self.keys.system_of(authorization).map_err(|why| {
            let r = reject(ErrorCode::Unauthorized, "authorization", why);
            note_refusal(
                &self.intake.metrics.rejected,
                Lane::Normal,
                &r,
                "HTTP request",
            );
            Problem::of(&r)
        })
    }

    /// The JSON body, refused when it is another media type or too long.
    async fn body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Rejected> {
        if let Some(essence) = media_type(headers)
            && essence != "application/json"
            && !essence.ends_with("+json")
        {
            return Err(reject(
                ErrorCode::Undecodable,
                "content-type",
                "must be application/json",
            ));
        }
        let limit = self.max_payload.saturating_mul(4);
        axum::body::to_bytes(body, limit).await.map_err(|_| {
            reject(
                ErrorCode::PayloadTooLarge,
                "",
                format!("the body is over the limit of {limit} bytes, or was cut short"),
            )
        })
    }

    /// A refusal of a request for `message`, counted with intake's other
    /// refusals of `what`, its field in JSON names.
    fn refused(&self, message: &str, mut r: Rejected, counted: bool) -> Problem {
        if !counted {
            let family = if message == CASE_EVENT {
                &self.intake.cases.rejected
            } else {
                &self.intake.metrics.rejected
            };
            note_refusal(family, Lane::Normal, &r, "HTTP request");
        }
        r.field = self.schema.json_path(message, &r.field);
        let unsupported = r.field == "content-type";
        let p = Problem::of(&r);
        if unsupported {
            p.with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        } else {
            p
        }
    }

    /// Reads a body holding `message`, held to the size limit once encoded.
    async fn read<M: Message + Default>(
        &self,
        message: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<M, Problem> {
        let bytes = self
            .body(headers, body)
            .await
            .map_err(|r| self.refused(message, r, false))?;
        let m: M = self
            .schema
            .decode(message, &bytes)
            .map_err(|r| self.refused(message, r, false))?;
        let size = m.encoded_len();
        if size > self.max_payload {
            let r = reject(
                ErrorCode::PayloadTooLarge,
                "",
                format!(
                    "the request is {size} bytes encoded; the limit is {}",
                    self.max_payload
                ),
            );
            return Err(self.refused(message, r, false));
        }
        Ok(m)
    }

    fn answer<M: Message>(&self, status: StatusCode, name: &str, m: &M) -> Response {
        match self.schema.encode(name, m) {
            Ok(v) => (status, Json(v)).into_response(),
            Err(r) => {
                error!(message = %r.message, "answer not written as JSON");
                Problem::of(&r).into_response()
            }
        }
    }
}

/// The body's media type without its parameters, in lower case; `None`
/// when the request names none.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?;
    Some(
        ct.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The `Idempotency-Key` header, as a plain token or as the quoted string
/// the IETF draft's structured-field form gives.
fn idempotency_header(headers: &HeaderMap) -> Result<Option<String>, Rejected> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = v.to_str().map_err(|_| {
        reject(
            ErrorCode::InvalidArgument,
            "Idempotency-Key",
            "is not printable ASCII",
        )
    })?;
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// Fills `field` (`name` in proto names) from `given` (a header or the
/// path, `what`) when the body leaves it empty; both given must agree.
fn agree(
    field: &mut String,
    name: &str,
    given: Option<String>,
    what: &str,
) -> Result<(), Rejected> {
    match given {
        Some(g) if field.is_empty() => {
            *field = g;
            Ok(())
        }
        Some(g) if *field != g => Err(reject(
            ErrorCode::InvalidArgument,
            name,
            format!("differs from the {what}; give one, or the same in both"),
        )),
        _ => Ok(()),
    }
}

async fn submit_notification(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let span = http_server_span("POST", "/v1/notifications", &headers);
    async move {
        let system = api.caller(&headers)?;
        let mut req: NotificationRequest = api.read(NOTIFICATION, &headers, body).await?;
        idempotency_header(&headers)
            .and_then(|key| {
                agree(
                    &mut req.idempotency_key,
                    "idempotency_key",
                    key,
                    "Idempotency-Key header",
                )
            })
            .map_err(|r| api.refused(NOTIFICATION, r, false))?;
        let reply = api.intake.submit(req, Lane::Normal, &system).await;
        match reply.result {
            Some(intake_reply::Result::Accepted(a)) => {
                let status = if a.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                let mut r = api.answer(status, "herald.v1.Accepted", &a);
                if let Ok(v) =
                    HeaderValue::try_from(format!("/v1/notifications/{}/trail", a.notification_id))
                {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                Ok(r)
            }
            Some(intake_reply::Result::Rejected(r)) => Err(api.refused(NOTIFICATION, r, true)),
            None => Err(Problem::of(&reject(ErrorCode::Internal, "", "no answer"))),
        }
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

async fn submit_case_event(
    State(api): State<Api>,
    Path(case_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = http_server_span("POST", "/v1/cases/{case_id}/events", &headers);
    async move {
        let system = api.caller(&headers)?;
        let mut ev: CaseEvent = api.read(CASE_EVENT, &headers, body).await?;
        agree(
            &mut ev.case_id,
            "case_id",
            Some(case_id),
            "case in the path",
        )
        .and_then(|()| idempotency_header(&headers))
        .and_then(|key| agree(&mut ev.event_id, "event_id", key, "Idempotency-Key header"))
        .map_err(|r| api.refused(CASE_EVENT, r, false))?;
        let reply = api.intake.submit_case(ev, &system).await;
        match reply.result {
            Some(case_reply::Result::Accepted(a)) => {
                let status = if a.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                Ok(api.answer(status, "herald.v1.CaseAccepted", &a))
            }
            Some(case_reply::Result::Rejected(r)) => Err(api.refused(CASE_EVENT, r, true)),
            None => Err(Problem::of(&reject(ErrorCode::Internal, "", "no answer"))),
        }
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

async fn cancel(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let span = http_server_span("POST", "/v1/cancel", &headers);
    async move {
        let system = api.caller(&headers)?;
        let req: CancelRequest = api.read(CANCEL, &headers, body).await?;
        let reply = api.intake.cancel(&req.encode_to_vec(), &system).await;
        match &reply.result {
            Some(cancel_reply::Result::Rejected(r)) => Err(api.refused(CANCEL, r.clone(), false)),
            _ => Ok(api.answer(StatusCode::OK, "herald.v1.CancelReply", &reply)),
        }
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// Whether `id` could be a notification id, and so is safe to put in a
/// subject filter (no wildcard, no separator).
fn plausible_id(id: &str) -> bool {
    id.len() <= 64
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn trail(
    State(api): State<Api>,
    Path(notification_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let span = http_server_span("GET", "/v1/notifications/{notification_id}/trail", &headers);
    async move {
        let system = api.caller(&headers)?;
        let not_found = || {
            Problem::of(&reject(
                ErrorCode::NotFound,
                "notification_id",
                format!("no notification {notification_id} submitted by {system}"),
            ))
        };
        if !plausible_id(&notification_id) {
            return Err(not_found());
        }
        let Ok(_permit) = api.trails.clone().try_acquire_owned() else {
            return Err(Problem::of(&reject(
                ErrorCode::Unavailable,
                "",
                format!("{TRAILS_AT_ONCE} trails are being read already; retry shortly"),
            ))
            .with_status(StatusCode::TOO_MANY_REQUESTS));
        };
        let records = herald_runtime::audit::read_trail(
            &api.intake.bus,
            &subjects::audit_of_notification(&notification_id),
        )
        .await
        .map_err(|e| {
            error!(error = %e, "trail not read");
            Problem::of(&crate::unavailable())
        })?;
        // Only the system that submitted a notification reads its trail.
        let theirs = records
            .iter()
            .any(|r| r.step() == AuditStep::Accepted && r.caller == system);
        if !theirs {
            return Err(not_found());
        }
        Ok(api.answer(
            StatusCode::OK,
            "herald.v1.AuditBatch",
            &AuditBatch { records },
        ))
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

async fn document(State(api): State<Api>) -> Response {
    Json(api.document.as_ref().clone()).into_response()
}

async fn no_route(method: Method, uri: Uri) -> Response {
    Problem::of(&reject(
        ErrorCode::NotFound,
        "",
        format!(
            "no route {method} {}; the routes are listed at /openapi.json",
            uri.path()
        ),
    ))
    .into_response()
}

#[cfg(test)]
mod tests;
