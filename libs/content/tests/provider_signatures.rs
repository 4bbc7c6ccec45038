//! Herald believes exactly the callbacks the provider's own validator
//! believes. The signatures and verdicts come from the provider's official
//! helper library (`tests/fixtures/provider-signatures/signatures.json`,
//! written by `make.py` beside it, which names the library and version),
//! not from Herald's code: a callback signed over the URL without its port,
//! or with it, with repeated or non-ASCII fields, with a shared key and
//! HMAC-SHA256, or over a JSON body by its `bodySHA256`.

use herald_content::signature::{self, Refused, Secrets};
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/provider-signatures/signatures.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| (text(&p[0]).to_string(), text(&p[1]).to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The headers the provider sends with a case's callback.
fn headers(case: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "X-Twilio-Signature",
        HeaderValue::from_str(text(&case["signature"]))
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"])),
    );
    if let Some(settings) = case["settings"].as_str() {
        h.insert(
            signature::SETTINGS_HEADER,
            HeaderValue::from_str(settings).unwrap_or_else(|e| panic!("{settings}: {e}")),
        );
    }
    h
}

/// The secrets a deployment holds for a case: its key as the auth token,
/// or as the shared key when the callback names one.
fn secrets(case: &Value) -> Secrets<'_> {
    let secret = text(&case["secret"]);
    if case["settings"].is_null() {
        Secrets::token(secret)
    } else {
        Secrets {
            auth_token: "the-auth-token-which-did-not-sign-this",
            shared_key: Some(secret),
        }
    }
}

/// The body of a check: its JSON text, or its fields form-encoded.
fn body(check: &Value) -> Vec<u8> {
    match check["body"].as_str() {
        Some(json) => json.as_bytes().to_vec(),
        None => serde_urlencoded::to_string(pairs(&check["params"]))
            .unwrap_or_else(|e| panic!("{}: {e}", check["params"]))
            .into_bytes(),
    }
}

#[test]
fn herald_agrees_with_the_provider_s_validator_on_every_callback() {
    let all = fixtures();
    assert!(text(&all["made_by"]).starts_with("twilio "));
    let cases = all["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut checked = 0;
    for case in cases {
        for check in case["checks"].as_array().unwrap() {
            let url = text(&check["url"]);
            let answer = signature::check(secrets(case), url, &headers(case), &body(check));
            let expected = check["accepted"].as_bool().unwrap();
            assert_eq!(
                answer.is_ok(),
                expected,
                "{}: received at {url}, the provider's validator says {expected}; Herald: {answer:?}",
                case["name"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} checks");
}

#[test]
fn a_believed_callback_gives_back_the_fields_it_was_signed_with() {
    let all = fixtures();
    let case = |name: &str| {
        all["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let form = case("repeated-names-unicode-and-reserved-characters");
    let fields = signature::check(
        secrets(&form),
        text(&form["signed_url"]),
        &headers(&form),
        &body(&form),
    )
    .unwrap();
    assert_eq!(fields, pairs(&form["params"]));

    let json = case("json-body-with-body-sha256");
    let fields = signature::check(
        secrets(&json),
        text(&json["signed_url"]),
        &headers(&json),
        &body(&json),
    )
    .unwrap();
    let status = fields.iter().find(|(k, _)| k == "MessageStatus");
    assert_eq!(status.map(|(_, v)| v.as_str()), Some("delivered"));
}

#[test]
fn a_shared_key_callback_is_refused_where_no_shared_key_is_configured() {
    let all = fixtures();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "shared-key-hmac-sha256")
        .unwrap();
    let url = text(&case["signed_url"]);
    let only_token = Secrets::token(text(&case["secret"]));
    let refused = signature::check(only_token, url, &headers(case), &body(case)).unwrap_err();
    assert!(matches!(refused, Refused::NoSharedKey(_)), "{refused:?}");
    assert!(
        refused
            .to_string()
            .contains("delivery.provider_signing_key"),
        "{refused}"
    );

    let mut unknown = headers(case);
    unknown.insert(
        signature::SETTINGS_HEADER,
        HeaderValue::from_static("key=k1,algorithm=HMAC_SHA512"),
    );
    let refused = signature::check(secrets(case), url, &unknown, &body(case)).unwrap_err();
    assert_eq!(refused, Refused::UnknownAlgorithm("HMAC_SHA512".into()));
    assert!(
        refused
            .to_string()
            .starts_with("X-Twilio-Webhooks-Signature-Settings:")
    );

    let mut none = headers(case);
    none.remove("X-Twilio-Signature");
    let refused = signature::check(secrets(case), url, &none, &body(case)).unwrap_err();
    assert!(refused.to_string().starts_with("signature: missing"));
}
