//! Provider webhook signatures, in the common form SMS and voice providers
//! use (`X-Twilio-Signature` style): HMAC-SHA1, keyed with the account's
//! secret, over the full callback URL followed by every POST parameter
//! sorted by name and written as name then value, base64-encoded. Status
//! callbacks, key presses and SMS replies are all checked with it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Headers a provider may put its signature in.
pub const HEADERS: [&str; 2] = ["x-twilio-signature", "x-signature"];

/// The signature a request carries, from the first of [`HEADERS`] present.
pub fn from_headers(headers: &http::HeaderMap) -> Option<&str> {
    HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
}

/// The MAC over the URL and the parameters sorted by name.
fn mac(secret: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    #[allow(clippy::expect_used)]
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The signature a provider sends for a callback.
pub fn sign(secret: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(secret, url, params).finalize().into_bytes())
}

/// Whether `signature` is right for this callback, compared in constant
/// time.
pub fn verify(secret: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(secret, url, params).verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<(String, String)> {
        vec![
            ("MessageStatus".into(), "delivered".into()),
            ("MessageSid".into(), "SM123".into()),
        ]
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let url = "https://herald.example.org/v1/status/sms?job=j1";
        let sig = sign("s3cret", url, &params());
        assert!(verify("s3cret", url, &params(), &sig));
        assert!(!verify("other", url, &params(), &sig));
        assert!(!verify(
            "s3cret",
            "https://herald.example.org/v1/status/sms?job=j2",
            &params(),
            &sig
        ));
        let mut changed = params();
        changed[0].1 = "failed".into();
        assert!(!verify("s3cret", url, &changed, &sig));
        assert!(!verify("s3cret", url, &params(), "not base64!"));
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let url = "https://h.example/cb";
        let mut reversed = params();
        reversed.reverse();
        assert_eq!(sign("k", url, &params()), sign("k", url, &reversed));
    }
}
