//! Emergency broadcasts in OASIS CAP 1.2 over HTTP, for coordinators
//! (their token as `Authorization: Bearer <token>`): `POST
//! /v1/broadcasts/cap` takes an `<alert>` (Alert starts, Update updates,
//! Cancel cancels) with the audience in the query (`group`, `contact`,
//! `org`, `role`, each repeatable; `sms=true` to text as well), and `GET
//! /v1/broadcasts/{broadcast_id}.cap` gives the broadcast back as CAP.

use axum::{
    Json,
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use herald_proto::v1::{Audience, ErrorCode, broadcast_reply};
use herald_runtime::telemetry::http_server_span;
use serde_json::json;
use tracing::Instrument;

use super::{Api, problem::Problem};
use crate::validate::reject;

/// The front door the trail names for coordinators' HTTP requests.
const CALLER: &str = "http";

const NO_TOKEN: &str = "send the coordinator's token as `Authorization: Bearer <token>`";

fn token(headers: &HeaderMap) -> Result<String, Problem> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::keys::bearer)
        .map(str::to_string)
        .ok_or_else(|| Problem::of(&reject(ErrorCode::Unauthorized, "authorization", NO_TOKEN)))
}

/// The audience the query names.
fn audience(query: Option<&str>) -> Result<(Audience, bool), Problem> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| Problem::of(&reject(ErrorCode::InvalidArgument, "query", e.to_string())))?;
    let mut a = Audience::default();
    let mut sms = false;
    for (k, v) in pairs {
        match k.as_str() {
            "group" => a.group_ids.push(v),
            "contact" => a.contact_ids.push(v),
            "org" => a.organisations.push(v),
            "role" => a.roles.push(v),
            "sms" => {
                sms = match v.as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(Problem::of(&reject(
                            ErrorCode::InvalidArgument,
                            "sms",
                            "must be true or false",
                        )));
                    }
                };
            }
            other => {
                return Err(Problem::of(&reject(
                    ErrorCode::InvalidArgument,
                    other,
                    "is not a parameter: group, contact, org, role or sms",
                )));
            }
        }
    }
    Ok((a, sms))
}

pub(super) async fn submit(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = http_server_span("POST", "/v1/broadcasts/cap", &headers);
    async move {
        let credential = token(&headers)?;
        if let Some(essence) = super::media_type(&headers)
            && !matches!(
                essence.as_str(),
                "application/cap+xml" | "application/xml" | "text/xml"
            )
        {
            return Err(Problem::of(&reject(
                ErrorCode::Undecodable,
                "content-type",
                "must be application/cap+xml (or application/xml)",
            ))
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let (audience, sms) = audience(query.as_deref())?;
        let limit = api.max_payload.saturating_mul(4);
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            Problem::of(&reject(
                ErrorCode::PayloadTooLarge,
                "",
                format!("the body is over the limit of {limit} bytes, or was cut short"),
            ))
        })?;
        let bad = |e: herald_cap::Invalid| {
            Problem::of(&reject(ErrorCode::InvalidArgument, e.element, e.message))
        };
        let alert = herald_cap::parse(&bytes).map_err(bad)?;
        let xml = String::from_utf8_lossy(&bytes).to_string();
        let command = herald_cap::command(&alert, &xml, &credential, audience, sms).map_err(bad)?;
        let action = command.action();
        let desk = &api.intake.broadcasts;
        let reply = match command {
            herald_cap::Command::Start(s) => desk.start(s, CALLER).await,
            herald_cap::Command::Update(u) => desk.update(u, CALLER).await,
            herald_cap::Command::Cancel(c) => desk.cancel(c, CALLER).await,
        };
        match reply.result {
            Some(broadcast_reply::Result::Accepted(a)) => Ok((
                if a.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                },
                Json(json!({
                    "broadcastId": a.broadcast_id,
                    "action": action,
                    "duplicate": a.duplicate,
                    "coordinator": a.coordinator,
                    "capIdentifier": alert.identifier,
                })),
            )
                .into_response()),
            Some(broadcast_reply::Result::Rejected(r)) => Err(Problem::of(&r)),
            None => Err(Problem::of(&reject(ErrorCode::Internal, "", "no answer"))),
        }
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn export(
    State(api): State<Api>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let span = http_server_span("GET", "/v1/broadcasts/{broadcast_id}.cap", &headers);
    async move {
        let credential = token(&headers)?;
        let Some(id) = file.strip_suffix(".cap") else {
            return Err(Problem::of(&reject(
                ErrorCode::NotFound,
                "",
                "a broadcast is exported at /v1/broadcasts/<id>.cap",
            )));
        };
        let xml = api
            .intake
            .broadcasts
            .cap_export(id, &credential, CALLER)
            .await
            .map_err(|r| Problem::of(&r))?;
        let mut r = xml.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cap+xml"),
        );
        Ok(r)
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
