//! `GET /v1/trail`: the trail of a client, a member of staff or a case over
//! a span, for a system whose API key may read it (`read_trail`), as JSON
//! (`herald.v1.TrailRecords`) or, with `format=csv` or `Accept: text/csv`,
//! as the CSV `herald trail --csv` prints. The query is the one operators
//! ask over NATS (`herald.v1.intake.trail`), with the same checks; each
//! refusal names the query parameter.

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use herald_proto::v1::{ErrorCode, Rejected, TrailQuery};
use herald_runtime::{telemetry::http_server_span, trail_export};
use tracing::Instrument;

use super::{Api, TRAILS_AT_ONCE, problem::Problem};
use crate::{keys::NO_TRAIL, validate::reject};

/// The query's parameters, with what each holds (the document lists them).
pub(crate) const PARAMETERS: &[(&str, &str)] = &[
    (
        "client",
        "a client's contact id: records naming them and every record of their cases",
    ),
    (
        "staff",
        "a staff member's contact id: records they are the responsible staff of",
    ),
    ("case", "a case id: its records"),
    (
        "since",
        "the span's start: a date (2026-03-16, its first instant in UTC) or an RFC 3339 time",
    ),
    (
        "until",
        "the span's end: a date (its last instant in UTC) or an RFC 3339 time",
    ),
    (
        "type",
        "kinds, comma-separated: a step (sent, case_event, ...), a communication type (service_update, ...) or an interaction kind (call, meeting, ...)",
    ),
    (
        "limit",
        "most records returned (default 10000, at most 100000)",
    ),
    ("format", "json (the default) or csv"),
];

/// How the records are written back.
#[derive(Debug, PartialEq)]
enum Format {
    Json,
    Csv,
}

/// The query a request's parameters ask, or the parameter that is wrong.
fn parse(raw: Option<&str>, headers: &HeaderMap) -> Result<(TrailQuery, Format), Rejected> {
    let bad = |field: &str, why: String| reject(ErrorCode::InvalidArgument, field, why);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| bad("", format!("the query string does not parse: {e}")))?;
    let mut q = TrailQuery::default();
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv"));
    let mut format = if wants_csv { Format::Csv } else { Format::Json };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        let Some((known, _)) = PARAMETERS.iter().find(|(p, _)| p == name) else {
            return Err(bad(
                name,
                format!(
                    "is not a parameter of this query; they are {}",
                    PARAMETERS
                        .iter()
                        .map(|(p, _)| *p)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if seen.contains(known) {
            return Err(bad(name, "is given twice".into()));
        }
        seen.push(known);
        let time = |end: bool| {
            trail_export::bound(value, end)
                .map(|t| herald_proto::timestamp(t.into()))
                .ok_or_else(|| {
                    bad(
                        name,
                        format!("{value:?} is not {}", trail_export::BOUND_FORMAT),
                    )
                })
        };
        match *known {
            "client" => q.client_contact_id = value.clone(),
            "staff" => q.responsible_staff = value.clone(),
            "case" => q.case_id = value.clone(),
            "since" => q.since = Some(time(false)?),
            "until" => q.until = Some(time(true)?),
            "type" => q.types = value.split(',').map(|t| t.trim().to_string()).collect(),
            "limit" => {
                q.limit = value
                    .parse()
                    .map_err(|_| bad(name, format!("{value:?} is not a whole number")))?;
            }
            _ => {
                format = match value.as_str() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    _ => return Err(bad(name, format!("{value:?} is neither json nor csv"))),
                };
            }
        }
    }
    Ok((q, format))
}

/// A refusal of the query's checks, its field renamed to the parameter
/// that carries it.
fn by_parameter(mut r: Rejected) -> Rejected {
    let name = match r.field.as_str() {
        "client_contact_id" => "client",
        "responsible_staff" => "staff",
        "case_id" => "case",
        "types" => "type",
        other => other,
    };
    r.field = name.to_string();
    r
}

pub(super) async fn query(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let span = http_server_span("GET", "/v1/trail", &headers);
    async move {
        let system = api.caller(&headers)?;
        if !api.keys.reads_trail(&system) {
            return Err(
                Problem::of(&reject(ErrorCode::Unauthorized, "authorization", NO_TRAIL))
                    .with_status(StatusCode::FORBIDDEN),
            );
        }
        let (q, format) = parse(raw.as_deref(), &headers).map_err(|r| Problem::of(&r))?;
        let Ok(_permit) = api.trails.clone().try_acquire_owned() else {
            return Err(Problem::of(&reject(
                ErrorCode::Unavailable,
                "",
                format!("{TRAILS_AT_ONCE} trails are being read already; retry shortly"),
            ))
            .with_status(StatusCode::TOO_MANY_REQUESTS));
        };
        let found = api
            .intake
            .trail
            .query(&api.intake.bus, q)
            .await
            .map_err(|r| Problem::of(&by_parameter(r)))?;
        let mut response = match format {
            Format::Json => api.answer(StatusCode::OK, "herald.v1.TrailRecords", &found),
            Format::Csv => {
                let mut r = trail_export::csv(&found.records).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(trail_export::MEDIA_TYPE),
                );
                r
            }
        };
        if found.truncated {
            // The CSV has no room for it; a header says it for both.
            response
                .headers_mut()
                .insert("herald-truncated", HeaderValue::from_static("true"));
        }
        Ok(response)
    }
    .instrument(span)
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(raw: &str) -> Result<(TrailQuery, Format), Rejected> {
        parse(Some(raw), &HeaderMap::new())
    }

    #[test]
    fn parameters_become_the_query() {
        let (q, f) = asked("client=c-1&staff=s-2&since=2026-03-01&until=2026-03-31&type=call,sent&limit=5&format=csv")
            .unwrap();
        assert_eq!(
            (q.client_contact_id.as_str(), q.responsible_staff.as_str()),
            ("c-1", "s-2")
        );
        assert_eq!(q.types, vec!["call", "sent"]);
        assert_eq!((q.limit, f), (5, Format::Csv));
        let span = q.until.unwrap().seconds - q.since.unwrap().seconds;
        assert_eq!(span, 31 * 24 * 3600 - 1);
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
        assert_eq!(parse(Some("case=k"), &accept).unwrap().1, Format::Csv);
        assert_eq!(asked("case=k").unwrap().1, Format::Json);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        for (raw, field) in [
            ("since=yesterday", "since"),
            ("until=2026-13-01", "until"),
            ("limit=many", "limit"),
            ("format=xml", "format"),
            ("clients=c-1", "clients"),
            ("client=a&client=b", "client"),
        ] {
            let r = asked(raw).unwrap_err();
            assert_eq!(r.field, field, "{raw}: {r:?}");
        }
        assert_eq!(
            by_parameter(reject(ErrorCode::InvalidArgument, "client_contact_id", "x")).field,
            "client"
        );
    }
}
