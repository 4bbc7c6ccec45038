//! Small helpers for the messages every request/reply subject shares: the
//! refusal that names a field, reading a case query, and a directory
//! contact as a notification's recipient.

use prost::Message;

use crate::v1::{CaseQuery, ErrorCode, Recipient, Rejected, recipient::Target};

impl Recipient {
    /// Contact `id` of the directory: intake picks the channel and address
    /// from their entry.
    pub fn contact(id: &str) -> Recipient {
        Recipient {
            target: Some(Target::ContactId(id.to_string())),
        }
    }
}

impl Rejected {
    pub fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Rejected {
        Rejected {
            code: code as i32,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl CaseQuery {
    /// The case a `CaseQuery` asks about, or why it names none.
    pub fn case_of(payload: &[u8]) -> Result<String, Rejected> {
        let q = CaseQuery::decode(payload).map_err(|e| {
            Rejected::new(
                ErrorCode::Undecodable,
                "",
                format!("not a herald.v1.CaseQuery: {e}"),
            )
        })?;
        if !crate::subjects::is_subject_token(&q.case_id) {
            return Err(Rejected::new(
                ErrorCode::InvalidArgument,
                "case_id",
                "must be letters, digits or - _ : @ + =",
            ));
        }
        Ok(q.case_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_query_names_its_case_or_the_field_that_is_wrong() {
        let ok = CaseQuery {
            case_id: "CASE-1".into(),
        }
        .encode_to_vec();
        assert_eq!(CaseQuery::case_of(&ok).unwrap(), "CASE-1");
        let bad = CaseQuery {
            case_id: "a.b".into(),
        }
        .encode_to_vec();
        assert_eq!(CaseQuery::case_of(&bad).unwrap_err().field, "case_id");
        let garbage = CaseQuery::case_of(&[0xff, 0xff]).unwrap_err();
        assert_eq!(garbage.code, ErrorCode::Undecodable as i32);
    }
}
