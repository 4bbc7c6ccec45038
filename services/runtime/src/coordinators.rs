//! Coordinator credentials: who may start, update and cancel an emergency
//! broadcast (SOP 004: emergency protocols name who raises the alarm).
//!
//! A coordinator holds a random token; the configuration keeps only its
//! SHA-256 (`[broadcast] coordinators = [{ id, token_sha256 }]`), so a
//! leaked configuration file starts no broadcast. A presented token is
//! hashed and compared with every configured hash in constant time, without
//! stopping at the first match, so timing tells nothing about which byte or
//! which coordinator was wrong.

use sha2::{Digest, Sha256};

use crate::config::BroadcastConfig;

/// The SHA-256 of a token, as the configuration writes it (lower-case hex).
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
pub fn authenticate(cfg: &BroadcastConfig, credential: &str) -> Option<String> {
    let credential = credential.trim();
    if credential.is_empty() {
        return None;
    }
    let presented = Sha256::digest(credential.as_bytes());
    let mut found = None;
    for c in &cfg.coordinators {
        let Some(expected) = decode_hex32(c.token_sha256.trim()) else {
            continue;
        };
        let diff = presented
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 && found.is_none() {
            found = Some(c.id.clone());
        }
    }
    found
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Coordinator;

    fn cfg() -> BroadcastConfig {
        BroadcastConfig {
            coordinators: vec![
                Coordinator {
                    id: "anna".into(),
                    token_sha256: token_sha256("anna-secret"),
                },
                Coordinator {
                    id: "ben".into(),
                    token_sha256: token_sha256("ben-secret").to_uppercase(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_token_names_its_coordinator_and_nothing_else_passes() {
        let c = cfg();
        assert_eq!(authenticate(&c, "anna-secret").as_deref(), Some("anna"));
        assert_eq!(authenticate(&c, " ben-secret\n").as_deref(), Some("ben"));
        for bad in ["", "anna", "anna-secret2", &token_sha256("anna-secret")] {
            assert_eq!(authenticate(&c, bad), None, "{bad:?}");
        }
        assert_eq!(
            authenticate(&BroadcastConfig::default(), "anna-secret"),
            None
        );
    }

    #[test]
    fn new_tokens_differ_and_verify_against_their_hash() {
        let (t1, h1) = new_token();
        let (t2, _) = new_token();
        assert_ne!(t1, t2);
        assert!(t1.len() >= 40);
        let c = BroadcastConfig {
            coordinators: vec![Coordinator {
                id: "x".into(),
                token_sha256: h1,
            }],
            ..Default::default()
        };
        assert_eq!(authenticate(&c, &t1).as_deref(), Some("x"));
    }
}
