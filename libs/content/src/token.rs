//! Tokens in the links Herald hands out (a broadcast's confirmation link
//! and key-press address, a follow-up survey): the first 128 bits of
//! HMAC-SHA256 over what the link names, keyed with a deployment secret,
//! in unpadded URL-safe base64. Editing the link breaks the token; it is
//! checked in constant time.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC a token keeps.
const TOKEN_BYTES: usize = 16;

fn mac(secret: &[u8], message: &str) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    // HMAC takes a key of any length (a long one is hashed, a short one
    // padded): `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(message.as_bytes());
    mac
}

/// The token for `message`.
pub fn sign(secret: &[u8], message: &str) -> String {
    URL_SAFE_NO_PAD.encode(&mac(secret, message).finalize().into_bytes()[..TOKEN_BYTES])
}

/// Whether `token` is the one for `message`.
pub fn verify(secret: &[u8], message: &str, token: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(token.trim()) else {
        return false;
    };
    given.len() == TOKEN_BYTES && mac(secret, message).verify_truncated_left(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_message_and_secret() {
        let t = sign(b"secret", "survey:CASE-1:7");
        assert_eq!(t.len(), 22);
        assert!(verify(b"secret", "survey:CASE-1:7", &t));
        assert!(!verify(b"secret", "survey:CASE-1:8", &t));
        assert!(!verify(b"other", "survey:CASE-1:7", &t));
        assert!(!verify(b"secret", "survey:CASE-1:7", &t[..20]));
        assert!(!verify(b"secret", "survey:CASE-1:7", "not base64!"));
    }
}
