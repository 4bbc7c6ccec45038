//! Personal data never reaches logs, span attributes or metric labels.
//!
//! Code logs identifiers (notification, job, contact and case ids), never
//! addresses, names, bodies or template parameters. As a second line of
//! defence every log line and every exported span is passed through
//! [`scrub`] (see `telemetry`), which masks anything shaped like an email
//! address or a phone number. Text that comes from outside and may quote
//! anything back (a provider's error reply) is cut down to its codes by
//! [`provider_reply_summary`] before it reaches a log, a span or the audit
//! trail.

use sha2::{Digest, Sha256};

/// Masks email addresses and international phone numbers in `text`.
pub fn scrub(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'@' => {
                let start = scan_back(bytes, i, is_local_char);
                let end = scan_forward(bytes, i + 1, is_domain_char);
                let domain = &text[i + 1..end];
                if start < i && domain.contains('.') && !domain.starts_with('.') {
                    out.push_str(&text[copied..start]);
                    out.push_str("[email]");
                    copied = end;
                    i = end;
                    continue;
                }
            }
            b'+' => {
                let end = scan_forward(bytes, i + 1, |b| b.is_ascii_digit());
                let digits = end - i - 1;
                let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
                if boundary && (7..=15).contains(&digits) {
                    out.push_str(&text[copied..i]);
                    out.push_str("[phone]");
                    copied = end;
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn scan_back(bytes: &[u8], at: usize, ok: impl Fn(u8) -> bool) -> usize {
    let mut s = at;
    while s > 0 && ok(bytes[s - 1]) {
        s -= 1;
    }
    s
}

fn scan_forward(bytes: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    let mut e = from;
    while e < bytes.len() && ok(bytes[e]) {
        e += 1;
    }
    e
}

/// What may be kept of a provider's reply to a failed send: its error code
/// and status, never its message text, which providers fill with the number,
/// address or body they refused. Empty for an empty reply; the size for a
/// reply with no recognisable code.
pub fn provider_reply_summary(body: &str) -> String {
    if body.trim().is_empty() {
        return String::new();
    }
    let parsed: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(body).ok();
    let mut parts = Vec::new();
    if let Some(map) = &parsed {
        let nested = map.get("error").and_then(|e| e.as_object());
        for source in [Some(map), nested].into_iter().flatten() {
            for key in ["code", "error_code", "errorCode", "status", "error", "type"] {
                if let Some(v) = source.get(key).and_then(safe_code) {
                    parts.push(format!("{key}={v}"));
                }
            }
        }
    }
    if parts.is_empty() {
        format!("{} bytes", body.len())
    } else {
        parts.join(" ")
    }
}

/// A code is a short number or a short word; anything longer, or a run
/// of digits long enough to be a phone number, is not kept.
fn safe_code(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) if n.to_string().len() <= 6 => Some(n.to_string()),
        serde_json::Value::String(s)
            if (1..=40).contains(&s.len())
                && s.bytes().any(|b| b.is_ascii_alphabetic())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

/// A short stable tag for a personal value, so operators can tell whether
/// two log lines concern the same address without seeing it.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(format!("herald-pii:{value}").as_bytes());
    hex::encode(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_addresses_and_numbers_but_not_ids() {
        let line = r#"send failed to="alice.o'neil@example.co.uk" phone=+447700900123 job=ntf_01J-r0-email"#;
        let s = scrub(line);
        assert_eq!(
            s,
            r#"send failed to="[email]" phone=[phone] job=ntf_01J-r0-email"#
        );
    }

    #[test]
    fn leaves_text_without_personal_data_alone() {
        for t in [
            "a @ b",
            "user@localhost",
            "version 1+2",
            "x+12",
            "trace=4bf92f3577b34da6",
        ] {
            assert_eq!(scrub(t), t);
        }
    }

    #[test]
    fn provider_replies_keep_their_codes_and_lose_their_words() {
        let twilio = r#"{"code": 21211, "message": "The 'To' number +447700900123 is not valid.", "more_info": "https://x", "status": 400}"#;
        assert_eq!(provider_reply_summary(twilio), "code=21211 status=400");
        let nested =
            r#"{"error": {"code": "invalid_number", "message": "Body 'Dear Ann' refused"}}"#;
        assert_eq!(provider_reply_summary(nested), "code=invalid_number");
        let digits = r#"{"error": "447700900123", "status": "failed"}"#;
        assert_eq!(provider_reply_summary(digits), "status=failed");
        assert_eq!(
            provider_reply_summary("Bad number +447700900123, body: Dear Ann"),
            "40 bytes"
        );
        assert_eq!(provider_reply_summary(""), "");
    }

    #[test]
    fn fingerprints_are_stable_and_short() {
        assert_eq!(fingerprint("a@b.c"), fingerprint("a@b.c"));
        assert_ne!(fingerprint("a@b.c"), fingerprint("a@b.d"));
        assert_eq!(fingerprint("a@b.c").len(), 8);
    }
}
