//! The two signatures strangers present to Herald: a provider's webhook
//! signature over a callback, and the token in a link Herald handed out.
//! Whatever is presented, checking it never panics and never succeeds
//! without the right signature; the right one always succeeds; and a
//! signature made for one thing verifies nothing else.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use herald_content::{signature, token};
use proptest::{collection::vec, prelude::*};

/// `PROPTEST_CASES` when set, else a count small enough for every run.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

/// A form as a provider posts it: any names and values, repeats allowed.
fn form() -> impl Strategy<Value = Vec<(String, String)>> {
    let text = || prop_oneof![3 => "[A-Za-z0-9]{0,12}", 1 => any::<String>()];
    vec((text(), text()), 0..8)
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "https://herald\\.example\\.org/v1/status/(sms|voice)\\?job=[a-z0-9]{1,8}",
        1 => any::<String>(),
    ]
}

/// A presented webhook signature: anything, something shaped like one
/// (base64 of 20 bytes, as HMAC-SHA1 gives), or padded with spaces.
fn presented_signature() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::array::uniform20(any::<u8>()).prop_map(|b| STANDARD.encode(b)),
        vec(any::<u8>(), 0..40).prop_map(|b| STANDARD.encode(b)),
        "[A-Za-z0-9+/=]{26,30}",
    ]
}

/// A presented link token: anything, or something shaped like one (16
/// bytes in unpadded URL-safe base64).
fn presented_token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::array::uniform16(any::<u8>()).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        vec(any::<u8>(), 0..32).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        "[A-Za-z0-9_-]{21,23}",
    ]
}

/// Secrets as a deployment configures them (text, without NUL: HMAC pads
/// a short key with zero bytes, so "k" and "k\0" are one key).
fn secret() -> impl Strategy<Value = String> {
    "[^\\x00]{1,80}"
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn a_forged_provider_signature_is_never_believed(
        secret in secret(),
        url in url(),
        form in form(),
        presented in presented_signature(),
    ) {
        let right = signature::sign(&secret, &url, &form);
        let believed = signature::verify(&secret, &url, &form, &presented);
        prop_assert_eq!(believed, presented.trim() == right, "{:?} against {:?}", presented, right);
    }

    #[test]
    fn a_correctly_signed_callback_always_verifies_in_any_order(
        secret in secret(),
        url in url(),
        form in form(),
        rotate in any::<prop::sample::Index>(),
    ) {
        let sig = signature::sign(&secret, &url, &form);
        prop_assert!(signature::verify(&secret, &url, &form, &sig));
        // Providers post the parameters in any order.
        let mut reordered = form.clone();
        if !reordered.is_empty() {
            let n = rotate.index(reordered.len());
            reordered.rotate_left(n);
        }
        reordered.reverse();
        prop_assert!(signature::verify(&secret, &url, &reordered, &sig));
    }

    #[test]
    fn a_provider_signature_for_one_callback_verifies_no_other(
        secret in secret(),
        other_secret in secret(),
        url in url(),
        other_url in url(),
        form in proptest::collection::btree_map("[A-Za-z]{1,10}", "[ -~]{1,12}", 1..6),
        which in any::<prop::sample::Index>(),
        replacement in "[ -~]{0,12}",
    ) {
        let form: Vec<(String, String)> = form.into_iter().collect();
        let sig = signature::sign(&secret, &url, &form);
        if other_secret != secret {
            prop_assert!(!signature::verify(&other_secret, &url, &form, &sig));
        }
        if other_url != url {
            prop_assert!(!signature::verify(&secret, &other_url, &form, &sig));
        }
        // The provider's scheme joins names and values without separators,
        // so a change that keeps every length is the one it must catch in
        // general: any other value of the same length.
        let mut changed = form.clone();
        let i = which.index(changed.len());
        let old = changed[i].1.clone();
        let mut new_value: String =
            replacement.chars().chain(std::iter::repeat('x')).take(old.len()).collect();
        if new_value == old {
            let first = if old.starts_with('x') { "y" } else { "x" };
            new_value.replace_range(..1, first);
        }
        changed[i].1 = new_value;
        prop_assert!(!signature::verify(&secret, &url, &changed, &sig));
        // A parameter added or dropped is caught too.
        let mut longer = form.clone();
        longer.push(("Extra".into(), "1".into()));
        prop_assert!(!signature::verify(&secret, &url, &longer, &sig));
        prop_assert!(!signature::verify(&secret, &url, &form[1..], &sig));
    }

    #[test]
    fn the_signature_header_is_read_without_a_panic(
        values in vec((0..3usize, vec(any::<u8>(), 0..40)), 0..4),
    ) {
        let mut headers = http::HeaderMap::new();
        for (which, bytes) in &values {
            let name = ["x-twilio-signature", "x-signature", "x-other"][*which];
            if let Ok(v) = http::HeaderValue::from_bytes(bytes) {
                headers.append(name, v);
            }
        }
        if let Some(found) = signature::from_headers(&headers) {
            let names = signature::HEADERS;
            prop_assert!(names.iter().any(|n| headers
                .get_all(*n)
                .iter()
                .any(|v| v.to_str().ok() == Some(found))));
        }
    }

    #[test]
    fn a_stranger_s_link_token_never_verifies(
        secret in vec(any::<u8>(), 0..80),
        message in any::<String>(),
        presented in presented_token(),
    ) {
        let right = token::sign(&secret, &message);
        let believed = token::verify(&secret, &message, &presented);
        prop_assert_eq!(believed, presented.trim() == right, "{:?} against {:?}", presented, right);
    }

    #[test]
    fn a_link_token_verifies_its_own_message_and_no_other(
        secret in secret(),
        other_secret in secret(),
        message in any::<String>(),
        other_message in any::<String>(),
    ) {
        let t = token::sign(secret.as_bytes(), &message);
        prop_assert_eq!(t.len(), 22);
        prop_assert!(token::verify(secret.as_bytes(), &message, &t));
        if other_message != message {
            prop_assert!(!token::verify(secret.as_bytes(), &other_message, &t));
        }
        if other_secret != secret {
            prop_assert!(!token::verify(other_secret.as_bytes(), &message, &t));
        }
        // Every shorter or longer cut of the token fails.
        for end in 0..t.len() {
            prop_assert!(!token::verify(secret.as_bytes(), &message, &t[..end]));
        }
        let longer = format!("{t}A");
        prop_assert!(!token::verify(secret.as_bytes(), &message, &longer));
    }
}
