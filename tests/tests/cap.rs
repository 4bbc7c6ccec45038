//! Emergency broadcasts in OASIS CAP 1.2, as public-warning systems send
//! them: a CAP Alert posted by a coordinator reaches everyone named by
//! email and phone in their language, an Update reaches them again with
//! the new message, a Cancel stops the calls; the broadcast exports as a
//! CAP document that the OASIS schema accepts (checked by xmllint against
//! the schema `make deps` installs in tools/schema). Real services, the
//! SMTP and HTTP sinks count what arrived.

use std::{path::PathBuf, process::Command, time::Duration};

use herald_directory::{contacts::Contact, groups::Group};
use herald_proto::v1::{BroadcastState, broadcast_status_reply};
use herald_testkit::{
    TestSystem,
    fixtures::contact,
    system::{COORDINATOR_TOKEN, PUBLISHER_API_KEY},
};
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// An alert in the shape OASIS CAP 1.2 §3 gives (element order and
/// values as the schema has them), in English and French.
fn alert(msg_type: &str, identifier: &str, references: &str, headline: &str) -> String {
    let refs = if references.is_empty() {
        String::new()
    } else {
        format!("\n  <references>{references}</references>")
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>warnings@county.example.org</sender>
  <sent>2026-12-02T09:30:00-00:00</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>{refs}
  <info>
    <language>en</language>
    <category>Fire</category>
    <event>Wildfire</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <headline>{headline}</headline>
    <description>A wildfire is moving towards the north campus.</description>
    <instruction>Leave by the east gate now.</instruction>
    <area><areaDesc>North campus</areaDesc></area>
  </info>
  <info>
    <language>fr</language>
    <category>Fire</category>
    <event>Feu de forêt</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <headline>Feu de forêt : évacuez le campus nord</headline>
    <instruction>Sortez par la porte est maintenant.</instruction>
    <area><areaDesc>Campus nord</areaDesc></area>
  </info>
</alert>
"#
    )
}

fn person(id: &str, n: u32, language: &str) -> Contact {
    let mut c = contact(
        id,
        Some(&format!("{id}@example.org")),
        Some(&format!("+4477009{n:05}")),
        "email",
    );
    c.language = language.into();
    c
}

async fn system() -> TestSystem {
    let mut sys = TestSystem::start_with(|c| {
        c.delivery.provider_account = Some("AC-test".into());
        c.delivery.provider_token = Some("provider-signing-secret".into());
    })
    .await;
    sys.start_broadcast().await;
    sys.add_contacts(&[person("ann", 1, "en"), person("luc", 2, "fr")])
        .await;
    sys.add_groups(&[Group {
        id: "north-campus".into(),
        name: "North campus".into(),
        description: String::new(),
        members: vec!["ann".into(), "luc".into()],
    }])
    .await;
    sys
}

async fn post(sys: &TestSystem, xml: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/broadcasts/cap?group=north-campus",
            sys.http_addr("intake")
        ))
        .header("content-type", "application/cap+xml")
        .body(xml.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn export(sys: &TestSystem, id: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/broadcasts/{id}.cap",
            sys.http_addr("intake")
        ))
        .bearer_auth(COORDINATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/cap+xml");
    r.text().await.unwrap()
}

/// xmllint's verdict on `xml` against the OASIS CAP 1.2 schema.
fn schema_check(xml: &str) -> Result<(), String> {
    let xsd = std::env::var_os("HERALD_KIT_CAP_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/schema/CAP-v1.2.xsd")
        });
    assert!(
        xsd.is_file(),
        "{} missing: run `make deps` (it installs the OASIS schema)",
        xsd.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("alert.xml");
    std::fs::write(&doc, xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&doc)
        .output()
        .expect("xmllint runs (make deps installs libxml2-utils)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

async fn state(sys: &TestSystem, id: &str) -> BroadcastState {
    match sys.broadcast_status(id).await.result {
        Some(broadcast_status_reply::Result::Status(s)) => s.state(),
        other => panic!("no status: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_alert_update_and_cancel_drive_one_broadcast_that_exports_as_valid_cap() {
    let sys = system().await;
    let original = alert(
        "Alert",
        "WF-2026-0042",
        "",
        "Wildfire: leave the north campus",
    );
    // The schema accepts what the test sends, so a refusal below is
    // Herald's doing.
    schema_check(&original).expect("the fixture is valid CAP 1.2");

    let (status, a) = post(&sys, &original, Some(COORDINATOR_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{a}");
    assert_eq!(a["action"], "start");
    assert_eq!(a["coordinator"], "anna");
    assert_eq!(a["capIdentifier"], "WF-2026-0042");
    let id = a["broadcastId"].as_str().unwrap().to_string();
    assert_eq!(
        id,
        herald_cap::broadcast_id("warnings@county.example.org", "WF-2026-0042")
    );

    // Everyone by email and phone, each in their language.
    let mails = sys.smtp.wait_for(2, WAIT).await;
    let calls = sys.http.wait_for("/voice", 2, WAIT).await;
    let subject_to = |who: &str| {
        mails
            .iter()
            .find(|m| m.to[0] == format!("{who}@example.org"))
            .map(|m| m.subject())
            .unwrap()
    };
    assert_eq!(subject_to("ann"), "Wildfire: leave the north campus");
    assert_eq!(subject_to("luc"), "Feu de forêt : évacuez le campus nord");
    let ann = mails.iter().find(|m| m.to[0] == "ann@example.org").unwrap();
    assert!(ann.body().contains("Leave by the east gate now."));
    assert!(ann.body().contains("Area: North campus"));
    let spoken: Vec<String> = calls
        .iter()
        .filter_map(|c| c.field("Twiml").map(str::to_string))
        .collect();
    assert!(
        spoken
            .iter()
            .any(|t| t.contains("Wildfire: leave the north campus. Leave by the east gate now.")),
        "{spoken:?}"
    );
    // The same alert again changes nothing.
    let (status, again) = post(&sys, &original, Some(COORDINATOR_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);

    // The export is the alert, and the schema accepts it.
    let exported = export(&sys, &id).await;
    schema_check(&exported).unwrap_or_else(|e| panic!("{e}\n{exported}"));
    let read = herald_cap::parse(exported.as_bytes()).unwrap();
    assert_eq!(read.identifier, "WF-2026-0042");
    assert_eq!(read.info[0].certainty, "Observed");
    assert_eq!(read.info[0].areas, ["North campus"]);
    assert!(read.note.contains(&id), "{}", read.note);

    // An Update referencing it reaches everyone with the new message.
    let reference = "warnings@county.example.org,WF-2026-0042,2026-12-02T09:30:00-00:00";
    let update = alert(
        "Update",
        "WF-2026-0043",
        reference,
        "Wildfire: use the south gate",
    );
    let (status, u) = post(&sys, &update, Some(COORDINATOR_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{u}");
    assert_eq!(
        (u["action"].as_str(), u["broadcastId"].as_str()),
        (Some("update"), Some(id.as_str()))
    );
    let mails = sys.smtp.wait_for(4, WAIT).await;
    assert!(
        mails
            .iter()
            .any(|m| m.to[0] == "ann@example.org" && m.subject() == "Wildfire: use the south gate"),
        "{:?}",
        mails.iter().map(|m| m.subject()).collect::<Vec<_>>()
    );
    let exported = export(&sys, &id).await;
    schema_check(&exported).unwrap_or_else(|e| panic!("{e}\n{exported}"));
    let read = herald_cap::parse(exported.as_bytes()).unwrap();
    assert_eq!(read.identifier, "WF-2026-0042", "still the original alert");
    assert_eq!(read.info[0].headline, "Wildfire: use the south gate");

    // A Cancel stops it.
    let cancel = alert("Cancel", "WF-2026-0044", reference, "Wildfire: all clear");
    let (status, c) = post(&sys, &cancel, Some(COORDINATOR_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    assert_eq!(c["action"], "cancel");
    let deadline = tokio::time::Instant::now() + WAIT;
    while state(&sys, &id).await != BroadcastState::Cancelled {
        assert!(tokio::time::Instant::now() < deadline, "not cancelled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exported = export(&sys, &id).await;
    schema_check(&exported).unwrap_or_else(|e| panic!("{e}\n{exported}"));
    assert!(exported.contains("cancelled"), "{exported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_alert_without_a_coordinator_or_that_is_not_cap_sends_nothing() {
    let sys = system().await;
    let original = alert("Alert", "WF-2026-0100", "", "Wildfire");
    for token in [None, Some("not-a-token"), Some(PUBLISHER_API_KEY)] {
        let (status, p) = post(&sys, &original, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {p}");
        assert_eq!(p["code"], "ERROR_CODE_UNAUTHORIZED");
    }
    for (xml, field) in [
        (
            original.replace(
                "<severity>Extreme</severity>",
                "<severity>Apocalyptic</severity>",
            ),
            "alert/info[1]/severity",
        ),
        (
            original.replace("<status>Actual</status>", "<status>Test</status>"),
            "alert/status",
        ),
        (alert("Update", "WF-2026-0101", "", "x"), "alert/references"),
        (
            original.replace(
                "<sent>2026-12-02T09:30:00-00:00</sent>",
                "<sent>yesterday</sent>",
            ),
            "alert/sent",
        ),
    ] {
        let (status, p) = post(&sys, &xml, Some(COORDINATOR_TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
        assert_eq!(p["field"], field, "{p}");
    }
    // An update of an alert never broadcast names nothing to update.
    let stray = alert(
        "Update",
        "WF-2026-0102",
        "warnings@county.example.org,WF-1999-0001,2026-12-02T09:30:00-00:00",
        "x",
    );
    let (status, p) = post(&sys, &stray, Some(COORDINATOR_TOKEN)).await;
    assert!(status.is_client_error(), "{status}: {p}");
    sys.wait_until_idle().await;
    assert!(sys.smtp.mails().is_empty());
    assert!(sys.http.requests_to("/voice").is_empty());
}
