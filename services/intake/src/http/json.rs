//! Herald's protobuf messages as JSON, in the proto3 JSON mapping: field
//! names in lowerCamelCase (the proto names are accepted too), enums by
//! their names, timestamps as RFC 3339, 64-bit integers as strings. The
//! conversion reads the compiled schema, so what HTTP accepts is exactly
//! what NATS and gRPC accept, field for field, and a new proto field is
//! reachable over HTTP without a line here.

use herald_proto::{
    Message,
    v1::{ErrorCode, Rejected},
};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, SerializeOptions,
};

use crate::validate::reject;

/// The compiled `herald.v1` schema.
#[derive(Clone)]
pub(crate) struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    pub(crate) fn load() -> anyhow::Result<Schema> {
        let pool = DescriptorPool::decode(herald_proto::v1::FILE_DESCRIPTOR_SET)
            .map_err(|e| anyhow::anyhow!("the compiled herald.v1 schema does not load: {e}"))?;
        Ok(Schema { pool })
    }

    /// The message `name` (`herald.v1.NotificationRequest`); a name the
    /// routes use that the schema lacks is a build mistake caught by the
    /// tests, answered as an internal error here.
    pub(crate) fn message(&self, name: &str) -> Result<MessageDescriptor, Rejected> {
        self.pool.get_message_by_name(name).ok_or_else(|| {
            reject(
                ErrorCode::Internal,
                "",
                format!("{name} is not in the schema"),
            )
        })
    }

    pub(crate) fn messages(&self) -> impl Iterator<Item = MessageDescriptor> + '_ {
        self.pool.all_messages()
    }

    /// Reads `body` as the JSON form of the message `name`. A refusal names
    /// the field where reading stopped, by its JSON name.
    pub(crate) fn decode<M: Message + Default>(
        &self,
        name: &str,
        body: &[u8],
    ) -> Result<M, Rejected> {
        let desc = self.message(name)?;
        let mut json = serde_json::Deserializer::from_slice(body);
        let mut track = serde_path_to_error::Track::new();
        let read = DynamicMessage::deserialize_with_options(
            desc,
            serde_path_to_error::Deserializer::new(&mut json, &mut track),
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .and_then(|m| json.end().map(|()| m));
        let dynamic = read.map_err(|e| {
            let path = track.path().to_string();
            let mut field = if path == "." { String::new() } else { path };
            // An unknown field is reported at the object holding it; the
            // caller wants the field itself.
            if let Some(unknown) = unknown_field(&e) {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(&unknown);
            }
            reject(
                ErrorCode::Undecodable,
                field,
                format!("not the JSON form of {name}: {}", plain(&e)),
            )
        })?;
        M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| {
            reject(
                ErrorCode::Undecodable,
                "",
                format!("not the JSON form of {name}: {e}"),
            )
        })
    }

    /// The JSON form of `message`, a `name`, with every field present
    /// (zero values included), so a client need not know proto3's
    /// defaults to read an answer.
    pub(crate) fn encode<M: Message>(
        &self,
        name: &str,
        message: &M,
    ) -> Result<serde_json::Value, Rejected> {
        let desc = self.message(name)?;
        let internal = |e: String| reject(ErrorCode::Internal, "", e);
        let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
            .map_err(|e| internal(format!("{name} does not re-read: {e}")))?;
        dynamic
            .serialize_with_options(
                serde_json::value::Serializer,
                &SerializeOptions::new().skip_default_fields(false),
            )
            .map_err(|e| internal(format!("{name} does not serialize: {e}")))
    }

    /// `field`, a path of proto field names as intake's checks name them
    /// (`recipients[2].inline.email`), in JSON names
    /// (`recipients[2].inline.email`, `templateId`, `params.first_name`):
    /// a refusal over HTTP names the field as the caller wrote it. Map keys
    /// and anything the schema does not know stay as they are.
    pub(crate) fn json_path(&self, message: &str, field: &str) -> String {
        let Ok(mut desc) = self.message(message) else {
            return field.to_string();
        };
        let mut out = Vec::new();
        let mut segments = field.split('.');
        while let Some(segment) = segments.next() {
            let (name, index) = match segment.find('[') {
                Some(i) => segment.split_at(i),
                None => (segment, ""),
            };
            let Some(f) = desc.get_field_by_name(name) else {
                out.push(segment.to_string());
                out.extend(segments.map(str::to_string));
                break;
            };
            out.push(format!("{}{index}", f.json_name()));
            if f.is_map() {
                // The key is the caller's own text.
                out.extend(segments.next().map(str::to_string));
                out.extend(segments.map(str::to_string));
                break;
            }
            match f.kind() {
                Kind::Message(m) => desc = m,
                _ => {
                    out.extend(segments.map(str::to_string));
                    break;
                }
            }
        }
        out.join(".")
    }
}

/// The name in prost-reflect's refusal of a field the message lacks.
fn unknown_field(e: &serde_json::Error) -> Option<String> {
    let text = e.to_string();
    let rest = text.split_once("unrecognized field name '")?.1;
    let (name, _) = rest.split_once('\'')?;
    Some(name.to_string())
}

/// serde_json's message without its " at line 1 column 9" suffix, which a
/// request of one line does not need, and with nothing else changed.
fn plain(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) if e.line() > 0 => s[..i].to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use herald_proto::v1::{CommunicationType, NotificationRequest, Priority, recipient};

    use super::*;

    const REQUEST: &str = "herald.v1.NotificationRequest";

    fn schema() -> Schema {
        Schema::load().unwrap()
    }

    #[test]
    fn a_request_reads_with_json_names_or_proto_names() {
        let s = schema();
        let camel = br#"{"idempotencyKey":"k1","communicationType":"COMMUNICATION_TYPE_INITIAL_INQUIRY",
            "priority":"PRIORITY_HIGH","recipients":[{"contactId":"ivy"},{"inline":{"email":"a@example.org"}}],
            "templateId":"inquiry_received","params":{"reference":"INQ-1"},"cancelKeys":["c1"]}"#;
        let snake =
            br#"{"idempotency_key":"k1","communication_type":"COMMUNICATION_TYPE_INITIAL_INQUIRY",
            "priority":3,"recipients":[{"contact_id":"ivy"},{"inline":{"email":"a@example.org"}}],
            "template_id":"inquiry_received","params":{"reference":"INQ-1"},"cancel_keys":["c1"]}"#;
        for body in [&camel[..], &snake[..]] {
            let r: NotificationRequest = s.decode(REQUEST, body).unwrap();
            assert_eq!(r.idempotency_key, "k1");
            assert_eq!(r.communication_type(), CommunicationType::InitialInquiry);
            assert_eq!(r.priority(), Priority::High);
            assert_eq!(
                r.recipients[0].target,
                Some(recipient::Target::ContactId("ivy".into()))
            );
            assert_eq!(r.params["reference"], "INQ-1");
            assert_eq!(r.cancel_keys, ["c1"]);
        }
    }

    #[test]
    fn a_bad_body_is_refused_naming_where_it_went_wrong() {
        let s = schema();
        let cases: [(&[u8], &str, &str); 6] = [
            (b"{\"templateId\": 7}", "templateId", "invalid type"),
            (
                b"{\"recipients\":[{\"contactId\":\"a\"},{\"email\":\"x\"}]}",
                "recipients[1].email",
                "unrecognized field name 'email'",
            ),
            (b"{\"priority\":\"URGENT\"}", "priority", "URGENT"),
            (b"{\"templateId\":\"a\"", "", "EOF"),
            (b"[1]", "", "invalid type"),
            (b"{} trailing", "", "trailing characters"),
        ];
        for (body, field, says) in cases {
            let r = s.decode::<NotificationRequest>(REQUEST, body).unwrap_err();
            assert_eq!(r.code(), ErrorCode::Undecodable, "{r:?}");
            assert!(r.field.starts_with(field), "{field}: {r:?}");
            assert!(r.message.contains(says), "{says}: {r:?}");
            assert!(r.message.contains(REQUEST), "{r:?}");
        }
    }

    #[test]
    fn an_answer_has_every_field_in_json_names() {
        let s = schema();
        let v = s
            .encode(
                "herald.v1.Accepted",
                &herald_proto::v1::Accepted {
                    notification_id: "ntf_1".into(),
                    duplicate: false,
                    awaiting_approval: true,
                },
            )
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"notificationId": "ntf_1", "duplicate": false, "awaitingApproval": true})
        );
    }

    #[test]
    fn check_paths_are_given_in_json_names() {
        let s = schema();
        for (proto, json) in [
            ("template_id", "templateId"),
            ("recipients[2].inline.email", "recipients[2].inline.email"),
            ("recipients[0].contact_id", "recipients[0].contactId"),
            (
                "recipients[1].inline.preferred_channel",
                "recipients[1].inline.preferredChannel",
            ),
            ("params.first_name", "params.first_name"),
            ("channel_override[0]", "channelOverride[0]"),
            ("not_a_field.sub_part", "not_a_field.sub_part"),
            ("", ""),
        ] {
            assert_eq!(s.json_path(REQUEST, proto), json, "{proto}");
        }
        assert_eq!(
            s.json_path("herald.v1.CaseEvent", "details.client_contact_id"),
            "details.clientContactId"
        );
    }
}
