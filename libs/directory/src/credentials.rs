//! Bearer secrets that callers present and the configuration knows only by
//! their SHA-256: coordinator tokens (`[broadcast] coordinators`) and the
//! API keys of systems calling intake over gRPC (`[intake] api_keys`).
//!
//! Keeping only the hash means a leaked configuration file grants nothing.
//! A presented secret is hashed and compared with every configured hash in
//! constant time, without stopping at the first match, so timing tells
//! nothing about which byte or which holder was wrong.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a secret, as the configuration writes it (lower-case hex).
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret (256 bits from the operating system's generator,
/// URL-safe base64) and its hash for the configuration.
pub fn new_secret() -> Result<(String, String), rand::rand_core::OsError> {
    use base64::Engine;
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    // Straight from the kernel (getrandom, the pool behind /dev/urandom)
    // rather than a user-space generator: this is a long-lived credential.
    rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = sha256_hex(&secret);
    Ok((secret, hash))
}

/// The holder whose hash the presented secret has, if any. `hashes` pairs
/// each holder with one hash; a holder may appear more than once (several
/// keys while one is being rotated). Surrounding white space is ignored on
/// both sides, and hashes that are not 64 hex digits match nothing.
pub fn holder_of<'a>(
    hashes: impl IntoIterator<Item = (&'a str, &'a str)>,
    presented: &str,
) -> Option<&'a str> {
    let presented = presented.trim();
    if presented.is_empty() {
        return None;
    }
    let digest = Sha256::digest(presented.as_bytes());
    let mut found = None;
    for (holder, hash) in hashes {
        let mut expected = [0u8; 32];
        if hex::decode_to_slice(hash.trim(), &mut expected).is_err() {
            continue;
        }
        let matches: bool = digest.as_slice().ct_eq(&expected).into();
        if matches && found.is_none() {
            found = Some(holder);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_names_its_holder_whichever_of_its_hashes_matches() {
        let old = sha256_hex("crm-old");
        let new = sha256_hex("crm-new");
        let billing = sha256_hex("billing-key").to_uppercase();
        let hashes = [
            ("crm", old.as_str()),
            ("billing", billing.as_str()),
            ("crm", new.as_str()),
            ("broken", "not hex"),
        ];
        assert_eq!(holder_of(hashes, "crm-old"), Some("crm"));
        assert_eq!(holder_of(hashes, "crm-new\n"), Some("crm"));
        assert_eq!(holder_of(hashes, "billing-key"), Some("billing"));
        for bad in ["", "  ", "crm", "crm-new2", "not hex", new.as_str()] {
            assert_eq!(holder_of(hashes, bad), None, "{bad:?}");
        }
        assert_eq!(holder_of([], "crm-old"), None);
    }

    #[test]
    fn new_secrets_differ_are_long_and_verify_against_their_hash() {
        let (s1, h1) = new_secret().unwrap();
        let (s2, h2) = new_secret().unwrap();
        assert_ne!(s1, s2);
        assert_ne!(h1, h2);
        // 32 bytes in unpadded base64: 43 characters, all URL-safe.
        assert_eq!(s1.len(), 43);
        assert!(
            s1.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{s1}"
        );
        assert_eq!(h1.len(), 64);
        assert_eq!(holder_of([("x", h1.as_str())], &s1), Some("x"));
        assert_eq!(holder_of([("x", h1.as_str())], &s2), None);
    }
}
