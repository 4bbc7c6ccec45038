//! The kinds of check many sections make (a URL's scheme, a listen address,
//! a count of at least one), so each section states its rules in a line
//! and every problem is worded the same way.

use crate::Secret;

/// A problem unless `value` starts with one of `schemes` followed by `://`.
pub(crate) fn url_scheme(key: &str, value: &str, schemes: &[&str], problems: &mut Vec<String>) {
    if !has_scheme(value, schemes) {
        problems.push(format!(
            "`{key}` = {value:?}: expected a URL starting with {}",
            scheme_list(schemes)
        ));
    }
}

/// As [`url_scheme`], for a URL that may carry a password: the problem
/// names the key but not the value.
pub(crate) fn secret_url_scheme(
    key: &str,
    value: &Secret,
    schemes: &[&str],
    problems: &mut Vec<String>,
) {
    if !has_scheme(value.expose_secret(), schemes) {
        problems.push(format!(
            "`{key}`: expected a URL starting with {} (the value is not shown, as it may hold a password)",
            scheme_list(schemes)
        ));
    }
}

fn has_scheme(value: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| value.strip_prefix(s).is_some_and(|r| r.starts_with("://")))
}

fn scheme_list(schemes: &[&str]) -> String {
    schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A problem unless `addr` is `host:port` with an IP address.
pub(crate) fn listen_addr(key: &str, addr: &str, problems: &mut Vec<String>) {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "`{key}` = {addr:?}: expected host:port, e.g. 127.0.0.1:9101"
        ));
    }
}

/// The problems of a public listener's settings (`<section>.public_addr`,
/// `<section>.public_tls_cert_file`, `<section>.public_tls_key_file`).
pub(crate) fn public_listener(
    section: &str,
    listener: &crate::PublicListener,
    problems: &mut Vec<String>,
) {
    if let Some(addr) = &listener.addr {
        listen_addr(&format!("{section}.public_addr"), addr, problems);
    }
    if listener.tls_cert_file.is_some() != listener.tls_key_file.is_some() {
        problems.push(format!(
            "`{section}.public_tls_cert_file` and `{section}.public_tls_key_file` go together: set both or neither"
        ));
    }
    if listener.tls_cert_file.is_some() && listener.addr.is_none() {
        problems.push(format!(
            "`{section}.public_tls_cert_file` is for the public listener: set `{section}.public_addr` too (health and metrics stay on `{section}.http_addr`)"
        ));
    }
}

/// A problem for each count that is zero.
pub(crate) fn at_least_one(counts: &[(&str, usize)], problems: &mut Vec<String>) {
    for (key, n) in counts {
        if *n == 0 {
            problems.push(format!("`{key}` must be at least 1"));
        }
    }
}

/// A problem for each duration that is zero.
pub(crate) fn more_than_zero(
    durations: &[(&str, std::time::Duration)],
    problems: &mut Vec<String>,
) {
    for (key, d) in durations {
        if d.is_zero() {
            problems.push(format!("`{key}` must be more than zero"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_may_hold_a_password_is_not_repeated_in_its_problem() {
        let mut problems = Vec::new();
        url_scheme("a.url", "ftp://x", &["http", "https"], &mut problems);
        url_scheme("a2.url", "https://x", &["http", "https"], &mut problems);
        secret_url_scheme(
            "b.url",
            &Secret::from("localhost:6379/?password=hunter2"),
            &["redis", "rediss"],
            &mut problems,
        );
        secret_url_scheme(
            "c.url",
            &Secret::from("rediss://:pw@h"),
            &["redis", "rediss"],
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("ftp://x"), "{problems:?}");
        assert!(problems[0].contains("http:// or https://"), "{problems:?}");
        assert!(problems[1].contains("`b.url`"), "{problems:?}");
        assert!(!problems[1].contains("hunter2"), "{problems:?}");
    }
}
