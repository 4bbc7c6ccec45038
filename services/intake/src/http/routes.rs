//! The HTTP API's routes: one table the router is built from and the
//! OpenAPI document is written from.

/// One route of the API.
pub(crate) struct Route {
    pub(crate) method: &'static str,
    /// In axum's and OpenAPI's shared `{name}` form.
    pub(crate) path: &'static str,
    pub(crate) operation: Operation,
    pub(crate) summary: &'static str,
    /// The proto message the JSON body holds.
    pub(crate) request: Option<&'static str>,
    /// Each status it answers with, what it means, and the message of the
    /// body (`None`: problem details).
    pub(crate) answers: &'static [(u16, &'static str, Option<&'static str>)],
    pub(crate) idempotency_header: bool,
    pub(crate) authenticated: bool,
}

/// What a route does; its `operationId` in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    SubmitNotification,
    SubmitCaseEvent,
    Cancel,
    NotificationTrail,
    OpenApi,
}

impl Operation {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Operation::SubmitNotification => "submitNotification",
            Operation::SubmitCaseEvent => "submitCaseEvent",
            Operation::Cancel => "cancel",
            Operation::NotificationTrail => "notificationTrail",
            Operation::OpenApi => "openApi",
        }
    }
}

const BAD_REQUEST: (u16, &str, Option<&str>) = (
    400,
    "a field is invalid or the body is not the JSON form of the message; `field` names it",
    None,
);
const UNAUTHORIZED: (u16, &str, Option<&str>) = (401, "no valid API key", None);
const TOO_LARGE: (u16, &str, Option<&str>) = (413, "the request is over the size limit", None);
const UNSUPPORTED: (u16, &str, Option<&str>) = (415, "the body is not JSON", None);
const UNPROCESSABLE: (u16, &str, Option<&str>) = (
    422,
    "names an unknown contact or template, a channel consent does not allow, or reuses an idempotency key for a different request",
    None,
);
const UNAVAILABLE: (u16, &str, Option<&str>) = (
    503,
    "could not be stored just now; retry after `Retry-After` seconds with the same idempotency key",
    None,
);

pub(crate) const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/notifications",
        operation: Operation::SubmitNotification,
        summary: "Submit a notification: checked field by field, deduplicated by idempotency key, and stored before it is answered",
        request: Some("herald.v1.NotificationRequest"),
        answers: &[
            (202, "accepted and stored", Some("herald.v1.Accepted")),
            (
                200,
                "the idempotency key was seen: the first notification's id, nothing sent again",
                Some("herald.v1.Accepted"),
            ),
            BAD_REQUEST,
            UNAUTHORIZED,
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
            UNAVAILABLE,
        ],
        idempotency_header: true,
        authenticated: true,
    },
    Route {
        method: "POST",
        path: "/v1/cases/{case_id}/events",
        operation: Operation::SubmitCaseEvent,
        summary: "Submit an event of a case (opened, responded, resolved, ...); its clocks and escalation follow",
        request: Some("herald.v1.CaseEvent"),
        answers: &[
            (202, "stored", Some("herald.v1.CaseAccepted")),
            (
                200,
                "the event id was seen: nothing stored again",
                Some("herald.v1.CaseAccepted"),
            ),
            BAD_REQUEST,
            UNAUTHORIZED,
            (
                409,
                "the event does not fit the case's state (e.g. an update of a case never opened)",
                None,
            ),
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
            UNAVAILABLE,
        ],
        idempotency_header: true,
        authenticated: true,
    },
    Route {
        method: "POST",
        path: "/v1/cancel",
        operation: Operation::Cancel,
        summary: "Cancel a cancel key: no job carrying it is sent from the answer on",
        request: Some("herald.v1.CancelRequest"),
        answers: &[
            (
                200,
                "cancelled; `cancelled` is false when it already was",
                Some("herald.v1.CancelReply"),
            ),
            BAD_REQUEST,
            UNAUTHORIZED,
            TOO_LARGE,
            UNSUPPORTED,
            UNAVAILABLE,
        ],
        idempotency_header: false,
        authenticated: true,
    },
    Route {
        method: "GET",
        path: "/v1/notifications/{notification_id}/trail",
        operation: Operation::NotificationTrail,
        summary: "The audit trail of a notification the calling system submitted, in order",
        request: None,
        answers: &[
            (200, "the trail", Some("herald.v1.AuditBatch")),
            UNAUTHORIZED,
            (404, "no such notification from the calling system", None),
            (
                429,
                "too many trails are being read at once; retry after `Retry-After` seconds",
                None,
            ),
            UNAVAILABLE,
        ],
        idempotency_header: false,
        authenticated: true,
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        operation: Operation::OpenApi,
        summary: "This document",
        request: None,
        answers: &[(200, "the OpenAPI 3.1 document", None)],
        idempotency_header: false,
        authenticated: false,
    },
];
