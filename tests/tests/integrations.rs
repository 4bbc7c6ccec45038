//! Monitoring and incident tools reach Herald with what they already send:
//! the real Alertmanager's webhook, and PagerDuty Events v2 events. An
//! alert opens one case (however often the tool repeats itself), tells the
//! integration's recipients, escalates as its priority says, and is
//! acknowledged and resolved by the tool's own events. Each test runs the
//! real services with sla and escalation and counts what reaches the SMTP
//! sink.

use std::time::Duration;

use herald_config::{Config, Integration, IntegrationKind};
use herald_directory::credentials::sha256_hex;
use herald_proto::v1::{AuditRecord, AuditStep, CaseEventKind};
use herald_testkit::{
    TestSystem,
    alertmanager::Alertmanager,
    cases::{TEAM, client, fast_policies, staff},
    fixtures::contact,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const AM_KEY: &str = "alertmanager-test-key-2f8c";
/// 32 characters, as PagerDuty's integration keys are.
const ROUTING_KEY: &str = "9f3c1e0b7a5d4c2e8b6a1f0d3c5e7a9b";
const ONCALL: &str = "oncall@staff.example.org";
const FRONTLINE: &str = "sam@staff.example.org";
const TEAM_LEAD: &str = "kim@staff.example.org";

fn integration(name: &str, kind: IntegrationKind, key: &str) -> Integration {
    toml::from_str::<Integration>(&format!(
        r#"
        name = "{name}"
        kind = "{}"
        key_sha256 = ["{}"]
        team = "{TEAM}"
        responsible_staff = "fl-sam"
        client = "client-0"
        recipients = ["oncall"]
        resolved_template = "incident_resolved"
        "#,
        kind.name(),
        sha256_hex(key)
    ))
    .expect("an integration")
}

/// Herald with both integrations, fast escalation levels of `level`, and
/// the staff, a client and the on-call contact in the directory.
async fn system(level: Duration) -> (TestSystem, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = dir.path().to_path_buf();
    let mut sys = TestSystem::start_with(|cfg: &mut Config| {
        fast_policies(cfg, &path, level);
        cfg.intake.integrations = vec![
            integration("prod-alerts", IntegrationKind::Alertmanager, AM_KEY),
            integration("incidents", IntegrationKind::Pagerduty, ROUTING_KEY),
        ];
    })
    .await;
    sys.start_sla().await;
    sys.start_escalation().await;
    let mut people = staff();
    people.push(client(0));
    people.push(contact("oncall", Some(ONCALL), None, "email"));
    sys.add_contacts(&people).await;
    (sys, dir)
}

fn base(sys: &TestSystem) -> String {
    format!("http://{}", sys.http_addr("intake"))
}

/// Every record of the cases `integration` opened, by case.
async fn cases_of(sys: &TestSystem, integration: &str) -> Vec<(String, Vec<AuditRecord>)> {
    let all = herald_runtime::audit::read_trail(
        &sys.bus().await,
        &herald_proto::subjects::audit_everything(),
    )
    .await
    .expect("the trail reads");
    let prefix = format!("inc-{integration}-");
    let mut cases: Vec<String> = all
        .iter()
        .filter(|r| r.case_id.starts_with(&prefix))
        .map(|r| r.case_id.clone())
        .collect();
    cases.dedup();
    cases.sort();
    cases.dedup();
    cases
        .into_iter()
        .map(|c| {
            let records = all.iter().filter(|r| r.case_id == c).cloned().collect();
            (c, records)
        })
        .collect()
}

/// The case events of `records`, by kind name, with their caller.
fn events(records: &[AuditRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r.step() == AuditStep::CaseEvent)
        .map(|r| (r.summary.clone(), r.caller.clone()))
        .collect()
}

async fn wait_for_event(sys: &TestSystem, case: &str, kind: CaseEventKind, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let trail = sys.case_trail(case).await;
        let seen = events(&trail)
            .iter()
            .filter(|(k, _)| k.contains(kind.name()) || k.contains(&kind.name().to_lowercase()))
            .count();
        if seen >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind:?} event on {case}: {:#?}",
            events(&trail)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_alertmanager_opens_a_case_tells_its_recipients_and_resolves_it() {
    let (sys, _dir) = system(Duration::from_secs(60)).await;
    let hook = format!("{}/v1/integrations/alertmanager/prod-alerts", base(&sys));
    let am = Alertmanager::start(&hook, AM_KEY).await;

    let labels = json!({"alertname": "DiskFull", "instance": "db-1", "severity": "critical"});
    let annotations = json!({"summary": "Disk 99% full on db-1"});
    am.post(labels.clone(), annotations.clone(), false).await;

    // The on-call contact is told, and the critical case escalates at once
    // to the responsible staff member.
    let told = sys.smtp.wait_for_mail_to(ONCALL, "DiskFull", WAIT).await;
    assert_eq!(told.subject(), "Incident DiskFull: Disk 99% full on db-1");
    sys.smtp
        .wait_for_mail_to(FRONTLINE, "Escalated to you", WAIT)
        .await;
    let cases = cases_of(&sys, "prod-alerts").await;
    assert_eq!(cases.len(), 1, "{cases:#?}");
    let case = cases[0].0.clone();

    // Alertmanager repeating itself (the same payload again) changes
    // nothing: same case, nothing sent again.
    let repeat = json!({
        "version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "status": "firing",
        "receiver": "herald", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": labels, "commonAnnotations": annotations,
        "alerts": [{"status": "firing", "labels": labels, "annotations": annotations}],
    });
    for _ in 0..2 {
        let r = reqwest::Client::new()
            .post(&hook)
            .bearer_auth(AM_KEY)
            .json(&repeat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"outcome": "already_open", "caseId": case}));
    }

    // Resolved in Alertmanager: the case resolves and the recipients hear.
    am.post(labels.clone(), annotations.clone(), true).await;
    let resolved = sys.smtp.wait_for_mail_to(ONCALL, "Resolved", WAIT).await;
    assert_eq!(resolved.subject(), "Resolved: incident DiskFull");
    wait_for_event(&sys, &case, CaseEventKind::Resolved, 1).await;
    sys.wait_until_idle().await;

    let to_oncall: Vec<String> = sys
        .smtp
        .mails()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == ONCALL))
        .map(|m| m.subject())
        .collect();
    assert_eq!(
        to_oncall,
        [
            "Incident DiskFull: Disk 99% full on db-1",
            "Resolved: incident DiskFull"
        ]
    );
    let trail = sys.case_trail(&case).await;
    let callers: Vec<String> = events(&trail).into_iter().map(|(_, c)| c).collect();
    assert!(
        callers.iter().all(|c| c == "prod-alerts"),
        "every event is the integration's: {callers:?}"
    );
    assert_eq!(cases_of(&sys, "prod-alerts").await.len(), 1);

    // The same alert firing again later is a new incident: a new case.
    am.post(labels, annotations, false).await;
    sys.smtp
        .wait_for_mail_to(ONCALL, "Incident DiskFull", WAIT)
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while cases_of(&sys, "prod-alerts").await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second case");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(am);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_without_the_integrations_key_is_refused_and_sends_nothing() {
    let (sys, _dir) = system(Duration::from_secs(60)).await;
    let body = json!({
        "version": "4", "groupKey": "g", "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "X", "severity": "critical"}}],
    });
    let http = reqwest::Client::new();
    for (path, key) in [
        ("/v1/integrations/alertmanager/prod-alerts", None),
        ("/v1/integrations/alertmanager/prod-alerts", Some("wrong")),
        (
            "/v1/integrations/alertmanager/prod-alerts",
            Some(ROUTING_KEY),
        ),
        ("/v1/integrations/alertmanager/incidents", Some(ROUTING_KEY)),
        ("/v1/integrations/alertmanager/nobody", Some(AM_KEY)),
    ] {
        let mut r = http.post(format!("{}{path}", base(&sys))).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} {key:?}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], "ERROR_CODE_UNAUTHORIZED");
    }
    // A payload Herald cannot read names the field.
    let r = http
        .post(format!(
            "{}/v1/integrations/alertmanager/prod-alerts",
            base(&sys)
        ))
        .bearer_auth(AM_KEY)
        .json(&json!({"version": "3", "groupKey": "g", "status": "firing", "alerts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "version");
    sys.wait_until_idle().await;
    assert!(sys.smtp.mails().is_empty());
    assert!(cases_of(&sys, "prod-alerts").await.is_empty());
}

async fn enqueue(sys: &TestSystem, event: &Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v2/enqueue", base(sys)))
        .json(event)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

fn trigger(dedup_key: Option<&str>) -> Value {
    let mut e = json!({
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {
            "summary": "API latency p99 above 2s",
            "source": "api-gateway",
            "severity": "critical",
            "component": "checkout",
            "custom_details": {"p99": "2.4s"},
        },
        "client": "Synthetic Monitoring",
        "links": [{"href": "https://monitoring.example.org/d/api", "text": "dashboard"}],
    });
    if let Some(k) = dedup_key {
        e["dedup_key"] = json!(k);
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_events_trigger_acknowledge_and_resolve_one_case() {
    let level = Duration::from_secs(2);
    let (sys, _dir) = system(level).await;

    let (status, body) = enqueue(&sys, &trigger(Some("api/latency"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed", "dedup_key": "api/latency"})
    );
    let told = sys
        .smtp
        .wait_for_mail_to(ONCALL, "api-gateway/checkout", WAIT)
        .await;
    assert_eq!(
        told.subject(),
        "Incident api-gateway/checkout: API latency p99 above 2s"
    );
    // Critical: the responsible staff member is paged at once.
    sys.smtp
        .wait_for_mail_to(FRONTLINE, "Escalated to you", WAIT)
        .await;
    // The same trigger again is the same case and sends nothing new.
    let (status, body) = enqueue(&sys, &trigger(Some("api/latency"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cases = cases_of(&sys, "incidents").await;
    assert_eq!(cases.len(), 1, "{cases:#?}");
    let case = cases[0].0.clone();

    // Acknowledged: the escalation stops before the team lead's level.
    let ack = json!({"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": "api/latency"});
    let (status, body) = enqueue(&sys, &ack).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["dedup_key"], "api/latency");
    wait_for_event(&sys, &case, CaseEventKind::Acknowledged, 1).await;
    tokio::time::sleep(level * 3).await;
    sys.wait_until_idle().await;
    assert!(
        sys.smtp.mails_to(TEAM_LEAD, "").is_empty(),
        "nothing reaches the next level after the acknowledgement"
    );

    let resolve =
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "api/latency"});
    let (status, _) = enqueue(&sys, &resolve).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for_event(&sys, &case, CaseEventKind::Resolved, 1).await;
    sys.smtp
        .wait_for_mail_to(ONCALL, "Resolved: incident api-gateway/checkout", WAIT)
        .await;
    // Acting on a key with no case is accepted and does nothing, as
    // PagerDuty does.
    let (status, _) = enqueue(&sys, &resolve).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let trail = sys.case_trail(&case).await;
    assert!(
        events(&trail)
            .iter()
            .all(|(_, caller)| caller == "incidents"),
        "{:#?}",
        events(&trail)
    );

    // A trigger without a dedup key gets one made up, 32 hex digits, that
    // later events use.
    let (status, body) = enqueue(&sys, &trigger(None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let made = body["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(made.len(), 32);
    let (status, _) = enqueue(
        &sys,
        &json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": made}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cases = cases_of(&sys, "incidents").await;
        if cases.len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{cases:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pagerduty_events_get_the_documented_400_and_send_nothing() {
    let (sys, _dir) = system(Duration::from_secs(60)).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v2/enqueue", base(&sys)))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["JSON parse error"]})
    );
    let mut no_summary = trigger(Some("k"));
    no_summary["payload"]
        .as_object_mut()
        .unwrap()
        .remove("summary");
    no_summary["payload"]["severity"] = json!("sev1");
    let mut unknown_key = trigger(Some("k"));
    unknown_key["routing_key"] = json!("00000000000000000000000000000000");
    for (event, errors) in [
        (
            no_summary,
            json!([
                "'payload.summary' is missing or blank",
                "'payload.severity' is \"sev1\"; it must be one of critical, error, warning, info"
            ]),
        ),
        (
            json!({"routing_key": ROUTING_KEY, "event_action": "acknowledge"}),
            json!(["'dedup_key' is required to acknowledge or resolve"]),
        ),
        (
            json!({"event_action": "trigger", "payload": {"summary": "s", "source": "x", "severity": "info"}}),
            json!(["'routing_key' is missing or blank"]),
        ),
        (
            unknown_key,
            json!(["'routing_key' is not the key of one of this Herald's integrations"]),
        ),
    ] {
        let (status, body) = enqueue(&sys, &event).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        );
    }
    sys.wait_until_idle().await;
    assert!(sys.smtp.mails().is_empty());
    assert!(cases_of(&sys, "incidents").await.is_empty());
}
