//! Provider callbacks as the provider really sends them, through the real
//! services: signed by the provider's official helper library (the
//! signatures in `tests/fixtures/provider-signatures/signatures.json`, made
//! by `make.py` there), to the addresses Herald handed out.
//!
//! * A broadcast whose id holds `+`, `=`, `@` and `:` gets its call
//!   outcomes and its key presses: each value in an address comes back as
//!   it went out.
//! * On a deployment whose public URLs carry a port (`https://host:8443`),
//!   a callback signed over the URL without the port is taken, as is one
//!   signed with it; a wrong signature is still refused.

use std::time::Duration;

use herald_proto::{
    subjects,
    v1::{
        Audience, BroadcastMessage, BroadcastStatus, Cycles, Severity, StartBroadcast,
        broadcast_reply, broadcast_status_reply,
    },
};
use herald_testkit::{
    TestSystem,
    fixtures::contact,
    http::Request,
    system::{COORDINATOR_TOKEN, PUBLIC_URL},
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const CALLBACKS: &str = "https://herald.example.test";
const PHONE: &str = "+447700900001";

/// A callback the provider's library signed.
struct Signed {
    url: String,
    params: Vec<(String, String)>,
    signature: String,
}

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/provider-signatures/signatures.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn signed(name: &str) -> Signed {
    let all = fixtures();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("e2e/{name}"))
        .unwrap_or_else(|| panic!("no signature fixture e2e/{name}"))
        .clone();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    Signed {
        url: text(&case["signed_url"]),
        params: case["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (text(&p[0]), text(&p[1])))
            .collect(),
        signature: text(&case["signature"]),
    }
}

/// The auth token the fixtures were signed with.
fn provider_token() -> String {
    fixtures()["auth_token"].as_str().unwrap().to_string()
}

/// A system whose provider callbacks go to `callbacks` and whose
/// confirmation addresses start with `public`.
async fn system(callbacks: &str, public: &str) -> TestSystem {
    let token = provider_token();
    let (callbacks, public) = (callbacks.to_string(), public.to_string());
    let mut sys = TestSystem::start_with(move |c| {
        c.delivery.provider_account = Some("AC-test".into());
        c.delivery.provider_token = Some(token.into());
        c.delivery.status_callback_base = Some(callbacks);
        c.broadcast.public_url = public;
    })
    .await;
    sys.start_broadcast().await;
    sys.add_contacts(&[contact("ida", Some("ida@example.org"), Some(PHONE), "sms")])
        .await;
    sys
}

/// Starts a broadcast to Ida and gives back the call the provider got.
async fn broadcast_to_ida(sys: &TestSystem, id: &str) -> Request {
    let start = StartBroadcast {
        broadcast_id: id.into(),
        credential: COORDINATOR_TOKEN.into(),
        severity: Severity::Extreme as i32,
        audience: Some(Audience {
            contact_ids: vec!["ida".into()],
            ..Default::default()
        }),
        messages: vec![BroadcastMessage {
            language: "en".into(),
            subject: "Evacuate building B".into(),
            body: "Evacuate building B. Gather at point B.".into(),
            speak: "Evacuate building B now.".into(),
            sms: String::new(),
        }],
        cycles: Some(Cycles {
            cycles: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = sys
        .broadcast_request(subjects::BROADCAST_START, &start)
        .await;
    assert!(
        matches!(reply.result, Some(broadcast_reply::Result::Accepted(_))),
        "{reply:?}"
    );
    sys.http.wait_for("/voice", 1, WAIT).await.remove(0)
}

/// The key-press address in a call's script.
fn key_press_url(call: &Request) -> String {
    let twiml = call.field("Twiml").expect("a call script");
    let start = twiml.find("action=\"").expect("a Gather action") + "action=\"".len();
    let end = start + twiml[start..].find('"').unwrap();
    twiml[start..end].replace("&amp;", "&")
}

/// Posts a signed callback to where the public address `received`, under
/// `public_base`, leads: the root of `service`'s port.
async fn post(
    sys: &TestSystem,
    service: &str,
    public_base: &str,
    received: &str,
    cb: &Signed,
) -> (u16, String) {
    let path = received
        .strip_prefix(public_base)
        .unwrap_or_else(|| panic!("{received} is not under {public_base}"));
    let answer = reqwest::Client::new()
        .post(format!("http://{}{path}", sys.http_addr(service)))
        .header("X-Twilio-Signature", &cb.signature)
        .form(&cb.params)
        .send()
        .await
        .expect("the service answers");
    let code = answer.status().as_u16();
    (code, answer.text().await.unwrap_or_default())
}

async fn until_status(
    sys: &TestSystem,
    id: &str,
    what: &str,
    done: impl Fn(&BroadcastStatus) -> bool,
) -> BroadcastStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(broadcast_status_reply::Result::Status(s)) =
            sys.broadcast_status(id).await.result
            && done(&s)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_whose_id_has_reserved_characters_gets_its_call_outcomes_and_key_presses() {
    // Broadcast ids may hold + = @ : besides letters, digits, - and _.
    const ID: &str = "drill+1=a@b:c";
    let sys = system(CALLBACKS, PUBLIC_URL).await;
    let call = broadcast_to_ida(&sys, ID).await;

    // The provider reports the call's progress to the address it was given.
    let status_callback = call.field("StatusCallback").expect("a status callback");
    for (outcome, answer) in [("ringing", 204), ("completed", 204)] {
        let cb = signed(&format!("reserved-id/status-{outcome}"));
        assert_eq!(
            status_callback, cb.url,
            "the status callback Herald gave is not the one the provider signed"
        );
        let (code, text) = post(&sys, "delivery", CALLBACKS, status_callback, &cb).await;
        assert_eq!(code, answer, "{outcome}: {text}");
    }
    let s = until_status(&sys, ID, "the call reported completed", |s| {
        s.recipient_rows
            .first()
            .is_some_and(|r| r.voice == "delivered")
    })
    .await;
    assert_eq!(s.broadcast_id, ID);

    // Ida pressed a key during the call: confirmed.
    let cb = signed("reserved-id/key-press");
    let action = key_press_url(&call);
    assert_eq!(action, cb.url);
    let (code, text) = post(&sys, "broadcast", PUBLIC_URL, &action, &cb).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("Your confirmation is recorded"), "{text}");
    until_status(&sys, ID, "Ida's key press recorded", |s| s.confirmed == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_url_with_a_port_callbacks_signed_with_or_without_it_are_taken() {
    const ID: &str = "port-drill";
    let callbacks = format!("{CALLBACKS}:8443");
    let public = PUBLIC_URL.replacen("herald.test", "herald.test:8443", 1);
    let sys = system(&callbacks, &public).await;
    let call = broadcast_to_ida(&sys, ID).await;
    let status_callback = call.field("StatusCallback").expect("a status callback");
    assert_eq!(
        status_callback,
        format!("{callbacks}/v1/status/voice?job=port-drill-r0-voice-c1")
    );

    // Signed over the URL without the port, with it, and with a secret
    // that is not the provider's.
    let without = signed("port/status-signed-without-port");
    assert_eq!(without.url, status_callback.replace(":8443", ""));
    let with = signed("port/status-signed-with-port");
    assert_eq!(with.url, status_callback);
    let wrong = signed("port/status-signed-with-another-secret");
    let post_status = |cb| post(&sys, "delivery", &callbacks, status_callback, cb);
    assert_eq!(post_status(&without).await.0, 204);
    assert_eq!(post_status(&with).await.0, 204);
    let (code, text) = post_status(&wrong).await;
    assert_eq!(code, 403);
    assert!(text.starts_with("signature: does not match"), "{text}");
    until_status(&sys, ID, "the call reported completed", |s| {
        s.recipient_rows
            .first()
            .is_some_and(|r| r.voice == "delivered")
    })
    .await;

    // The key press, signed without the port: confirmed; a forgery is not.
    let action = key_press_url(&call);
    assert!(action.starts_with(&public), "{action}");
    let forged = signed("port/key-press-signed-with-another-secret");
    let (code, _) = post(&sys, "broadcast", &public, &action, &forged).await;
    assert_eq!(code, 403);
    let pressed = signed("port/key-press-signed-without-port");
    assert_eq!(pressed.url, action.replace(":8443", ""));
    let (code, text) = post(&sys, "broadcast", &public, &action, &pressed).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("Your confirmation is recorded"), "{text}");
    until_status(&sys, ID, "Ida's key press recorded", |s| s.confirmed == 1).await;
}
