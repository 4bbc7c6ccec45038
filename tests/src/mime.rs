//! Reading a message as it arrived at the SMTP server: headers unfolded,
//! the parts of a multipart message, transfer encodings undone.

/// One part of a multipart message.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its Content-Type header, parameters included.
    pub content_type: String,
    /// The file name its Content-Disposition gives, for an attachment.
    pub filename: Option<String>,
    /// Its content, decoded.
    pub body: Vec<u8>,
}

/// A header's value in `head` (first occurrence, unfolded).
pub(crate) fn header_in(head: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = found.as_mut() {
            if line.starts_with(' ') || line.starts_with('\t') {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_string());
        }
    }
    found
}

/// A parameter of a header value (`boundary="x"`, `filename=a.ics`).
pub(crate) fn param_of(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// `body` with its transfer encoding undone.
pub(crate) fn decode(body: &str, encoding: Option<String>) -> Vec<u8> {
    match encoding.map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("quoted-printable") => decode_qp(body).into_bytes(),
        Some("base64") => {
            use base64::Engine;
            let clean: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .unwrap_or_default()
        }
        _ => body.as_bytes().to_vec(),
    }
}

pub(crate) fn decode_qp(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if let (Some(a), Some(b)) = (bytes.get(i + 1), bytes.get(i + 2))
                && let Ok(v) = u8::from_str_radix(&format!("{}{}", *a as char, *b as char), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
