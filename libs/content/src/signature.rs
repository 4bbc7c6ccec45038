//! Provider webhook signatures, in the form SMS and voice providers use
//! (`X-Twilio-Signature` style): an HMAC over the full callback URL
//! followed by every POST parameter sorted by name and written as name
//! then value, base64-encoded. Status callbacks, key presses and SMS
//! replies are all checked here, and only here.
//!
//! What is believed follows the provider's own validator (the official
//! helper library's `RequestValidator`), because a callback it accepts and
//! Herald refuses is lost: providers do not repeat a 4xx.
//!
//! * The URL may be signed with or without its port. The provider's back
//!   end is not consistent about it, so both are tried: the URL as it
//!   arrived with an explicit port removed (`https://h:8443/x` →
//!   `https://h/x`), or the scheme's default port added when there is none
//!   (`https://h/x` → `https://h:443/x`, `http://` → `:80`).
//! * Parameters are sorted by name, then by value where a name repeats;
//!   a name and value posted twice count once.
//! * By default the key is the account's auth token and the hash SHA-1.
//!   A callback signed with a shared key instead (the provider's webhook
//!   settings) says so in [`SETTINGS_HEADER`] (`key=<id>,algorithm=HMAC_SHA256`):
//!   then the key is that shared key's secret and the hash the one named.
//! * A JSON body is not signed as parameters: the URL carries
//!   `bodySHA256=<hex SHA-256 of the body>` and the signature covers the
//!   URL alone. The hash must match the body as it arrived.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Headers a provider may put its signature in.
pub const HEADERS: [&str; 2] = ["x-twilio-signature", "x-signature"];

/// The header that names the shared key and algorithm of a callback signed
/// with a shared key; absent, the auth token and HMAC-SHA1 signed it.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";

/// The query parameter carrying the SHA-256 of a JSON body.
pub const BODY_HASH_PARAM: &str = "bodySHA256";

/// The hashes a provider signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

impl Algorithm {
    /// The algorithm a settings header names (`HMAC_SHA1`, `HMAC_SHA256`,
    /// in any case), or `None` for one Herald does not know.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name.trim().to_ascii_uppercase().as_str() {
            "HMAC_SHA1" => Some(Algorithm::HmacSha1),
            "HMAC_SHA256" => Some(Algorithm::HmacSha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "HMAC_SHA1",
            Algorithm::HmacSha256 => "HMAC_SHA256",
        }
    }
}

/// The secrets a deployment checks provider signatures with.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    /// The account's auth token (`delivery.provider_token`).
    pub auth_token: &'a str,
    /// The secret of the shared key a webhook setting signs with
    /// (`delivery.provider_signing_key`), if the deployment has one.
    pub shared_key: Option<&'a str>,
}

impl<'a> Secrets<'a> {
    /// The auth token alone: callbacks signed with a shared key are refused.
    pub fn token(auth_token: &'a str) -> Secrets<'a> {
        Secrets {
            auth_token,
            shared_key: None,
        }
    }
}

/// The provider's secrets as a service that takes its callbacks keeps
/// them, read once from `[delivery]` (which holds them for every service).
#[derive(Clone, Default)]
pub struct ProviderKeys {
    auth_token: Option<String>,
    shared_key: Option<String>,
}

impl ProviderKeys {
    pub fn from_config(cfg: &herald_config::DeliveryConfig) -> ProviderKeys {
        ProviderKeys {
            auth_token: cfg
                .provider_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            shared_key: cfg
                .provider_signing_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned()),
        }
    }

    /// [`check`] with these secrets: the parameters the signature covers,
    /// or why the callback is not believed (also when no token is set).
    pub fn check(
        &self,
        url: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let Some(auth_token) = self.auth_token.as_deref() else {
            return Err(
                "provider callbacks are not accepted: delivery.provider_token is not set".into(),
            );
        };
        let secrets = Secrets {
            auth_token,
            shared_key: self.shared_key.as_deref(),
        };
        check(secrets, url, headers, body).map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<secret>"))
            .field("shared_key", &self.shared_key.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// Why a callback is not believed; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("signature: missing (X-Twilio-Signature or X-Signature header)")]
    Missing,
    #[error(
        "X-Twilio-Webhooks-Signature-Settings: algorithm {0:?} is not one Herald checks (HMAC_SHA1 or HMAC_SHA256)"
    )]
    UnknownAlgorithm(String),
    #[error(
        "X-Twilio-Webhooks-Signature-Settings: signed with a shared key ({0}), but delivery.provider_signing_key is not set"
    )]
    NoSharedKey(String),
    #[error("bodySHA256: does not match the body")]
    BodyHash,
    #[error("signature: does not match this URL and these parameters")]
    Mismatch,
}

/// The signature a request carries, from the first of [`HEADERS`] present.
pub fn from_headers(headers: &http::HeaderMap) -> Option<&str> {
    HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
}

/// Checks a callback that arrived at the public address `url` with these
/// headers and body, and gives back the parameters its signature covers:
/// the form fields, or the top-level fields of a JSON body.
pub fn check(
    secrets: Secrets<'_>,
    url: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Refused> {
    let signature = from_headers(headers).ok_or(Refused::Missing)?;
    let (algorithm, secret) = match headers.get(SETTINGS_HEADER) {
        None => (Algorithm::HmacSha1, secrets.auth_token),
        Some(value) => {
            let settings = value.to_str().unwrap_or_default();
            let algorithm = match setting(settings, "algorithm") {
                None => Algorithm::HmacSha1,
                Some(name) => Algorithm::parse(name)
                    .ok_or_else(|| Refused::UnknownAlgorithm(name.to_string()))?,
            };
            let key = setting(settings, "key").unwrap_or("no key named");
            (
                algorithm,
                secrets
                    .shared_key
                    .ok_or_else(|| Refused::NoSharedKey(key.to_string()))?,
            )
        }
    };
    match body_hash(url) {
        Some(expected) => {
            let actual = hex::encode(Sha256::digest(body));
            if !same(actual.as_bytes(), expected.as_bytes()) {
                return Err(Refused::BodyHash);
            }
            if !verify_with(algorithm, secret, url, &[], signature) {
                return Err(Refused::Mismatch);
            }
            Ok(json_fields(body))
        }
        None => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_bytes(body).unwrap_or_default();
            if verify_with(algorithm, secret, url, &params, signature) {
                Ok(params)
            } else {
                Err(Refused::Mismatch)
            }
        }
    }
}

/// A `name=value` part of a settings header (`key=...,algorithm=...`).
fn setting<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim() == name && !v.trim().is_empty()).then(|| v.trim())
    })
}

/// The `bodySHA256` the URL's query carries, if any.
fn body_hash(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == BODY_HASH_PARAM)
        .map(|(_, v)| v)
}

/// The top-level fields of a JSON object, strings as they are and other
/// values as JSON text; nothing for a body that is not an object.
fn json_fields(body: &[u8]) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// What is signed: the URL, then each distinct name and value pair sorted
/// by name and then value.
fn signed_text(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut text = url.as_bytes().to_vec();
    for (k, v) in sorted {
        text.extend_from_slice(k.as_bytes());
        text.extend_from_slice(v.as_bytes());
    }
    text
}

fn digest(algorithm: Algorithm, secret: &str, text: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    #[allow(clippy::expect_used)]
    match algorithm {
        Algorithm::HmacSha1 => {
            let mut mac =
                Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
            mac.update(text);
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::HmacSha256 => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
            mac.update(text);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// The signature a provider sends for a callback, with the auth token and
/// HMAC-SHA1.
pub fn sign(secret: &str, url: &str, params: &[(String, String)]) -> String {
    sign_with(Algorithm::HmacSha1, secret, url, params)
}

/// The signature a provider sends for a callback with `algorithm`.
pub fn sign_with(
    algorithm: Algorithm,
    secret: &str,
    url: &str,
    params: &[(String, String)],
) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest(
        algorithm,
        secret,
        &signed_text(url, params),
    ))
}

/// Whether `signature` (HMAC-SHA1 with the auth token) is right for this
/// callback, over `url` with or without its port.
pub fn verify(secret: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    verify_with(Algorithm::HmacSha1, secret, url, params, signature)
}

/// Whether `signature` is right for this callback with `algorithm`, over
/// any of [`port_forms`] of `url`, compared in constant time.
pub fn verify_with(
    algorithm: Algorithm,
    secret: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    port_forms(url).iter().fold(false, |believed, form| {
        let right = digest(algorithm, secret, &signed_text(form, params));
        same(&right, &given) | believed
    })
}

/// The forms of `url` a provider may have signed: as it is, and with its
/// explicit port removed or, without one, the scheme's default port added
/// (443 for https, 80 otherwise), as the provider's validator tries them.
pub fn port_forms(url: &str) -> Vec<String> {
    let mut forms = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return forms;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_port) = authority.split_at(authority.rfind('@').map_or(0, |i| i + 1));
    let port_at = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'))
        .filter(|&i| host_port[i + 1..].bytes().all(|b| b.is_ascii_digit()));
    let other = match port_at {
        Some(i) => format!("{scheme}://{userinfo}{}{tail}", &host_port[..i]),
        None if host_port.is_empty() => return forms,
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{userinfo}{host_port}:{default}{tail}")
        }
    };
    forms.push(other);
    forms
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
        assert!(!verify_with(
            Algorithm::HmacSha256,
            "s3cret",
            url,
            &params(),
            &sig
        ));
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let url = "https://h.example/cb";
        let mut reversed = params();
        reversed.reverse();
        assert_eq!(sign("k", url, &params()), sign("k", url, &reversed));
    }

    #[test]
    fn a_url_is_tried_with_and_without_its_port() {
        assert_eq!(
            port_forms("https://h.example:8443/bc/v1/k?b=1"),
            [
                "https://h.example:8443/bc/v1/k?b=1",
                "https://h.example/bc/v1/k?b=1"
            ]
        );
        assert_eq!(
            port_forms("https://h.example/x"),
            ["https://h.example/x", "https://h.example:443/x"]
        );
        assert_eq!(
            port_forms("http://u:p@h.example?q=a:1"),
            [
                "http://u:p@h.example?q=a:1",
                "http://u:p@h.example:80?q=a:1"
            ]
        );
        assert_eq!(
            port_forms("https://[::1]:8443/x"),
            ["https://[::1]:8443/x", "https://[::1]/x"]
        );
        assert_eq!(port_forms("not a url"), ["not a url"]);
    }

    #[test]
    fn settings_name_the_key_and_algorithm() {
        let header = "key=webhooks_sharedkey_01,algorithm=HMAC_SHA256";
        assert_eq!(setting(header, "algorithm"), Some("HMAC_SHA256"));
        assert_eq!(setting(header, "key"), Some("webhooks_sharedkey_01"));
        assert_eq!(setting("key=k", "algorithm"), None);
        assert_eq!(Algorithm::parse("hmac_sha256"), Some(Algorithm::HmacSha256));
        assert_eq!(Algorithm::parse("HMAC_SHA512"), None);
    }
}
