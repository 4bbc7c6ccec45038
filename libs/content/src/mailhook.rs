//! Inbound-email webhook signatures, in the form mail services that parse
//! incoming mail and post it on use: `signature` is the hex HMAC-SHA256,
//! keyed with the webhook signing key, over `timestamp` followed by
//! `token` (a random string the service makes for each post).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature for a post's `timestamp` and `token`.
pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
    hex::encode(mac(key, timestamp, token).finalize().into_bytes())
}

/// Whether `signature` (hex, either case) is right, compared in constant
/// time.
pub fn verify(key: &str, timestamp: &str, token: &str, signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    mac(key, timestamp, token).verify_slice(&given).is_ok()
}

fn mac(key: &str, timestamp: &str, token: &str) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_only_for_its_timestamp_token_and_key() {
        // Worked by hand with `openssl dgst -sha256 -hmac key-1` over
        // "1700000000" followed by "tok".
        let s = sign("key-1", "1700000000", "tok");
        assert_eq!(
            s,
            "dc8bfeb77b457e9967c657a5bf176acfc5f802cebb6f075c5975259ec2a0ff54"
        );
        assert!(verify("key-1", "1700000000", "tok", &s));
        assert!(verify("key-1", "1700000000", "tok", &s.to_uppercase()));
        assert!(!verify("key-1", "1700000001", "tok", &s));
        assert!(!verify("key-1", "1700000000", "tok2", &s));
        assert!(!verify("key-2", "1700000000", "tok", &s));
        assert!(!verify("key-1", "1700000000", "tok", "zz"));
        assert!(!verify("key-1", "1700000000", "tok", ""));
    }
}
