//! Coordinator credentials: who may start, update and cancel an emergency
//! broadcast (SOP 004: emergency protocols name who raises the alarm).
//!
//! A coordinator holds a random token; the configuration keeps only its
//! SHA-256 (`[broadcast] coordinators = [{ id, token_sha256 }]`), so a
//! leaked configuration file starts no broadcast. A presented token is
//! hashed and compared with every configured hash in constant time, without
//! stopping at the first match, so timing tells nothing about which byte or
//! which coordinator was wrong.

use herald_config::Coordinator;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a token, as the configuration writes it (lower-case hex).
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, URL-safe) and its hash for the
/// configuration.
pub fn new_token() -> (String, String) {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_sha256(&token);
    (token, hash)
}

/// The coordinator a credential belongs to, if any.
pub fn authenticate(coordinators: &[Coordinator], credential: &str) -> Option<String> {
    let credential = credential.trim();
    if credential.is_empty() {
        return None;
    }
    let presented = Sha256::digest(credential.as_bytes());
    let mut found = None;
    for c in coordinators {
        let mut expected = [0u8; 32];
        if hex::decode_to_slice(c.token_sha256.trim(), &mut expected).is_err() {
            continue;
        }
        let matches: bool = presented.as_slice().ct_eq(&expected).into();
        if matches && found.is_none() {
            found = Some(c.id.clone());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinators() -> Vec<Coordinator> {
        vec![
            Coordinator {
                id: "anna".into(),
                token_sha256: token_sha256("anna-secret"),
            },
            Coordinator {
                id: "ben".into(),
                token_sha256: token_sha256("ben-secret").to_uppercase(),
            },
        ]
    }

    #[test]
    fn a_token_names_its_coordinator_and_nothing_else_passes() {
        let c = coordinators();
        assert_eq!(authenticate(&c, "anna-secret").as_deref(), Some("anna"));
        assert_eq!(authenticate(&c, " ben-secret\n").as_deref(), Some("ben"));
        for bad in ["", "anna", "anna-secret2", &token_sha256("anna-secret")] {
            assert_eq!(authenticate(&c, bad), None, "{bad:?}");
        }
        assert_eq!(authenticate(&[], "anna-secret"), None);
    }

    #[test]
    fn new_tokens_differ_and_verify_against_their_hash() {
        let (t1, h1) = new_token();
        let (t2, _) = new_token();
        assert_ne!(t1, t2);
        assert!(t1.len() >= 40);
        let c = vec![Coordinator {
            id: "x".into(),
            token_sha256: h1,
        }];
        assert_eq!(authenticate(&c, &t1).as_deref(), Some("x"));
    }
}
