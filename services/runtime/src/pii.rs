//! Personal data never reaches logs, span attributes or metric labels.
//!
//! Code logs identifiers (notification, job, contact and case ids), never
//! addresses, names, bodies or template parameters. As a second line of
//! defence every log line is passed through [`scrub`], which masks anything
//! shaped like an email address or a phone number.

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

/// A short stable tag for a personal value, so operators can tell whether
/// two log lines concern the same address without seeing it.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(format!("herald-pii:{value}").as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
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
    fn fingerprints_are_stable_and_short() {
        assert_eq!(fingerprint("a@b.c"), fingerprint("a@b.c"));
        assert_ne!(fingerprint("a@b.c"), fingerprint("a@b.d"));
        assert_eq!(fingerprint("a@b.c").len(), 8);
    }
}
