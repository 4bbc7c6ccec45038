//! A setting that must never reach a log: passwords, signing keys, and URLs
//! that may carry `user:password@`.
//!
//! [`Secret`] prints as `[redacted]` under `{:?}`, has no `Display`, and is
//! read only through [`Secret::expose_secret`], so every place that uses the
//! value is explicit and easy to find. It serialises as the plain value,
//! because a configuration is turned into a TOML table while loading and
//! written to the file a child process reads; serialising a [`crate::Config`]
//! into a log line would therefore leak it — format it with `{:?}` instead.
//! When it cannot be read (a number where a string belongs), the error does
//! not repeat the value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A string that is redacted when printed. See the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: pass it straight to what needs it, never to a log.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// For a URL: the URL with the password of its `user:password@` part,
    /// if any, replaced by `***`, for messages that name a server.
    pub fn url_without_password(&self) -> String {
        url_without_password(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        d.deserialize_string(StringOnly)
    }
}

/// Takes a string and refuses anything else without echoing it, where
/// serde's own message would quote the number or boolean it was given.
struct StringOnly;

const NOT_A_STRING: &str = "expected a string (the value is not shown; in an environment variable, put it in double quotes)";

impl<'de> de::Visitor<'de> for StringOnly {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(de::Error::custom(NOT_A_STRING))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(de::Error::custom(NOT_A_STRING))
    }
}

fn url_without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_when_printed_and_kept_when_serialised() {
        let s = Secret::from("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose_secret(), "hunter2-hunter2-hunter2");
        let table = toml::Table::try_from(std::collections::BTreeMap::from([("k", &s)])).unwrap();
        assert_eq!(table["k"].as_str(), Some("hunter2-hunter2-hunter2"));
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused_without_being_repeated() {
        #[derive(Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            k: Secret,
        }
        // As the loader reads it: from a table already parsed.
        let read = |text: &str| T::deserialize(toml::Value::Table(text.parse().unwrap()));
        let err = read("k = 98765431").unwrap_err().to_string();
        assert!(!err.contains("98765431"), "{err}");
        assert!(err.contains("expected a string"), "{err}");
        let ok = read("k = \"98765431\"").unwrap();
        assert_eq!(ok.k.expose_secret(), "98765431");
    }

    #[test]
    fn passwords_are_taken_out_of_urls() {
        for (url, shown) in [
            ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
            ("smtps://user:p%40ss@mail:465", "smtps://user:***@mail:465"),
            (
                "smtp://user@mail:25?tls=required",
                "smtp://user@mail:25?tls=required",
            ),
            ("redis://:a@b@host/0", "redis://:***@host/0"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(Secret::from(url).url_without_password(), shown, "{url}");
        }
    }
}
