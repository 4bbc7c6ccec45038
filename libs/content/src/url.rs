//! Values in the addresses Herald hands out: a provider's status callback,
//! a broadcast's confirmation link and key-press address, a follow-up
//! survey. Each value is percent-encoded here, and nowhere else, so that it
//! comes back as it went out: an id with a `+` must not return as a space,
//! nor one with `&` or `=` as two parameters. Whoever reads the address
//! back decodes it as a form would (`serde_urlencoded`), which undoes
//! exactly this.

/// `value` with every byte but RFC 3986's unreserved ones (letters,
/// digits, `-`, `.`, `_`, `~`) written as `%XX`, UTF-8 first. Safe in a
/// query value and in a path segment alike.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0x0f)])
}

/// A query string of `pairs`, names and values encoded: `a=1&b=x%2By`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `base` (which may already have a query, and a fragment) with `pairs`
/// added to its query. The fragment stays last, where a browser expects
/// it; a provider never sees it.
pub fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let (address, fragment) = match base.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (base, None),
    };
    let sep = match address.find('?') {
        None => "?",
        Some(i) if i + 1 == address.len() || address.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!("{address}{sep}{}", query(pairs));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(url: &str) -> Vec<(String, String)> {
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let query = query.split('#').next().unwrap_or_default();
        serde_urlencoded::from_str(query).unwrap()
    }

    #[test]
    fn reserved_characters_come_back_as_they_went_out() {
        for value in [
            "fire+drill",
            "a&b=c",
            "x/y?z#w",
            "two words",
            "100%",
            "évacuation-Ω",
            "a:b@c=d+e",
        ] {
            let url = with_query("https://h.example/v1/status/voice", &[("job", value)]);
            assert!(!url[url.find('?').unwrap() + 1..].contains(['+', ' ', '#', '/']));
            assert_eq!(read_back(&url), [("job".to_string(), value.to_string())]);
        }
        assert_eq!(encode("a+b c"), "a%2Bb%20c");
        assert_eq!(encode("Ω"), "%CE%A9");
        assert_eq!(encode("Aa0-._~"), "Aa0-._~");
    }

    #[test]
    fn pairs_join_an_existing_query_and_leave_the_fragment_last() {
        let pairs = [("case", "C+1"), ("round", "2")];
        assert_eq!(
            with_query("https://f.example/s", &pairs),
            "https://f.example/s?case=C%2B1&round=2"
        );
        assert_eq!(
            with_query("https://f.example/s?lang=fr", &pairs),
            "https://f.example/s?lang=fr&case=C%2B1&round=2"
        );
        assert_eq!(
            with_query("https://f.example/s?", &pairs),
            "https://f.example/s?case=C%2B1&round=2"
        );
        assert_eq!(
            with_query("https://f.example/s#top", &pairs),
            "https://f.example/s?case=C%2B1&round=2#top"
        );
    }
}
