//! Coordinator credentials: who may start, update and cancel an emergency
//! broadcast (SOP 004: emergency protocols name who raises the alarm).
//!
//! A coordinator holds a random token; the configuration keeps only its
//! SHA-256 (`[broadcast] coordinators = [{ id, token_sha256 }]`). Hashing
//! and the constant-time comparison are [`crate::credentials`]', shared
//! with intake's API keys.

use herald_config::Coordinator;

use crate::credentials;

/// The SHA-256 of a token, as the configuration writes it (lower-case hex).
pub fn token_sha256(token: &str) -> String {
    credentials::sha256_hex(token)
}

/// A new random token (256 bits, URL-safe) and its hash for the
/// configuration.
pub fn new_token() -> Result<(String, String), rand::rand_core::OsError> {
    credentials::new_secret()
}

/// The coordinator a credential belongs to, if any.
pub fn authenticate(coordinators: &[Coordinator], credential: &str) -> Option<String> {
    credentials::holder_of(
        coordinators
            .iter()
            .map(|c| (c.id.as_str(), c.token_sha256.as_str())),
        credential,
    )
    .map(str::to_string)
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
        let (t1, h1) = new_token().unwrap();
        let (t2, _) = new_token().unwrap();
        assert_ne!(t1, t2);
        assert!(t1.len() >= 40);
        let c = vec![Coordinator {
            id: "x".into(),
            token_sha256: h1,
        }];
        assert_eq!(authenticate(&c, &t1).as_deref(), Some("x"));
    }
}
