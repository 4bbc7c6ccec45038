//! The HTTP API's routes: one table the router is built from and the
//! OpenAPI document is written from.

/// The path axum routes `path` by: its router cannot match a parameter
/// with a suffix (`{broadcast_id}.cap`), so such a segment is routed as the
/// bare parameter and the handler checks the suffix.
pub(crate) fn router_path(path: &str) -> String {
    path.split('/')
        .map(|s| match (s.starts_with('{'), s.find("}.")) {
            (true, Some(end)) => &s[..=end],
            _ => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One route of the API.
pub(crate) struct Route {
    pub(crate) method: &'static str,
    /// In axum's and OpenAPI's shared `{name}` form.
    pub(crate) path: &'static str,
    pub(crate) operation: Operation,
    pub(crate) summary: &'static str,
    /// What the JSON body holds.
    pub(crate) request: Option<Body>,
    /// Each status it answers with, what it means, and what the body
    /// holds (`None`: problem details).
    pub(crate) answers: &'static [(u16, &'static str, Option<Body>)],
    pub(crate) idempotency_header: bool,
    /// The query string's parameters, each with what it holds.
    pub(crate) query: &'static [(&'static str, &'static str)],
    pub(crate) security: Security,
}

/// Which credential a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// A calling system's API key, `Authorization: Bearer <key>`.
    ApiKey,
    /// The named integration's key, `Authorization: Bearer <key>`.
    IntegrationKey,
    /// The body's `routing_key`, as PagerDuty's API has it.
    RoutingKey,
    /// A broadcast coordinator's token, `Authorization: Bearer <token>`.
    Coordinator,
    Open,
}

/// What a body holds: a proto message in its JSON mapping, or a shape
/// another tool defines (described in the document's components by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    Proto(&'static str),
    Shape(&'static str),
}

/// What a route does; its `operationId` in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    SubmitNotification,
    SubmitCaseEvent,
    Cancel,
    NotificationTrail,
    Trail,
    Alertmanager,
    PagerDuty,
    CapBroadcast,
    CapExport,
    OpenApi,
}

impl Operation {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Operation::SubmitNotification => "submitNotification",
            Operation::SubmitCaseEvent => "submitCaseEvent",
            Operation::Cancel => "cancel",
            Operation::NotificationTrail => "notificationTrail",
            Operation::Trail => "trail",
            Operation::Alertmanager => "alertmanagerWebhook",
            Operation::PagerDuty => "pagerDutyEnqueue",
            Operation::CapBroadcast => "capBroadcast",
            Operation::CapExport => "capExport",
            Operation::OpenApi => "openApi",
        }
    }
}

const BAD_REQUEST: (u16, &str, Option<Body>) = (
    400,
    "a field is invalid or the body is not the JSON form of the message; `field` names it",
    None,
);
const UNAUTHORIZED: (u16, &str, Option<Body>) = (401, "no valid API key", None);
const TOO_LARGE: (u16, &str, Option<Body>) = (413, "the request is over the size limit", None);
const UNSUPPORTED: (u16, &str, Option<Body>) = (415, "the body is not JSON", None);
const UNPROCESSABLE: (u16, &str, Option<Body>) = (
    422,
    "names an unknown contact or template, a channel consent does not allow, or reuses an idempotency key for a different request",
    None,
);
const UNAVAILABLE: (u16, &str, Option<Body>) = (
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
        request: Some(Body::Proto("herald.v1.NotificationRequest")),
        answers: &[
            (
                202,
                "accepted and stored",
                Some(Body::Proto("herald.v1.Accepted")),
            ),
            (
                200,
                "the idempotency key was seen: the first notification's id, nothing sent again",
                Some(Body::Proto("herald.v1.Accepted")),
            ),
            BAD_REQUEST,
            UNAUTHORIZED,
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
            UNAVAILABLE,
        ],
        idempotency_header: true,
        query: &[],
        security: Security::ApiKey,
    },
    Route {
        method: "POST",
        path: "/v1/cases/{case_id}/events",
        operation: Operation::SubmitCaseEvent,
        summary: "Submit an event of a case (opened, responded, resolved, ...); its clocks and escalation follow",
        request: Some(Body::Proto("herald.v1.CaseEvent")),
        answers: &[
            (202, "stored", Some(Body::Proto("herald.v1.CaseAccepted"))),
            (
                200,
                "the event id was seen: nothing stored again",
                Some(Body::Proto("herald.v1.CaseAccepted")),
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
        query: &[],
        security: Security::ApiKey,
    },
    Route {
        method: "POST",
        path: "/v1/cancel",
        operation: Operation::Cancel,
        summary: "Cancel a cancel key: no job carrying it is sent from the answer on",
        request: Some(Body::Proto("herald.v1.CancelRequest")),
        answers: &[
            (
                200,
                "cancelled; `cancelled` is false when it already was",
                Some(Body::Proto("herald.v1.CancelReply")),
            ),
            BAD_REQUEST,
            UNAUTHORIZED,
            TOO_LARGE,
            UNSUPPORTED,
            UNAVAILABLE,
        ],
        idempotency_header: false,
        query: &[],
        security: Security::ApiKey,
    },
    Route {
        method: "GET",
        path: "/v1/notifications/{notification_id}/trail",
        operation: Operation::NotificationTrail,
        summary: "The audit trail of a notification the calling system submitted, in order",
        request: None,
        answers: &[
            (200, "the trail", Some(Body::Proto("herald.v1.AuditBatch"))),
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
        query: &[],
        security: Security::ApiKey,
    },
    Route {
        method: "GET",
        path: "/v1/trail",
        operation: Operation::Trail,
        summary: "The trail of a client, a staff member or a case over a span (SOP 001 §4.1's interaction records), as JSON or CSV; for a system whose API key has `read_trail`",
        request: None,
        answers: &[
            (
                200,
                "the records, oldest first; a `Herald-Truncated: true` header when more matched than `limit`",
                Some(Body::Proto("herald.v1.TrailRecords")),
            ),
            (
                400,
                "a parameter is invalid or none of client, staff and case is given; `field` names it",
                None,
            ),
            UNAUTHORIZED,
            (
                403,
                "the API key may not read the trail (`read_trail`)",
                None,
            ),
            (
                429,
                "too many trails are being read at once; retry after `Retry-After` seconds",
                None,
            ),
            UNAVAILABLE,
        ],
        idempotency_header: false,
        query: super::trail::PARAMETERS,
        security: Security::ApiKey,
    },
    Route {
        method: "POST",
        path: "/v1/integrations/alertmanager/{integration}",
        operation: Operation::Alertmanager,
        summary: "Alertmanager's webhook (payload version 4): a firing group opens a case, resolved resolves it; point a webhook_config here with `http_config.authorization.credentials` set to the integration's key",
        request: Some(Body::Shape("AlertmanagerWebhook")),
        answers: &[
            (
                200,
                "done; `outcome` says what",
                Some(Body::Shape("AlertOutcome")),
            ),
            BAD_REQUEST,
            (401, "no integration of that name with that key", None),
            TOO_LARGE,
            UNSUPPORTED,
            (
                422,
                "the integration names a contact or template Herald does not have",
                None,
            ),
            UNAVAILABLE,
        ],
        idempotency_header: false,
        query: &[],
        security: Security::IntegrationKey,
    },
    Route {
        method: "POST",
        path: "/v2/enqueue",
        operation: Operation::PagerDuty,
        summary: "PagerDuty's Events API v2: trigger opens a case, acknowledge and resolve act on it; `routing_key` names the integration and is its credential",
        request: Some(Body::Shape("PagerDutyEvent")),
        answers: &[
            (202, "processed", Some(Body::Shape("PagerDutyAccepted"))),
            (
                400,
                "an invalid event, every problem listed; do not retry",
                Some(Body::Shape("PagerDutyError")),
            ),
            (
                500,
                "the event could not be acted on (e.g. a contact the integration names is missing); retry later",
                Some(Body::Shape("PagerDutyError")),
            ),
            (
                503,
                "Herald cannot store it just now; retry later",
                Some(Body::Shape("PagerDutyError")),
            ),
        ],
        idempotency_header: false,
        query: &[],
        security: Security::RoutingKey,
    },
    Route {
        method: "POST",
        path: "/v1/broadcasts/cap",
        operation: Operation::CapBroadcast,
        summary: "An OASIS CAP 1.2 alert from a coordinator: Alert starts a broadcast (email and call to everyone the query names: group, contact, org, role; sms=true to text too), Update updates it, Cancel cancels it",
        request: Some(Body::Shape("CapAlert")),
        answers: &[
            (202, "accepted", Some(Body::Shape("CapAccepted"))),
            (
                200,
                "already accepted: nothing new happens",
                Some(Body::Shape("CapAccepted")),
            ),
            (
                400,
                "not a CAP 1.2 alert Herald broadcasts; `field` names the element",
                None,
            ),
            (401, "no valid coordinator token", None),
            (
                404,
                "an update or cancel of a broadcast that does not exist",
                None,
            ),
            (
                409,
                "an update or cancel of a broadcast that has ended",
                None,
            ),
            TOO_LARGE,
            UNSUPPORTED,
            UNAVAILABLE,
        ],
        idempotency_header: false,
        query: &[],
        security: Security::Coordinator,
    },
    Route {
        method: "GET",
        path: "/v1/broadcasts/{broadcast_id}.cap",
        operation: Operation::CapExport,
        summary: "A broadcast as a CAP 1.2 alert: the alert it was started from with its latest message, or one made from its state; the note says where it stands",
        request: None,
        answers: &[
            (
                200,
                "the alert (application/cap+xml)",
                Some(Body::Shape("CapAlert")),
            ),
            (401, "no valid coordinator token", None),
            (404, "no such broadcast", None),
            UNAVAILABLE,
        ],
        idempotency_header: false,
        query: &[],
        security: Security::Coordinator,
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        operation: Operation::OpenApi,
        summary: "This document",
        request: None,
        answers: &[(200, "the OpenAPI 3.1 document", None)],
        idempotency_header: false,
        query: &[],
        security: Security::Open,
    },
];
