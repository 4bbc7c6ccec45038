//! Files attached to a notification's emails (a meeting invitation's
//! iCalendar file): at most [`MAX_FILES`], each at most [`MAX_BYTES`], of
//! the content types Herald sends ([`ALLOWED`]), under a plain file name.

use herald_proto::v1::{ErrorCode, NotificationRequest, Rejected};

use crate::validate::reject;

/// Attachments one notification may carry.
pub const MAX_FILES: usize = 4;
/// The largest attachment, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;
/// The media types an attachment may have (parameters such as
/// `method=REQUEST` and `charset` follow them).
pub const ALLOWED: [&str; 3] = ["text/calendar", "text/plain", "application/pdf"];

/// Checks every attachment, naming the field of the first that is wrong.
pub fn check(req: &NotificationRequest) -> Result<(), Rejected> {
    let bad = |field: String, why: String| Err(reject(ErrorCode::InvalidArgument, field, why));
    if req.attachments.len() > MAX_FILES {
        return bad(
            "attachments".into(),
            format!("holds {} files; at most {MAX_FILES}", req.attachments.len()),
        );
    }
    for (i, a) in req.attachments.iter().enumerate() {
        let at = |f: &str| format!("attachments[{i}].{f}");
        let name_ok = !a.filename.is_empty()
            && a.filename.chars().count() <= 100
            && !a.filename.starts_with('.')
            && a.filename
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' '));
        if !name_ok {
            return bad(
                at("filename"),
                "must be 1-100 letters, digits, spaces, '.', '-' or '_', not starting with '.'"
                    .into(),
            );
        }
        let media = a
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let params_ok = a.content_type.split(';').skip(1).all(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                !k.trim().is_empty()
                    && !v.trim().is_empty()
                    && (k.chars().chain(v.chars()))
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
            })
        });
        if !ALLOWED.contains(&media.as_str()) || !params_ok || a.content_type.len() > 200 {
            return bad(
                at("content_type"),
                format!(
                    "must be one of {} with name=value parameters",
                    ALLOWED.join(", ")
                ),
            );
        }
        if a.content.is_empty() || a.content.len() > MAX_BYTES {
            return bad(
                at("content"),
                format!("must be 1-{MAX_BYTES} bytes; it is {}", a.content.len()),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::Attachment;

    fn field(a: Attachment) -> String {
        let req = NotificationRequest {
            attachments: vec![a],
            ..Default::default()
        };
        check(&req)
            .map(|_| String::new())
            .unwrap_or_else(|r| r.field)
    }

    #[test]
    fn an_attachment_is_refused_naming_what_is_wrong() {
        let ok = || Attachment {
            filename: "invite.ics".into(),
            content_type: "text/calendar; method=REQUEST; charset=UTF-8".into(),
            content: b"BEGIN:VCALENDAR".to_vec(),
        };
        assert_eq!(field(ok()), "");
        for (want, a) in [
            (
                "attachments[0].filename",
                Attachment {
                    filename: "../x.ics".into(),
                    ..ok()
                },
            ),
            (
                "attachments[0].filename",
                Attachment {
                    filename: String::new(),
                    ..ok()
                },
            ),
            (
                "attachments[0].content_type",
                Attachment {
                    content_type: "text/html".into(),
                    ..ok()
                },
            ),
            (
                "attachments[0].content_type",
                Attachment {
                    content_type: "text/calendar; x=\"\r\nBcc: a\"".into(),
                    ..ok()
                },
            ),
            (
                "attachments[0].content",
                Attachment {
                    content: vec![],
                    ..ok()
                },
            ),
            (
                "attachments[0].content",
                Attachment {
                    content: vec![b'a'; MAX_BYTES + 1],
                    ..ok()
                },
            ),
        ] {
            assert_eq!(field(a), want);
        }
        let many = NotificationRequest {
            attachments: vec![ok(); MAX_FILES + 1],
            ..Default::default()
        };
        assert_eq!(check(&many).map_err(|r| r.field), Err("attachments".into()));
    }
}
