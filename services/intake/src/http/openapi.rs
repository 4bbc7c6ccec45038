//! The OpenAPI 3.1 document of the HTTP API, made from the route table the
//! router is built from and from the compiled proto schema, so the
//! document cannot describe a route or a field the server does not have.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::{
    json::Schema,
    routes::{Body, Operation, ROUTES, Security},
};

/// Messages the JSON mapping writes as a plain string, not an object.
fn well_known(name: &str) -> Option<Value> {
    match name {
        "google.protobuf.Timestamp" => Some(json!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, e.g. 2026-12-02T09:30:00Z",
        })),
        "google.protobuf.Duration" => Some(json!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
            "description": "seconds with an `s` suffix, e.g. 1.5s",
        })),
        _ => None,
    }
}

/// The whole document.
pub(crate) fn document(schema: &Schema) -> Value {
    let comments = Comments::of(schema);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut wanted = BTreeSet::new();
    for r in ROUTES {
        let mut responses = Map::new();
        for (status, what, body) in r.answers {
            let (media, schema_ref) = match body {
                Some(b @ Body::Shape("CapAlert")) => {
                    ("application/cap+xml", body_schema(b, &mut wanted))
                }
                Some(b) => ("application/json", body_schema(b, &mut wanted)),
                // Only the document itself answers success without a
                // message of the schema.
                None if *status < 300 => ("application/json", json!({"type": "object"})),
                None => (
                    "application/problem+json",
                    json!({"$ref": "#/components/schemas/Problem"}),
                ),
            };
            let mut content = json!({media: {"schema": schema_ref}});
            if r.operation == Operation::Trail && *status == 200 {
                content["text/csv"] = json!({"schema": {
                    "type": "string",
                    "description": format!("with format=csv or Accept: text/csv; the header row is {}", herald_runtime::trail_export::HEADER),
                }});
            }
            responses.insert(
                status.to_string(),
                json!({"description": what, "content": content}),
            );
        }
        let mut op = json!({
            "operationId": r.operation.id(),
            "summary": r.summary,
            "responses": responses,
        });
        let mut parameters: Vec<Value> = path_parameters(r.path)
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        parameters.extend(r.query.iter().map(|(name, what)| {
            json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}})
        }));
        if r.idempotency_header {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "The request's idempotency key (for a case event, its event id) when the body does not name one; if both are given they must agree. A retry with the same key is answered with the first result and sends nothing again.",
                "schema": {"type": "string"},
            }));
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(b) = &r.request {
            let media = if *b == Body::Shape("CapAlert") {
                "application/cap+xml"
            } else {
                "application/json"
            };
            op["requestBody"] = json!({
                "required": true,
                "content": {media: {"schema": body_schema(b, &mut wanted)}},
            });
        }
        match r.security {
            Security::ApiKey => {}
            Security::IntegrationKey => op["security"] = json!([{"integrationKey": []}]),
            Security::Coordinator => op["security"] = json!([{"coordinatorToken": []}]),
            Security::RoutingKey | Security::Open => op["security"] = json!([]),
        }
        paths
            .entry(r.path.to_string())
            .or_default()
            .insert(r.method.to_ascii_lowercase(), op);
    }
    let mut schemas = Map::new();
    schemas.insert("Problem".into(), problem_schema());
    for (name, shape) in shapes() {
        schemas.insert(name.into(), shape);
    }
    for m in reachable(schema, wanted) {
        schemas.insert(m.full_name().to_string(), message_schema(&m, &comments));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Herald intake",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Notifications, case events and cancellations from other systems, in the proto3 JSON mapping of herald.v1 (the same messages as over NATS and gRPC). Every refusal is RFC 9457 problem details naming the field.",
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The calling system's API key (`herald apikey create --system <name>`), as `Authorization: Bearer <key>`.",
                },
                "coordinatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A broadcast coordinator's token (`herald broadcast credential --id <name>`), as `Authorization: Bearer <token>`.",
                },
                "integrationKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The key of the integration the path names (`[[intake.integrations]]`), as `Authorization: Bearer <key>`.",
                },
            },
            "schemas": schemas,
        },
    })
}

/// The schema of a body, noting the proto messages the document must
/// describe.
fn body_schema(body: &Body, wanted: &mut BTreeSet<String>) -> Value {
    match body {
        Body::Proto(m) => {
            wanted.insert(m.to_string());
            reference(m)
        }
        Body::Shape(name) => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

/// The bodies other tools define, as Herald reads and answers them.
fn shapes() -> Vec<(&'static str, Value)> {
    let labels = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let string = json!({"type": "string"});
    vec![
        (
            "AlertmanagerWebhook",
            json!({
                "type": "object",
                "description": "Alertmanager's webhook payload, version 4. Other members Alertmanager sends are read and ignored.",
                "required": ["version", "groupKey", "status", "alerts"],
                "properties": {
                    "version": {"const": "4"},
                    "groupKey": string,
                    "truncatedAlerts": {"type": "integer"},
                    "status": {"enum": ["firing", "resolved"]},
                    "receiver": string,
                    "groupLabels": labels,
                    "commonLabels": labels,
                    "commonAnnotations": labels,
                    "externalURL": string,
                    "alerts": {"type": "array", "items": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"enum": ["firing", "resolved"]},
                            "labels": labels,
                            "annotations": labels,
                            "startsAt": {"type": "string", "format": "date-time"},
                            "endsAt": {"type": "string", "format": "date-time"},
                            "generatorURL": string,
                            "fingerprint": string,
                        },
                    }},
                },
            }),
        ),
        (
            "CapAlert",
            json!({
                "type": "string",
                "description": "An OASIS CAP 1.2 `<alert>` document (namespace urn:oasis:names:tc:emergency:cap:1.2).",
            }),
        ),
        (
            "CapAccepted",
            json!({
                "type": "object",
                "required": ["broadcastId", "action", "duplicate", "coordinator"],
                "properties": {
                    "broadcastId": {"type": "string", "description": "cap- and 24 hex digits, from the alert's sender and identifier (an update's or cancel's: those of the alert it references)"},
                    "action": {"enum": ["start", "update", "cancel"]},
                    "duplicate": {"type": "boolean"},
                    "coordinator": string,
                    "capIdentifier": string,
                },
            }),
        ),
        (
            "AlertOutcome",
            json!({
                "type": "object",
                "required": ["outcome"],
                "properties": {
                    "outcome": {"enum": ["opened", "already_open", "acknowledged", "resolved", "no_case"]},
                    "caseId": string,
                },
            }),
        ),
        (
            "PagerDutyEvent",
            json!({
                "type": "object",
                "description": "An event of PagerDuty's Events API v2.",
                "required": ["routing_key", "event_action"],
                "properties": {
                    "routing_key": string,
                    "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
                    "dedup_key": {"type": "string", "maxLength": 255},
                    "client": string,
                    "client_url": string,
                    "payload": {
                        "type": "object",
                        "required": ["summary", "source", "severity"],
                        "properties": {
                            "summary": {"type": "string", "maxLength": 1024},
                            "source": string,
                            "severity": {"enum": ["critical", "error", "warning", "info"]},
                            "timestamp": {"type": "string", "format": "date-time"},
                            "component": string,
                            "group": string,
                            "class": string,
                            "custom_details": {"type": "object"},
                        },
                    },
                    "links": {"type": "array", "items": {"type": "object", "required": ["href"], "properties": {"href": string, "text": string}}},
                    "images": {"type": "array", "items": {"type": "object", "required": ["src"], "properties": {"src": string, "href": string, "alt": string}}},
                },
            }),
        ),
        (
            "PagerDutyAccepted",
            json!({
                "type": "object",
                "required": ["status", "message", "dedup_key"],
                "properties": {"status": {"const": "success"}, "message": string, "dedup_key": string},
            }),
        ),
        (
            "PagerDutyError",
            json!({
                "type": "object",
                "required": ["status", "message"],
                "properties": {
                    "status": string,
                    "message": string,
                    "errors": {"type": "array", "items": string},
                },
            }),
        ),
    ]
}

fn reference(message: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{message}")})
}

/// The `{name}` parts of a route's path.
pub(crate) fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| {
        s.strip_prefix('{')
            .and_then(|s| s.split_once('}'))
            .map(|(name, _)| name)
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "description": "urn:herald:problem:<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "The herald.v1.ErrorCode, as NATS and gRPC callers get it."},
            "field": {"type": "string", "description": "The offending field by its JSON name, e.g. recipients[0].contactId."},
        },
    })
}

/// `roots` and every message their fields lead to, well-known types
/// left out.
fn reachable(schema: &Schema, roots: BTreeSet<String>) -> Vec<MessageDescriptor> {
    let by_name: BTreeMap<String, MessageDescriptor> = schema
        .messages()
        .map(|m| (m.full_name().to_string(), m))
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    let mut out = Vec::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) || well_known(&name).is_some() {
            continue;
        }
        let Some(m) = by_name.get(&name) else {
            continue;
        };
        for f in m.fields() {
            let kind = if f.is_map() {
                f.kind()
                    .as_message()
                    .map(|e| e.map_entry_value_field().kind())
            } else {
                Some(f.kind())
            };
            if let Some(Kind::Message(inner)) = kind {
                todo.push(inner.full_name().to_string());
            }
        }
        out.push(m.clone());
    }
    out.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    out
}

fn message_schema(m: &MessageDescriptor, comments: &Comments) -> Value {
    let mut properties = Map::new();
    for f in m.fields() {
        let mut s = field_schema(&f);
        let mut about: Vec<String> = comments.of_field(&f).into_iter().collect();
        if let Some(oneof) = f.containing_oneof() {
            let members: Vec<String> = oneof
                .fields()
                .map(|o| format!("`{}`", o.json_name()))
                .collect();
            about.push(format!("At most one of {}.", members.join(", ")));
        }
        if !about.is_empty()
            && let Some(obj) = s.as_object_mut()
        {
            obj.insert("description".into(), Value::String(about.join(" ")));
        }
        properties.insert(f.json_name().to_string(), s);
    }
    let mut s = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if let Some(text) = comments.of_message(m) {
        s["description"] = Value::String(text);
    }
    s
}

fn field_schema(f: &FieldDescriptor) -> Value {
    if f.is_map() {
        let value = f
            .kind()
            .as_message()
            .map(|e| kind_schema(&e.map_entry_value_field().kind()))
            .unwrap_or_else(|| json!({}));
        return json!({"type": "object", "additionalProperties": value});
    }
    let one = kind_schema(&f.kind());
    if f.is_list() {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

fn kind_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
        }
        // The JSON mapping writes 64-bit integers as strings and reads
        // either.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": ["string", "integer"], "format": "int64"})
        }
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(m) => well_known(m.full_name()).unwrap_or_else(|| reference(m.full_name())),
    }
}

/// The comments above each message and field in the `.proto` files.
struct Comments {
    by_file_and_path: BTreeMap<(String, Vec<i32>), String>,
}

impl Comments {
    fn of(schema: &Schema) -> Comments {
        let mut by_file_and_path = BTreeMap::new();
        let files: BTreeSet<String> = schema
            .messages()
            .map(|m| m.parent_file().name().to_string())
            .collect();
        for m in schema.messages() {
            let file = m.parent_file();
            if !files.contains(file.name()) {
                continue;
            }
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            for l in &info.location {
                if let Some(text) = l.leading_comments.as_deref() {
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !text.is_empty() {
                        by_file_and_path.insert((file.name().to_string(), l.path.clone()), text);
                    }
                }
            }
        }
        Comments { by_file_and_path }
    }

    fn get(&self, file: &str, path: &[i32]) -> Option<String> {
        self.by_file_and_path
            .get(&(file.to_string(), path.to_vec()))
            .cloned()
    }

    fn of_message(&self, m: &MessageDescriptor) -> Option<String> {
        self.get(m.parent_file().name(), m.path())
    }

    fn of_field(&self, f: &FieldDescriptor) -> Option<String> {
        self.get(f.parent_file().name(), f.path())
    }
}
