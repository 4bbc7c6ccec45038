//! Intake's HTTP/JSON API as another system uses it: JSON in the proto3
//! mapping with an API key, answered with the notification id or with
//! RFC 9457 problem details naming the field; one idempotency key across
//! HTTP and NATS; case events, cancellation and the trail; and an OpenAPI
//! document that lists exactly the routes the server has. Each test runs
//! the real services and counts what reaches the SMTP sink.

use std::time::Duration;

use herald_proto::v1::{AuditStep, IntakeReply, intake_reply};
use herald_testkit::{
    TestSystem,
    cases::{client, staff},
    fixtures::{contact, inquiry},
    system::{GRPC_KEY, PUBLISHER_API_KEY},
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn of(sys: &TestSystem) -> Api {
        Api {
            base: format!("http://{}", sys.http_addr("intake")),
            http: reqwest::Client::new(),
        }
    }

    fn post(&self, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.post(format!("{}{path}", self.base));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    fn get(&self, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.get(format!("{}{path}", self.base));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn notify(&self, body: &Value) -> Response {
        self.post("/v1/notifications", Some(PUBLISHER_API_KEY))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// An inquiry for `contact` as a calling system would write it.
fn inquiry_json(key: &str, contact: &str, reference: &str) -> Value {
    json!({
        "idempotencyKey": key,
        "communicationType": "COMMUNICATION_TYPE_INITIAL_INQUIRY",
        "recipients": [{"contactId": contact}],
        "templateId": "inquiry_received",
        "params": {"reference": reference},
        "requester": "webshop",
        "responsibleStaff": "frontline-7",
    })
}

/// The problem-details body of a refusal, checked for its media type and
/// its standard members.
async fn problem(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{:?}",
        r.headers()
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status.as_u16(), "{v}");
    for member in ["type", "title", "detail", "code"] {
        assert!(v[member].is_string(), "{member}: {v}");
    }
    v
}

fn accepted_id(reply: IntakeReply) -> String {
    match reply.result {
        Some(intake_reply::Result::Accepted(a)) => a.notification_id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

async fn with_ivy(sys: &TestSystem) {
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_notification_over_http_arrives_as_an_email_and_its_trail_reads_back() {
    let sys = TestSystem::start().await;
    with_ivy(&sys).await;
    let api = Api::of(&sys);

    let r = api.notify(&inquiry_json("http-1", "ivy", "INQ-H1")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let id = body["notificationId"].as_str().unwrap().to_string();
    assert_eq!(body["duplicate"], false);
    assert_eq!(location, format!("/v1/notifications/{id}/trail"));

    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    let mails = sys.smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), "We have received your inquiry INQ-H1");
    assert_eq!(mails[0].to, ["ivy@example.org"]);

    // The trail, in JSON names, names the calling system.
    let r = api
        .get(&location, Some(PUBLISHER_API_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let trail: Value = r.json().await.unwrap();
    let records = trail["records"].as_array().unwrap();
    let steps: Vec<&str> = records
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps.first(), Some(&"AUDIT_STEP_ACCEPTED"), "{steps:?}");
    assert!(steps.contains(&"AUDIT_STEP_SENT"), "{steps:?}");
    assert_eq!(records[0]["caller"], "publisher");
    assert_eq!(records[0]["notificationId"], id);

    // Another system learns nothing of it, not even that it exists.
    let r = api.get(&location, Some(GRPC_KEY)).send().await.unwrap();
    let p = problem(r, StatusCode::NOT_FOUND).await;
    assert_eq!(p["code"], "ERROR_CODE_NOT_FOUND");
    let r = api
        .get(
            "/v1/notifications/ntf_nothing/trail",
            Some(PUBLISHER_API_KEY),
        )
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND).await;
    let r = api.get(&location, None).send().await.unwrap();
    problem(r, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_gets_problem_details_naming_the_field_and_sends_nothing() {
    let sys = TestSystem::start().await;
    with_ivy(&sys).await;
    let api = Api::of(&sys);

    let mut unknown = inquiry_json("bad-1", "nobody", "INQ-B1");
    unknown["recipients"] = json!([{"contactId": "ivy"}, {"contactId": "nobody"}]);
    let mut bad_email = inquiry_json("bad-2", "ivy", "INQ-B2");
    bad_email["recipients"] =
        json!([{"inline": {"email": "not-an-address", "consentEmail": true}}]);
    let mut wrong_type = inquiry_json("bad-3", "ivy", "INQ-B3");
    wrong_type["templateId"] = json!(42);
    let mut unknown_field = inquiry_json("bad-4", "ivy", "INQ-B4");
    unknown_field["templateName"] = json!("inquiry_received");
    let mut bad_enum = inquiry_json("bad-5", "ivy", "INQ-B5");
    bad_enum["priority"] = json!("PRIORITY_WHENEVER");
    let mut no_template = inquiry_json("bad-6", "ivy", "INQ-B6");
    no_template["templateId"] = json!("no_such_template");

    for (body, status, code, field) in [
        (
            unknown,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ERROR_CODE_UNKNOWN_CONTACT",
            "recipients[1].contactId",
        ),
        (
            bad_email,
            StatusCode::BAD_REQUEST,
            "ERROR_CODE_INVALID_ARGUMENT",
            "recipients[0].inline.email",
        ),
        (
            wrong_type,
            StatusCode::BAD_REQUEST,
            "ERROR_CODE_UNDECODABLE",
            "templateId",
        ),
        (
            unknown_field,
            StatusCode::BAD_REQUEST,
            "ERROR_CODE_UNDECODABLE",
            "templateName",
        ),
        (
            bad_enum,
            StatusCode::BAD_REQUEST,
            "ERROR_CODE_UNDECODABLE",
            "priority",
        ),
        (
            no_template,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ERROR_CODE_UNKNOWN_TEMPLATE",
            "templateId",
        ),
    ] {
        let p = problem(api.notify(&body).await, status).await;
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["field"], field, "{p}");
        assert!(p["detail"].as_str().unwrap().starts_with(field), "{p}");
    }

    // A key in the header that contradicts the body's.
    let r = api
        .post("/v1/notifications", Some(PUBLISHER_API_KEY))
        .header("Idempotency-Key", "another")
        .json(&inquiry_json("bad-7", "ivy", "INQ-B7"))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(p["field"], "idempotencyKey");

    // Not JSON, too long, no key, a wrong key.
    let r = api
        .post("/v1/notifications", Some(PUBLISHER_API_KEY))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let mut huge = inquiry_json("bad-8", "ivy", "INQ-B8");
    huge["params"]["reference"] = json!("x".repeat(70 * 1024));
    let p = problem(api.notify(&huge).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(p["code"], "ERROR_CODE_PAYLOAD_TOO_LARGE");
    let r = api
        .post("/v1/notifications", None)
        .json(&inquiry_json("bad-9", "ivy", "INQ-B9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"herald\"");
    let p = problem(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(p["code"], "ERROR_CODE_UNAUTHORIZED");
    assert_eq!(p["field"], "authorization");
    let r = api
        .post("/v1/notifications", Some("not-a-key"))
        .json(&inquiry_json("bad-10", "ivy", "INQ-B10"))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::UNAUTHORIZED).await;
    assert!(!p["detail"].as_str().unwrap().contains("not-a-key"), "{p}");

    // Then one good request: after it, the sink holds all the refused
    // ones could have caused, and only its own mail may be there.
    let r = api.notify(&inquiry_json("good-1", "ivy", "INQ-GOOD")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["notificationId"]
        .as_str()
        .unwrap()
        .to_string();
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    sys.wait_until_idle().await;
    let subjects: Vec<String> = sys.smtp.mails().iter().map(|m| m.subject()).collect();
    assert_eq!(subjects, ["We have received your inquiry INQ-GOOD"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_over_http_and_nats_sends_once() {
    let sys = TestSystem::start().await;
    with_ivy(&sys).await;
    let api = Api::of(&sys);

    // NATS first, then HTTP with the key in the header only.
    let over_nats = accepted_id(sys.notify(&inquiry("both-1", "ivy", "INQ-N1")).await);
    let mut same = inquiry_json("", "ivy", "INQ-N1");
    same["requester"] = json!("crm");
    same.as_object_mut().unwrap().remove("idempotencyKey");
    let r = api
        .post("/v1/notifications", Some(PUBLISHER_API_KEY))
        .header("Idempotency-Key", "both-1")
        .json(&same)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["notificationId"], over_nats);
    assert_eq!(body["duplicate"], true);

    // HTTP first, then NATS.
    let mut first = inquiry_json("both-2", "ivy", "INQ-N2");
    first["requester"] = json!("crm");
    let r = api.notify(&first).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let over_http = r.json::<Value>().await.unwrap()["notificationId"]
        .as_str()
        .unwrap()
        .to_string();
    let again = sys.notify(&inquiry("both-2", "ivy", "INQ-N2")).await;
    assert_eq!(accepted_id(again), over_http);

    sys.wait_for_step(&over_nats, AuditStep::Sent, WAIT).await;
    sys.wait_for_step(&over_http, AuditStep::Sent, WAIT).await;
    sys.wait_until_idle().await;
    let mut subjects: Vec<String> = sys.smtp.mails().iter().map(|m| m.subject()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "We have received your inquiry INQ-N1",
            "We have received your inquiry INQ-N2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_events_and_cancellations_go_through_http() {
    let mut sys = TestSystem::start().await;
    sys.start_sla().await;
    sys.start_escalation().await;
    sys.add_contacts(&staff()).await;
    sys.add_contacts(&[client(1)]).await;
    let api = Api::of(&sys);

    let opened = json!({
        "kind": "CASE_EVENT_KIND_OPENED",
        "actor": "helpdesk",
        "details": {
            "channel": "CASE_CHANNEL_EMAIL",
            "priority": "PRIORITY_NORMAL",
            "clientContactId": "client-1",
            "responsibleStaff": "fl-sam",
            "team": "support",
            "reference": "REF-H1",
        },
    });
    let send = |body: Value, case: &str, key: Option<&str>| {
        let mut r = api.post(&format!("/v1/cases/{case}/events"), Some(PUBLISHER_API_KEY));
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.json(&body).send()
    };
    let r = send(opened.clone(), "case-h1", Some("open")).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["caseId"], "case-h1");
    assert_eq!(a["eventId"], "open");
    assert_eq!(a["duplicate"], false);
    // The same event again is stored once.
    let r = send(opened.clone(), "case-h1", Some("open")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    // A body naming another case than the path.
    let mut other = opened.clone();
    other["caseId"] = json!("case-h2");
    other["eventId"] = json!("open");
    let p = problem(
        send(other, "case-h1", None).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["field"], "caseId");
    // A check of the event itself, named by its JSON path.
    let mut no_client = opened.clone();
    no_client["details"]
        .as_object_mut()
        .unwrap()
        .remove("clientContactId");
    let p = problem(
        send(no_client, "case-h3", Some("open")).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["field"], "details.clientContactId", "{p}");

    let trail = sys
        .wait_for_case_steps("case-h1", AuditStep::CaseEvent, 1, WAIT)
        .await;
    let opened_by: Vec<&str> = trail
        .iter()
        .filter(|r| r.step() == AuditStep::CaseEvent)
        .map(|r| r.caller.as_str())
        .collect();
    assert_eq!(opened_by, ["publisher"]);

    // A cancel key, cancelled twice: the second says it already was.
    for first in [true, false] {
        let r = api
            .post("/v1/cancel", Some(PUBLISHER_API_KEY))
            .json(&json!({"cancelKey": "order-77", "reason": "order withdrawn"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"cancelled": first})
        );
    }
    let p = problem(
        api.post("/v1/cancel", Some(PUBLISHER_API_KEY))
            .json(&json!({"cancelKey": "has space"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["field"], "cancelKey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let sys = TestSystem::start().await;
    let api = Api::of(&sys);
    let r = api.get("/openapi.json", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // Every documented operation is routed: never answered "no route".
    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in ops.as_object().unwrap() {
            operations += 1;
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = api
                .http
                .request(method.clone(), format!("{}{concrete}", api.base))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            // Without credentials: refused for them (401), or for the
            // empty body where the credential is in it (PagerDuty's 400),
            // or served (the document itself).
            let expected = match op["operationId"].as_str().unwrap() {
                "openApi" => StatusCode::OK,
                "pagerDutyEnqueue" => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            assert_eq!(r.status(), expected, "{method} {path}");
        }
    }
    assert_eq!(operations, 10);

    // And what is not documented is not there.
    for (method, path) in [
        ("POST", "/v1/notification"),
        ("GET", "/v1/notifications"),
        ("POST", "/v2/notifications"),
        ("GET", "/v1/cases/x1"),
    ] {
        let r = api
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", api.base),
            )
            .bearer_auth(PUBLISHER_API_KEY)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(
                r.status(),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{method} {path}: {}",
            r.status()
        );
        assert!(
            doc["paths"]
                .get(path)
                .and_then(|p| p.get(method.to_lowercase()))
                .is_none()
        );
    }
}
