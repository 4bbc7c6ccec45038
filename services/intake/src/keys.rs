//! Calling systems' API keys, the credential of every gRPC and HTTP call.
//!
//! A call carries `authorization: Bearer <key>` (gRPC metadata or an HTTP
//! header). The key is hashed and looked up in `intake.api_keys`; the
//! system it was issued to is the caller the trail records, as a verified
//! NATS identity is. With no keys configured every call is refused. What a
//! refused caller is told is fixed text: it never repeats the key sent.

use std::sync::Arc;

use herald_config::IntakeConfig;

pub(crate) const NO_KEYS: &str = "no API keys are configured (intake.api_keys), so every gRPC and HTTP request is refused; an operator adds one made by `herald apikey create --system <name>`";
pub(crate) const NO_KEY: &str = "send the calling system's API key as `authorization: Bearer <key>` (an HTTP header or gRPC metadata)";
pub(crate) const NOT_BEARER: &str =
    "the `authorization` value must read `Bearer <key>`, with the calling system's API key";
pub(crate) const UNKNOWN_KEY: &str = "the API key is not one of intake.api_keys; send `authorization: Bearer <key>` with a current key of the calling system";

pub(crate) const NO_TRAIL: &str = "this system's API key does not allow reading the trail by client, staff or case: an operator sets `read_trail = true` on its entry in intake.api_keys (`herald apikey create --system <name> --read-trail`)";

/// The configured keys: each one's SHA-256 with the system it belongs to.
#[derive(Clone)]
pub(crate) struct ApiKeys {
    keys: Arc<[(String, String)]>,
    /// The systems that may read the whole trail.
    trail_readers: Arc<[String]>,
}

impl ApiKeys {
    pub(crate) fn new(cfg: &IntakeConfig) -> ApiKeys {
        let keys = cfg
            .api_keys
            .iter()
            .flat_map(|s| s.key_sha256.iter().map(|h| (s.system.clone(), h.clone())))
            .collect();
        let trail_readers = cfg
            .api_keys
            .iter()
            .filter(|s| s.read_trail)
            .map(|s| s.system.clone())
            .collect();
        ApiKeys {
            keys,
            trail_readers,
        }
    }

    /// Whether `system` may query the trail by client, staff or case.
    pub(crate) fn reads_trail(&self, system: &str) -> bool {
        self.trail_readers.iter().any(|s| s == system)
    }

    /// The system whose key the `authorization` value (absent: `None`)
    /// carries, or why the call is refused.
    pub(crate) fn system_of(&self, authorization: Option<&[u8]>) -> Result<String, &'static str> {
        if self.keys.is_empty() {
            return Err(NO_KEYS);
        }
        let value = authorization.ok_or(NO_KEY)?;
        let key = std::str::from_utf8(value)
            .ok()
            .and_then(bearer)
            .ok_or(NOT_BEARER)?;
        herald_directory::credentials::holder_of(
            self.keys.iter().map(|(s, h)| (s.as_str(), h.as_str())),
            key,
        )
        .map(str::to_string)
        .ok_or(UNKNOWN_KEY)
    }
}

/// The key of an `authorization` value `Bearer <key>` (the scheme in any
/// case, as HTTP allows).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use herald_config::SystemKeys;
    use herald_directory::credentials::sha256_hex;

    use super::*;

    /// A configuration admitting each system with the hashes of its keys.
    pub(crate) fn config(systems: &[(&str, &[&str])]) -> IntakeConfig {
        IntakeConfig {
            api_keys: systems
                .iter()
                .map(|(system, keys)| SystemKeys {
                    system: system.to_string(),
                    key_sha256: keys.iter().map(|k| sha256_hex(k)).collect(),
                    ..Default::default()
                })
                .collect(),
            ..IntakeConfig::default()
        }
    }

    fn keys(systems: &[(&str, &[&str])]) -> ApiKeys {
        ApiKeys::new(&config(systems))
    }

    fn of(keys: &ApiKeys, value: &str) -> Result<String, &'static str> {
        keys.system_of(Some(value.as_bytes()))
    }

    #[test]
    fn a_key_names_the_system_it_was_issued_to() {
        let c = keys(&[("crm", &["crm-old", "crm-new"]), ("billing", &["bill-1"])]);
        for (value, system) in [
            ("Bearer crm-old", "crm"),
            ("Bearer crm-new", "crm"),
            ("bearer  bill-1 ", "billing"),
            ("BEARER bill-1", "billing"),
        ] {
            assert_eq!(of(&c, value).as_deref(), Ok(system), "{value}");
        }
    }

    #[test]
    fn a_missing_malformed_or_unknown_key_is_refused_without_repeating_it() {
        let c = keys(&[("crm", &["crm-key"])]);
        assert_eq!(c.system_of(None), Err(NO_KEY));
        assert_eq!(c.system_of(Some(b"Bearer \xff\xfe")), Err(NOT_BEARER));
        for value in [
            "crm-key",
            "Basic crm-key",
            "Bearer",
            "Bearer  ",
            "Token crm-key",
        ] {
            assert_eq!(of(&c, value), Err(NOT_BEARER), "{value}");
        }
        for value in [
            "Bearer crm-key2",
            "Bearer CRM-KEY",
            &format!("Bearer {}", sha256_hex("crm-key")),
        ] {
            assert_eq!(of(&c, value), Err(UNKNOWN_KEY), "{value}");
        }
        for message in [NO_KEY, NOT_BEARER, UNKNOWN_KEY, NO_KEYS] {
            assert!(!message.contains("crm-key"), "{message}");
            assert!(message.contains("authorization") || message.contains("api_keys"));
        }
    }

    #[test]
    fn with_no_keys_configured_every_call_is_refused() {
        let c = keys(&[]);
        assert_eq!(c.system_of(None), Err(NO_KEYS));
        assert_eq!(of(&c, "Bearer anything"), Err(NO_KEYS));
    }
}
