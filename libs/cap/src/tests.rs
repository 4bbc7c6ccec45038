use super::*;

/// An alert in the shape OASIS CAP 1.2 (§3.2) gives one, in two languages,
/// with an XML signature block of the kind CAP §3.3.2 allows after the
/// info blocks (another namespace, passed over).
const ALERT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KSTO1055887203</identifier>
  <sender>KSTO@NWS.NOAA.GOV</sender>
  <sent>2026-12-02T09:30:00-00:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>SEVERE THUNDERSTORM</event>
    <responseType>Shelter</responseType>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <senderName>NATIONAL WEATHER SERVICE SACRAMENTO CA</senderName>
    <headline>SEVERE THUNDERSTORM WARNING</headline>
    <description>A storm with hail &amp; damaging winds is moving east at 20 mph.</description>
    <instruction>Take shelter in a sturdy building &lt;now&gt;.</instruction>
    <area>
      <areaDesc>EXTREME NORTH CENTRAL TUOLUMNE COUNTY</areaDesc>
      <polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14</polygon>
    </area>
  </info>
  <info>
    <language>es-US</language>
    <category>Met</category>
    <event>TORMENTA ELÉCTRICA SEVERA</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <headline>AVISO DE TORMENTA ELÉCTRICA SEVERA</headline>
    <instruction>Refúgiese en un edificio sólido.</instruction>
  </info>
  <Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo><Reference URI=""/></SignedInfo></Signature>
</alert>"#;

#[test]
fn an_alert_reads_with_each_language_and_its_areas() {
    let a = parse(ALERT.as_bytes()).unwrap();
    assert_eq!(a.identifier, "KSTO1055887203");
    assert_eq!(a.msg_type, "Alert");
    assert_eq!(a.info.len(), 2);
    let en = &a.info[0];
    assert_eq!(en.language, "en-US", "CAP's default language");
    assert_eq!(en.severity, "Severe");
    assert_eq!(en.urgency, "Immediate");
    assert_eq!(en.certainty, "Observed");
    assert_eq!(
        en.description,
        "A storm with hail & damaging winds is moving east at 20 mph."
    );
    assert_eq!(en.instruction, "Take shelter in a sturdy building <now>.");
    assert_eq!(en.areas, ["EXTREME NORTH CENTRAL TUOLUMNE COUNTY"]);
    assert_eq!(a.info[1].language, "es-US");
    assert_eq!(a.info[1].event, "TORMENTA ELÉCTRICA SEVERA");
    assert_eq!(
        a.broadcast_id(),
        broadcast_id("KSTO@NWS.NOAA.GOV", "KSTO1055887203")
    );
}

#[test]
fn what_is_written_reads_back_the_same() {
    let a = parse(ALERT.as_bytes()).unwrap();
    let again = parse(write(&a).as_bytes()).unwrap();
    assert_eq!(again, a);
}

#[test]
fn an_update_or_cancel_names_the_broadcast_of_the_alert_it_references() {
    let update = ALERT
        .replace("<msgType>Alert</msgType>", "<msgType>Update</msgType>")
        .replace("KSTO1055887203</identifier>", "KSTO1055887299</identifier>")
        .replace(
            "<scope>Public</scope>",
            "<scope>Public</scope>\n  <references>KSTO@NWS.NOAA.GOV,KSTO1055887203,2026-12-02T09:30:00-00:00</references>",
        );
    let u = parse(update.as_bytes()).unwrap();
    assert_eq!(u.references.len(), 1);
    assert_eq!(
        u.broadcast_id(),
        broadcast_id("KSTO@NWS.NOAA.GOV", "KSTO1055887203")
    );
    let id = u.broadcast_id();
    assert!(id.starts_with("cap-") && id.len() == 28, "{id}");
}

#[test]
fn a_document_that_is_not_a_cap_alert_is_refused_naming_the_element() {
    for (xml, element, says) in [
        (
            ALERT.replace("<severity>Severe</severity>\n    <certainty>Observed</certainty>\n    <senderName>", "<severity>Awful</severity>\n    <certainty>Observed</certainty>\n    <senderName>"),
            "alert/info[1]/severity",
            "\"Awful\"",
        ),
        (
            ALERT.replace("<sent>2026-12-02T09:30:00-00:00</sent>", "<sent>2026-12-02T09:30:00Z</sent>"),
            "alert/sent",
            "no Z",
        ),
        (
            ALERT.replace("<msgType>Alert</msgType>", ""),
            "alert/msgType",
            "is required",
        ),
        (
            ALERT.replace("<areaDesc>EXTREME NORTH CENTRAL TUOLUMNE COUNTY</areaDesc>", ""),
            "alert/info[1]/area[1]/areaDesc",
            "is required",
        ),
        (
            ALERT.replace("<category>Met</category>\n    <event>SEVERE", "<event>SEVERE"),
            "alert/info[1]/category",
            "at least one",
        ),
        (
            ALERT.replace("urn:oasis:names:tc:emergency:cap:1.2", "urn:oasis:names:tc:emergency:cap:1.1"),
            "",
            "namespace",
        ),
        (
            ALERT.replace("<scope>Public</scope>", "<scope>Public</scope><references>just-one</references>"),
            "alert/references",
            "sender,identifier,sent",
        ),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE alert [<!ENTITY x \"boom\">]><alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>&x;</identifier></alert>".to_string(),
            "",
            "document type declaration",
        ),
        ("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>".to_string(), "", "XML"),
        ("plain text".to_string(), "", "no element"),
    ] {
        let e = parse(xml.as_bytes()).unwrap_err();
        assert_eq!(e.element, element, "{e}");
        assert!(e.message.contains(says), "{says}: {e}");
    }
}

fn audience() -> herald_proto::v1::Audience {
    herald_proto::v1::Audience {
        group_ids: vec!["site-north".into()],
        ..Default::default()
    }
}

#[test]
fn an_alert_starts_a_broadcast_with_a_message_per_language() {
    let a = parse(ALERT.as_bytes()).unwrap();
    let Command::Start(s) = command(&a, ALERT, "token", audience(), false).unwrap() else {
        panic!()
    };
    assert_eq!(s.broadcast_id, a.broadcast_id());
    assert_eq!(s.severity, herald_proto::v1::Severity::Severe as i32);
    assert_eq!(s.credential, "token");
    assert_eq!(s.default_language, "en-US");
    assert_eq!(s.messages.len(), 2);
    let en = &s.messages[0];
    assert_eq!(en.subject, "SEVERE THUNDERSTORM WARNING");
    assert!(
        en.body.starts_with("A storm with hail & damaging winds"),
        "{}",
        en.body
    );
    assert!(
        en.body
            .contains("Area: EXTREME NORTH CENTRAL TUOLUMNE COUNTY")
    );
    assert_eq!(
        en.speak,
        "SEVERE THUNDERSTORM WARNING. Take shelter in a sturdy building <now>."
    );
    assert_eq!(s.messages[1].language, "es-US");
    assert_eq!(s.cap, ALERT);
}

#[test]
fn an_exercise_says_so_and_a_test_is_not_broadcast() {
    let exercise = ALERT.replace("<status>Actual</status>", "<status>Exercise</status>");
    let a = parse(exercise.as_bytes()).unwrap();
    let Command::Start(s) = command(&a, &exercise, "t", audience(), false).unwrap() else {
        panic!()
    };
    assert!(s.messages[0].subject.starts_with("EXERCISE: "));
    assert!(s.messages[0].speak.starts_with("This is an exercise. "));
    let test = ALERT.replace("<status>Actual</status>", "<status>Test</status>");
    let e = command(
        &parse(test.as_bytes()).unwrap(),
        &test,
        "t",
        audience(),
        false,
    )
    .unwrap_err();
    assert_eq!(e.element, "alert/status");
}

#[test]
fn update_and_cancel_need_the_alert_they_follow_and_an_alert_needs_an_audience() {
    let a = parse(ALERT.as_bytes()).unwrap();
    let e = command(&a, ALERT, "t", Default::default(), false).unwrap_err();
    assert!(e.message.contains("audience"), "{e}");
    for kind in ["Update", "Cancel"] {
        let xml = ALERT.replace(
            "<msgType>Alert</msgType>",
            &format!("<msgType>{kind}</msgType>"),
        );
        let e = command(
            &parse(xml.as_bytes()).unwrap(),
            &xml,
            "t",
            audience(),
            false,
        )
        .unwrap_err();
        assert_eq!(e.element, "alert/references", "{kind}");
        let with_ref = xml.replace(
            "<scope>Public</scope>",
            "<scope>Public</scope><references>KSTO@NWS.NOAA.GOV,KSTO1055887203,2026-12-02T09:30:00-00:00</references>",
        );
        let c = command(
            &parse(with_ref.as_bytes()).unwrap(),
            &with_ref,
            "t",
            audience(),
            false,
        )
        .unwrap();
        assert_eq!(c.action(), kind.to_ascii_lowercase());
        let id = match c {
            Command::Update(u) => u.broadcast_id,
            Command::Cancel(c) => c.broadcast_id,
            Command::Start(_) => panic!(),
        };
        assert_eq!(id, a.broadcast_id());
    }
    let ack = ALERT.replace("<msgType>Alert</msgType>", "<msgType>Ack</msgType>");
    let e = command(
        &parse(ack.as_bytes()).unwrap(),
        &ack,
        "t",
        audience(),
        false,
    )
    .unwrap_err();
    assert_eq!(e.element, "alert/msgType");
}

#[test]
fn a_broadcast_exports_as_its_alert_with_a_note_of_where_it_stands() {
    use herald_proto::v1::{BroadcastState, BroadcastStatus};
    let status = BroadcastStatus {
        broadcast_id: "cap-x".into(),
        state: BroadcastState::Active as i32,
        recipients: 40,
        confirmed: 12,
        severity: herald_proto::v1::Severity::Severe as i32,
        ..Default::default()
    };
    let kept = parse(export(&status, Some(ALERT)).as_bytes()).unwrap();
    assert_eq!(kept.identifier, "KSTO1055887203");
    assert_eq!(
        kept.note,
        "Herald broadcast cap-x: active; 12 of 40 recipients confirmed"
    );
    assert_eq!(kept.info.len(), 2);
    let made = parse(export(&status, None).as_bytes()).unwrap();
    assert_eq!(made.identifier, "cap-x");
    assert_eq!(made.info[0].severity, "Severe");
    assert_eq!(made.scope, "Private");
}
