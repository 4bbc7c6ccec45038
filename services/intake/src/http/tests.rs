use std::collections::BTreeSet;

use super::*;

fn doc() -> serde_json::Value {
    openapi::document(&Schema::load().unwrap())
}

/// Every `$ref` in `v`.
fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_is_built_from() {
    let d = doc();
    assert_eq!(d["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = d["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    let expected: BTreeSet<(String, String)> = [
        ("POST", "/v1/notifications"),
        ("POST", "/v1/cases/{case_id}/events"),
        ("POST", "/v1/cancel"),
        ("GET", "/v1/notifications/{notification_id}/trail"),
        ("GET", "/v1/trail"),
        ("POST", "/v1/integrations/alertmanager/{integration}"),
        ("POST", "/v2/enqueue"),
        ("POST", "/v1/broadcasts/cap"),
        ("GET", "/v1/broadcasts/{broadcast_id}.cap"),
        ("GET", "/openapi.json"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(routed, expected);
    // The router takes the same table without complaint.
    let ids: BTreeSet<&str> = ROUTES.iter().map(|r| r.operation.id()).collect();
    assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
}

#[test]
fn every_reference_in_the_document_resolves() {
    let d = doc();
    let mut found = Vec::new();
    refs(&d, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            d["components"]["schemas"].get(name).is_some(),
            "{r} is not in components.schemas"
        );
    }
}

#[test]
fn the_request_schema_has_json_names_enums_and_comments() {
    let d = doc();
    let req = &d["components"]["schemas"]["herald.v1.NotificationRequest"];
    let props = req["properties"].as_object().unwrap();
    for name in [
        "idempotencyKey",
        "communicationType",
        "recipients",
        "templateId",
        "params",
    ] {
        assert!(props.contains_key(name), "{name}: {props:?}");
    }
    assert!(!props.contains_key("template_id"));
    assert_eq!(req["additionalProperties"], false);
    let types = props["communicationType"]["enum"].as_array().unwrap();
    assert!(types.contains(&"COMMUNICATION_TYPE_INITIAL_INQUIRY".into()));
    assert_eq!(props["params"]["type"], "object");
    assert_eq!(
        props["recipients"]["items"]["$ref"],
        "#/components/schemas/herald.v1.Recipient"
    );
    assert!(
        props["idempotencyKey"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("retried request"),
        "{:?}",
        props["idempotencyKey"]
    );
    let recipient = &d["components"]["schemas"]["herald.v1.Recipient"]["properties"];
    assert!(
        recipient["contactId"]["description"]
            .as_str()
            .unwrap()
            .contains("At most one of `contactId`, `inline`")
    );
    let event = &d["components"]["schemas"]["herald.v1.CaseEvent"]["properties"];
    assert_eq!(event["occurredAt"]["format"], "date-time");
}

#[test]
fn path_parameters_are_declared() {
    let d = doc();
    let op = &d["paths"]["/v1/cases/{case_id}/events"]["post"];
    let names: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["case_id", "Idempotency-Key"]);
    assert_eq!(
        d["paths"]["/openapi.json"]["get"]["security"],
        serde_json::json!([])
    );
}

#[test]
fn an_idempotency_header_fills_or_must_match_the_body() {
    let mut h = HeaderMap::new();
    assert_eq!(idempotency_header(&h).unwrap(), None);
    h.insert("idempotency-key", HeaderValue::from_static("\"k-1\""));
    assert_eq!(idempotency_header(&h).unwrap().as_deref(), Some("k-1"));
    h.insert("idempotency-key", HeaderValue::from_static(" k-2 "));
    assert_eq!(idempotency_header(&h).unwrap().as_deref(), Some("k-2"));

    let mut key = String::new();
    agree(&mut key, "idempotency_key", Some("k".into()), "header").unwrap();
    assert_eq!(key, "k");
    agree(&mut key, "idempotency_key", Some("k".into()), "header").unwrap();
    agree(&mut key, "idempotency_key", None, "header").unwrap();
    let r = agree(&mut key, "idempotency_key", Some("other".into()), "header").unwrap_err();
    assert_eq!(r.field, "idempotency_key");
    assert_eq!(key, "k");
}

#[test]
fn a_parameter_with_a_suffix_is_routed_bare() {
    assert_eq!(
        routes::router_path("/v1/broadcasts/{broadcast_id}.cap"),
        "/v1/broadcasts/{broadcast_id}"
    );
    assert_eq!(
        routes::router_path("/v1/cases/{case_id}/events"),
        "/v1/cases/{case_id}/events"
    );
    let d = doc();
    let names: Vec<&str> = d["paths"]["/v1/broadcasts/{broadcast_id}.cap"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broadcast_id"]);
}

#[test]
fn only_plain_ids_reach_a_subject_filter() {
    assert!(plausible_id("ntf_01JD5V6QX7M3ZK2Q8W9E4R5T6Y"));
    for bad in ["", "a.b", "*", ">", "ntf_1 2", &"x".repeat(65)] {
        assert!(!plausible_id(bad), "{bad}");
    }
}
