//! Refusals over HTTP as RFC 9457 problem details
//! (`application/problem+json`): the standard members, plus `code` (the
//! same Herald error code a NATS or gRPC caller gets) and `field` (the
//! offending field by its JSON name, as the request wrote it).

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use herald_proto::v1::{ErrorCode, Rejected};
use serde::Serialize;

/// A refusal, ready to send.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: &'static str,
    pub(crate) status: u16,
    pub(crate) detail: String,
    pub(crate) code: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) field: String,
}

impl Problem {
    /// The problem for a refusal `r`, whose field is already in JSON
    /// names.
    pub(crate) fn of(r: &Rejected) -> Problem {
        let code = ErrorCode::try_from(r.code).unwrap_or(ErrorCode::Internal);
        let (status, title) = status_of(code);
        Problem {
            kind: type_of(code),
            title,
            status: status.as_u16(),
            detail: if r.field.is_empty() {
                r.message.clone()
            } else {
                format!("{}: {}", r.field, r.message)
            },
            code: code.as_str_name(),
            field: r.field.clone(),
        }
    }

    /// The same problem under another status, where HTTP has a more
    /// precise one than the error code's (415 for a body that is not JSON,
    /// 429 for too many at once).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Problem {
        self.status = status.as_u16();
        self
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match status {
            // A caller without a key learns which scheme to use.
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"herald\""),
                );
            }
            // Storage is back within seconds as a rule; the same
            // idempotency key makes the retry safe.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A stable identifier per error code, which RFC 9457 asks to be a URI.
fn type_of(code: ErrorCode) -> String {
    let name = code
        .as_str_name()
        .trim_start_matches("ERROR_CODE_")
        .to_ascii_lowercase()
        .replace('_', "-");
    format!("urn:herald:problem:{name}")
}

/// The HTTP status and fixed title of each error code. A request naming a
/// contact or template Herald lacks, or one the recipient's consent does
/// not allow, is well-formed but cannot be processed (422); a key reused
/// for a different request is 422 too, as the IETF Idempotency-Key draft
/// asks.
pub(crate) fn status_of(code: ErrorCode) -> (StatusCode, &'static str) {
    use ErrorCode as E;
    match code {
        E::InvalidArgument | E::EmptyRecipients => {
            (StatusCode::BAD_REQUEST, "A field of the request is invalid")
        }
        E::Undecodable => (StatusCode::BAD_REQUEST, "The request body cannot be read"),
        E::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "The request is too large"),
        E::UnknownTemplate | E::UnknownContact => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The request names something Herald does not know",
        ),
        E::MissingConsent | E::ChannelNotAllowed => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The recipient may not be reached this way",
        ),
        E::IdempotencyConflict => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The idempotency key was used for a different request",
        ),
        E::InvalidState => (
            StatusCode::CONFLICT,
            "The request does not fit the current state",
        ),
        E::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "The request carries no valid API key",
        ),
        E::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        E::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Herald cannot take the request just now",
        ),
        E::Internal | E::Unspecified => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Herald failed to handle the request",
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::reject;

    use super::*;

    #[test]
    fn a_refusal_names_its_code_field_and_status() {
        let p = Problem::of(&reject(
            ErrorCode::UnknownContact,
            "recipients[0].contactId",
            "no contact `zed` in the directory",
        ));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:herald:problem:unknown-contact",
                "title": "The request names something Herald does not know",
                "status": 422,
                "detail": "recipients[0].contactId: no contact `zed` in the directory",
                "code": "ERROR_CODE_UNKNOWN_CONTACT",
                "field": "recipients[0].contactId",
            })
        );
        let r = p.into_response();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn every_code_has_a_status_a_title_and_a_type() {
        for v in 0..=14 {
            let code = ErrorCode::try_from(v).unwrap();
            let (status, title) = status_of(code);
            assert!(status.is_client_error() || status.is_server_error());
            assert!(!title.is_empty());
            assert!(type_of(code).starts_with("urn:herald:problem:"));
        }
        let unauthorized =
            Problem::of(&reject(ErrorCode::Unauthorized, "authorization", "no")).into_response();
        assert_eq!(
            unauthorized.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"herald\""
        );
        let busy = Problem::of(&reject(ErrorCode::Unavailable, "", "later")).into_response();
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    }
}
