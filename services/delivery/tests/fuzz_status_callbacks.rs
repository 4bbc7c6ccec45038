//! Provider status callbacks, as anyone on the network can post them:
//! whatever the path, query, headers and body, reading one never panics,
//! and nothing is acted on without the provider's signature over exactly
//! that URL and those parameters. A callback the provider signed is always
//! believed, and reports what it says.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use herald_content::signature;
use herald_delivery::status::{self, Callback, SIGNATURE_HEADERS};
use herald_proto::v1::Channel;
use proptest::{collection::vec, option, prelude::*, sample::select};

/// `PROPTEST_CASES` when set, else a count small enough for every run.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

const SECRET: &str = "provider-token-for-callbacks";
const BASE: &str = "https://herald.example.org/";

const SMS_WORDS: &[&str] = &[
    "accepted",
    "scheduled",
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "undelivered",
    "failed",
    "canceled",
    "cancelled",
];
const VOICE_WORDS: &[&str] = &[
    "queued",
    "initiated",
    "ringing",
    "answered",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
    "cancelled",
];

/// The URL the provider was given, which its signature covers.
fn public_url(uri: &Uri) -> String {
    format!(
        "{}{}",
        BASE.trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    )
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        select(SMS_WORDS.to_vec()).prop_map(String::from),
        select(VOICE_WORDS.to_vec()).prop_map(String::from),
        "[A-Za-z -]{0,12}",
        any::<String>(),
    ]
}

/// A form body as a stranger might post it.
fn form() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        select(vec![
            "MessageStatus",
            "CallStatus",
            "SmsStatus",
            "MessageSid",
            "CallSid",
            "ErrorCode",
            "ErrorMessage",
            "job",
        ])
        .prop_map(String::from),
        any::<String>(),
    ];
    vec((name, word()), 0..6)
}

/// `s` with every byte but letters, digits and `-._~` percent-encoded, as
/// it appears in a request's path.
fn escaped(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A request target: a well-formed one with a job, or any path and query
/// made of the characters a URI may hold.
fn uri(channel: String) -> impl Strategy<Value = Uri> {
    let path = escaped(&channel);
    prop_oneof![
        "[a-z0-9_-]{0,12}".prop_map(move |job| format!("/v1/status/{path}?job={job}")),
        "/[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,40}",
    ]
    .prop_filter_map("not a URI", |s| s.parse::<Uri>().ok())
}

fn channel() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["sms", "voice", "email", "SMS"]).prop_map(String::from),
        any::<String>(),
    ]
}

/// Headers, with a signature that is anything at all: absent, random, or
/// the right one for some other request.
fn headers() -> impl Strategy<Value = HeaderMap> {
    let value = prop_oneof![
        vec(any::<u8>(), 0..40),
        "[A-Za-z0-9+/=]{28}".prop_map(String::into_bytes),
        (form(), "[ -~]{0,20}").prop_map(|(f, url)| signature::sign(SECRET, &url, &f).into_bytes()),
    ];
    vec(
        (
            select(vec!["x-twilio-signature", "x-signature", "x-other"]),
            value,
        ),
        0..3,
    )
    .prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (name, bytes) in pairs {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                h.append(name, v);
            }
        }
        h
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        form().prop_map(|f| serde_urlencoded::to_string(f)
            .unwrap_or_default()
            .into_bytes()),
        vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn a_stranger_s_status_callback_is_refused_unless_the_provider_signed_it(
        (channel, uri) in channel().prop_flat_map(|c| (Just(c.clone()), uri(c))),
        mut headers in headers(),
        body in body(),
        configured in (any::<bool>(), any::<bool>()),
        sign_it in any::<bool>(),
    ) {
        let params: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body).unwrap_or_default();
        if sign_it {
            // The right signature, though maybe not in the header read first.
            let sig = signature::sign(SECRET, &public_url(&uri), &params);
            headers.append("x-signature", HeaderValue::from_str(&sig)?);
        }
        let secret = configured.0.then_some(SECRET);
        let base = configured.1.then_some(BASE);
        let answer = status::read(secret.map(signature::Secrets::token), base, &channel, &uri, &headers, &body);
        let presented = SIGNATURE_HEADERS
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
        let signed = presented.is_some_and(|sig| {
            sig.trim() == signature::sign(SECRET, &public_url(&uri), &params)
        });
        match &answer {
            Err(r) if r.status == StatusCode::FORBIDDEN => {
                prop_assert!(!r.why.is_empty());
                prop_assert!(
                    !(secret.is_some() && base.is_some() && signed),
                    "a signed callback was refused: {:?}",
                    r
                );
            }
            other => {
                prop_assert!(
                    secret.is_some() && base.is_some() && signed,
                    "believed without the provider's signature: {:?}",
                    other
                );
                if let Err(r) = other {
                    prop_assert!(
                        [StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST].contains(&r.status),
                        "{:?}",
                        r
                    );
                    // Each refusal starts by naming what is wrong.
                    let named = ["channel:", "job:", "MessageStatus:", "CallStatus:"];
                    prop_assert!(named.iter().any(|n| r.why.starts_with(n)), "{:?}", r);
                }
            }
        }
    }

    #[test]
    fn a_callback_the_provider_signed_is_believed_and_read_as_sent(
        voice in any::<bool>(),
        job in "[a-z0-9_-]{1,16}",
        word_index in any::<prop::sample::Index>(),
        sid in option::of("[A-Z]{2}[0-9a-f]{8}"),
        error in option::of(("[0-9]{5}", "[A-Za-z ]{0,20}")),
        extra in vec(("[A-Z][a-z]{1,8}", "[ -~]{0,12}"), 0..3),
        header in select(SIGNATURE_HEADERS.to_vec()),
        padded in any::<bool>(),
    ) {
        let (channel, words, status_key, sid_key) = if voice {
            (Channel::Voice, VOICE_WORDS, "CallStatus", "CallSid")
        } else {
            (Channel::Sms, SMS_WORDS, "MessageStatus", "MessageSid")
        };
        let word = word_index.get(words);
        let mut form: Vec<(String, String)> = extra;
        form.push((status_key.into(), (*word).into()));
        if let Some(sid) = &sid {
            form.push((sid_key.into(), sid.clone()));
        }
        if let Some((code, message)) = &error {
            form.push(("ErrorCode".into(), code.clone()));
            form.push(("ErrorMessage".into(), message.clone()));
        }
        let path = format!("/v1/status/{}?job={job}", channel.name());
        let uri: Uri = path.parse()?;
        let body = serde_urlencoded::to_string(&form)?;
        let mut sig = signature::sign(SECRET, &public_url(&uri), &form);
        if padded {
            sig = format!(" {sig} ");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header, HeaderValue::from_str(&sig)?);

        let read = status::read(
            Some(signature::Secrets::token(SECRET)),
            Some(BASE),
            channel.name(),
            &uri,
            &headers,
            body.as_bytes(),
        );
        let reported = status::parse_status(channel, word)
            .ok_or_else(|| TestCaseError::fail(format!("{word} is not a status word")))?;
        let detail = match &error {
            None => String::new(),
            Some((code, message)) => format!("error code {code} {message}").trim().to_string(),
        };
        let expected = Callback {
            job_id: job.clone(),
            channel,
            reported,
            provider_id: sid.unwrap_or_default(),
            detail,
        };
        prop_assert_eq!(read, Ok(expected));

        // Any change to what was signed and it is refused.
        let mut tampered = form.clone();
        tampered.push(("Forged".into(), "1".into()));
        let tampered_body = serde_urlencoded::to_string(&tampered)?;
        let refused = status::read(
            Some(signature::Secrets::token(SECRET)),
            Some(BASE),
            channel.name(),
            &uri,
            &headers,
            tampered_body.as_bytes(),
        );
        prop_assert_eq!(refused.map_err(|r| r.status), Err(StatusCode::FORBIDDEN));
        let other_job: Uri = format!("/v1/status/{}?job={job}x", channel.name()).parse()?;
        let refused = status::read(
            Some(signature::Secrets::token(SECRET)),
            Some(BASE),
            channel.name(),
            &other_job,
            &headers,
            body.as_bytes(),
        );
        prop_assert_eq!(refused.map_err(|r| r.status), Err(StatusCode::FORBIDDEN));
    }
}
