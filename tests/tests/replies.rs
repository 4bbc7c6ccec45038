//! People answering Herald's messages, end to end over real NATS, Redis,
//! SMTP and HTTP: the posts arrive as the providers send them (shapes in
//! `tests/fixtures/inbound/`, each citing its source), and what is asserted
//! is what then reached the sinks.
//!
//! * An escalation is stopped by the link in its email, by an SMS `ACK`
//!   code and by a key press on its call, and nothing is sent to the next
//!   level afterwards. A wrong code, a forged link and an unsigned post
//!   acknowledge nothing.
//! * A client's email reply and SMS reply land in their case's trail,
//!   reach the responsible staff member with their words, run the paused
//!   clock again, and the next message about the case goes to the client
//!   on the channel they last wrote on.

use std::time::Duration;

use herald_directory::contacts::Contact;
use herald_proto::v1::{
    AuditStep, CaseChannel, CaseEvent, CaseEventKind, Channel, ClockState, CommunicationType,
    NotificationRequest, Priority, Recipient, recipient::Target,
};
use herald_testkit::{
    TestSystem,
    cases::{client, escalation_view, event, fast_policies, opened, sla_view, staff, summaries},
    fixtures::contact,
    http::Request,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const PROVIDER_TOKEN: &str = "provider-token-for-replies-0123";
const MAIL_KEY: &str = "mail-webhook-signing-key-0123";
/// Delivery's public base (status callbacks, inbound webhooks).
const DELIVERY_URL: &str = "https://herald.test/dl";
/// The escalation service's public base (acknowledgement links, keys).
const ESCALATION_URL: &str = "https://herald.test/esc";

/// A member of staff reached by phone call, on the support team.
fn caller_staff() -> Contact {
    let mut c = contact("fl-vic", None, Some("+447700900777"), "voice");
    c.role = Some("frontline".into());
    c.team = Some(herald_testkit::cases::TEAM.into());
    c.organisation = Some("herald-staff".into());
    c
}

/// Herald with sla and escalation, its public bases as a deployment's,
/// policies whose levels last `level`, the staff roster and two clients.
async fn system(level: Duration) -> (TestSystem, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = dir.path().to_path_buf();
    let mut sys = TestSystem::start_with(|c| {
        fast_policies(c, &path, level);
        c.delivery.provider_account = Some("AC-test".into());
        c.delivery.provider_token = Some(PROVIDER_TOKEN.into());
        c.delivery.status_callback_base = Some(DELIVERY_URL.into());
        c.delivery.inbound_email_signing_key = Some(MAIL_KEY.into());
        c.escalation.public_url = ESCALATION_URL.into();
    })
    .await;
    let mut people = staff();
    people.push(caller_staff());
    people.extend((0..2).map(client));
    sys.add_contacts(&people).await;
    sys.start_sla().await;
    sys.start_escalation().await;
    (sys, dir)
}

/// Where a public address really leads in the test.
fn local(sys: &TestSystem, public: &str) -> String {
    public
        .replace(
            ESCALATION_URL,
            &format!("http://{}", sys.http_addr("escalation")),
        )
        .replace(
            DELIVERY_URL,
            &format!("http://{}", sys.http_addr("delivery")),
        )
}

fn fixture(name: &str) -> Vec<(String, String)> {
    let path = format!(
        "{}/fixtures/inbound/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `params` with `set` put in (replacing the fixture's values).
fn with(mut params: Vec<(String, String)>, set: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in set {
        match params.iter_mut().find(|(name, _)| name == k) {
            Some(p) => p.1 = v.to_string(),
            None => params.push((k.to_string(), v.to_string())),
        }
    }
    params
}

/// Posts form `params` to a public address, with the provider's
/// signature over it (or none).
async fn provider_post(
    sys: &TestSystem,
    public: &str,
    params: &[(String, String)],
    signed: bool,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(local(sys, public)).form(params);
    if signed {
        req = req.header(
            "X-Twilio-Signature",
            herald_content::signature::sign(PROVIDER_TOKEN, public, params),
        );
    }
    req.send().await.expect("Herald answers")
}

/// An SMS from `from` as the provider's incoming-message webhook posts it.
async fn text_in(sys: &TestSystem, from: &str, body: &str, sid: &str) -> reqwest::Response {
    let params = with(
        fixture("sms-reply"),
        &[
            ("From", from),
            ("Body", body),
            ("MessageSid", sid),
            ("SmsSid", sid),
            ("SmsMessageSid", sid),
        ],
    );
    provider_post(
        sys,
        &format!("{DELIVERY_URL}/v1/inbound/sms"),
        &params,
        true,
    )
    .await
}

/// An email reply as the inbound-parse webhook posts it, signed with
/// `key`.
async fn mail_in(
    sys: &TestSystem,
    set: &[(&str, &str)],
    key: &str,
    token: &str,
) -> reqwest::Response {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = herald_content::mailhook::sign(key, &timestamp, token);
    let mut fields = with(fixture("email-reply"), set);
    fields = with(
        fields,
        &[
            ("timestamp", &timestamp),
            ("token", token),
            ("signature", &signature),
        ],
    );
    reqwest::Client::new()
        .post(local(sys, &format!("{DELIVERY_URL}/v1/inbound/email")))
        .form(&fields)
        .send()
        .await
        .expect("delivery answers")
}

/// Polls `f` until it gives something, for at most [`WAIT`].
async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn texts_to(sys: &TestSystem, phone: &str) -> Vec<Request> {
    sys.http
        .requests_to("/sms")
        .into_iter()
        .filter(|r| r.field("To") == Some(phone))
        .collect()
}

async fn wait_for_text(sys: &TestSystem, phone: &str, needle: &str) -> Request {
    eventually("an SMS", move || async move {
        texts_to(sys, phone)
            .into_iter()
            .find(|r| r.field("Body").is_some_and(|b| b.contains(needle)))
    })
    .await
}

/// The first address in `text` under `base`.
fn link_in(text: &str, base: &str) -> String {
    let start = text.find(base).expect("a link");
    text[start..].split_whitespace().next().unwrap().to_string()
}

/// A critical case for client-0 with `staff` responsible: escalated the
/// moment it opens, first to `staff`.
fn critical(case_id: &str, staff: &str) -> CaseEvent {
    let mut ev = opened(case_id, "client-0", CaseChannel::Email, Priority::Critical);
    if let Some(d) = ev.details.as_mut() {
        d.responsible_staff = staff.into();
    }
    ev
}

/// The case events' reasons in the trail.
fn reasons(trail: &[herald_proto::v1::AuditRecord]) -> Vec<String> {
    trail
        .iter()
        .filter(|r| r.step == AuditStep::CaseEvent as i32)
        .filter_map(|r| r.attributes.get("reason").cloned())
        .collect()
}

/// After an acknowledgement: nothing more will happen, the team lead
/// (level 2) heard nothing, and the escalation says who stopped it.
async fn stopped_before_the_next_level(sys: &TestSystem, case_id: &str, by: &str) {
    sys.wait_until_settled().await;
    let reference = format!("REF-{case_id}");
    assert!(
        sys.smtp
            .mails_to("kim@staff.example.org", &reference)
            .is_empty(),
        "the team lead was alerted after the acknowledgement"
    );
    let view = escalation_view(sys, case_id).await;
    assert_eq!(view.state, "stopped");
    assert_eq!(view.level, 1);
    assert_eq!(view.stopped_by, format!("acknowledged by contact:{by}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_in_an_escalation_email_acknowledges_the_case() {
    let (sys, _dir) = system(Duration::from_secs(6)).await;
    let case = "CASE-LINK";
    sys.case_ok(&critical(case, "fl-sam")).await;
    let mail = sys
        .smtp
        .wait_for_mail_to("sam@staff.example.org", "REF-CASE-LINK", WAIT)
        .await;
    let link = link_in(&mail.body(), ESCALATION_URL);
    assert!(
        link.contains("/v1/escalation/ack?case=CASE-LINK&esc="),
        "{link}"
    );

    let http = reqwest::Client::new();
    // Someone else's acknowledgement, made by editing the link.
    let forged = http
        .post(local(&sys, &link.replace("c=fl-sam", "c=tl-kim")))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // Opening the link (as a mail scanner does) acknowledges nothing.
    let page = http.get(local(&sys, &link)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<button"));
    assert_eq!(escalation_view(&sys, case).await.state, "active");

    let pressed = http.post(local(&sys, &link)).send().await.unwrap();
    assert_eq!(pressed.status(), 200);
    assert!(
        pressed
            .text()
            .await
            .unwrap()
            .contains("Case REF-CASE-LINK is acknowledged")
    );
    stopped_before_the_next_level(&sys, case, "fl-sam").await;
    let again = http.post(local(&sys, &link)).send().await.unwrap();
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("You had already acknowledged case REF-CASE-LINK")
    );
    let trail = sys.case_trail(case).await;
    assert_eq!(
        reasons(&trail),
        ["acknowledged by email link from the escalation alert"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_ack_code_acknowledges_and_a_wrong_one_is_answered() {
    let (sys, _dir) = system(Duration::from_secs(8)).await;
    let case = "CASE-SMS";
    let phone = "+447700900501";
    sys.case_ok(&critical(case, "sup-ana")).await;
    let alert = wait_for_text(&sys, phone, "REF-CASE-SMS").await;
    let body = alert.field("Body").unwrap().to_string();
    let code = body
        .split("Reply ACK ")
        .nth(1)
        .and_then(|r| r.get(..4))
        .unwrap_or_else(|| panic!("no code in {body:?}"))
        .to_string();
    let wrong = format!("{:04}", (code.parse::<u32>().unwrap() + 1) % 10_000);

    // Unsigned: refused, nothing stored, nothing answered.
    let params = with(
        fixture("sms-reply"),
        &[("From", phone), ("Body", &format!("ACK {code}"))],
    );
    let forged = provider_post(
        &sys,
        &format!("{DELIVERY_URL}/v1/inbound/sms"),
        &params,
        false,
    )
    .await;
    assert_eq!(forged.status(), 403);

    let r = text_in(&sys, phone, &format!("ACK {wrong}"), "SM-ack-wrong").await;
    assert_eq!(r.status(), 200);
    wait_for_text(
        &sys,
        phone,
        &format!("Code {wrong} is not one Herald sent to this number"),
    )
    .await;
    assert_eq!(escalation_view(&sys, case).await.state, "active");

    let r = text_in(&sys, phone, &format!("ack {code}"), "SM-ack-right").await;
    assert_eq!(r.status(), 200);
    // The provider posting the same message again changes nothing.
    text_in(&sys, phone, &format!("ack {code}"), "SM-ack-right").await;
    wait_for_text(&sys, phone, "Case REF-CASE-SMS is acknowledged").await;
    stopped_before_the_next_level(&sys, case, "sup-ana").await;
    assert_eq!(
        texts_to(&sys, phone).len(),
        3,
        "the alert and one answer to each text"
    );
    assert_eq!(
        reasons(&sys.case_trail(case).await),
        [format!(
            "acknowledged by SMS reply (code {code}) from the escalation alert"
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_press_on_the_escalation_call_acknowledges_the_case() {
    let (sys, _dir) = system(Duration::from_secs(6)).await;
    let case = "CASE-KEY";
    sys.case_ok(&critical(case, "fl-vic")).await;
    let s = &sys;
    let call = eventually("the call", move || async move {
        s.http
            .requests_to("/voice")
            .into_iter()
            .find(|r| r.field("To") == Some("+447700900777"))
    })
    .await;
    let twiml = call.field("Twiml").unwrap();
    assert!(twiml.contains("<Gather"), "{twiml}");
    let start = twiml.find("action=\"").unwrap() + "action=\"".len();
    let end = start + twiml[start..].find('"').unwrap();
    let key_url = twiml[start..end].replace("&amp;", "&");
    assert!(key_url.starts_with(&format!("{ESCALATION_URL}/v1/escalation/key?")));

    let digits = |d: &str| {
        vec![
            ("CallSid".to_string(), "CA-1".to_string()),
            ("Digits".to_string(), d.to_string()),
        ]
    };
    let unsigned = provider_post(&sys, &key_url, &digits("1"), false).await;
    assert_eq!(unsigned.status(), 403);
    let none = provider_post(&sys, &key_url, &digits(""), true).await;
    assert!(none.text().await.unwrap().contains("No key was pressed"));
    assert_eq!(escalation_view(&sys, case).await.state, "active");

    let pressed = provider_post(&sys, &key_url, &digits("5"), true).await;
    assert_eq!(pressed.status(), 200);
    assert!(
        pressed
            .text()
            .await
            .unwrap()
            .contains("Case REF-CASE-KEY is acknowledged")
    );
    stopped_before_the_next_level(&sys, case, "fl-vic").await;
    assert_eq!(
        reasons(&sys.case_trail(case).await),
        ["acknowledged by key press on the call from the escalation alert"]
    );
}

fn about_case(key: &str, case_id: &str, channels: &[Channel]) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::InitialInquiry as i32,
        recipients: vec![Recipient {
            target: Some(Target::ContactId("client-0".into())),
        }],
        template_id: "inquiry_received".into(),
        params: [("reference".to_string(), format!("REF-{case_id}"))].into(),
        case_id: case_id.into(),
        channel_override: channels.iter().map(|c| *c as i32).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_replies_reach_the_case_and_are_answered_on_their_channel() {
    let (sys, _dir) = system(Duration::from_secs(60)).await;
    let case = "CASE-REPLY";
    let (email, phone) = ("client-0@clients.example.org", "+447700900000");
    // A ticket: an hour to acknowledge, so nothing escalates meanwhile.
    sys.case_ok(&opened(
        case,
        "client-0",
        CaseChannel::SupportTicket,
        Priority::Normal,
    ))
    .await;
    sys.notify_ok(&about_case("n-mail", case, &[])).await;
    let sent = sys
        .smtp
        .wait_for_mail_to(email, "REF-CASE-REPLY", WAIT)
        .await;
    let message_id = sent.header("Message-ID").expect("a Message-ID");
    sys.case_ok(&event(case, "wait", CaseEventKind::WaitingOnClient))
        .await;
    let s = &sys;
    eventually("the clock paused", move || async move {
        (sla_view(s, case).await.clocks[0].state == ClockState::Paused as i32).then_some(())
    })
    .await;

    // Forged: signed with another key.
    let forged = mail_in(&sys, &[("from", email)], "not-the-key-0123456789", "tok-0").await;
    assert_eq!(forged.status(), 403);

    let words = "The 14th works for me.";
    let r = mail_in(
        &sys,
        &[
            ("from", "Client 0 <Client-0@clients.example.org>"),
            ("In-Reply-To", &message_id),
            ("References", &message_id),
            ("stripped-text", words),
            (
                "body-plain",
                &format!("{words}\n\nOn Tue, Herald wrote:\n> We have received your inquiry"),
            ),
        ],
        MAIL_KEY,
        "tok-1",
    )
    .await;
    assert_eq!(r.status(), 200);
    let forwarded = sys
        .smtp
        .wait_for_mail_to("sam@staff.example.org", words, WAIT)
        .await;
    assert!(forwarded.subject().contains("REF-CASE-REPLY"));
    assert!(!forwarded.body().contains("On Tue, Herald wrote"));
    let trail = sys
        .wait_for_case_steps(case, AuditStep::ReplyReceived, 1, WAIT)
        .await;
    let replies = summaries(&trail, AuditStep::ReplyReceived);
    assert!(
        replies[0].contains("the client replied by email"),
        "{replies:?}"
    );
    assert!(
        trail.iter().all(|r| !r.summary.contains(words)),
        "the trail keeps no words of the reply"
    );
    eventually("the clock running again", move || async move {
        (sla_view(s, case).await.clocks[0].state == ClockState::Running as i32).then_some(())
    })
    .await;

    // By SMS: a text about the case, and the client's answer to it.
    sys.notify_ok(&about_case("n-text", case, &[Channel::Sms]))
        .await;
    wait_for_text(&sys, phone, "REF-CASE-REPLY").await;
    let said = "Can you call me after 5pm instead?";
    assert_eq!(
        text_in(&sys, phone, said, "SM-client-1").await.status(),
        200
    );
    sys.smtp
        .wait_for_mail_to("sam@staff.example.org", said, WAIT)
        .await;
    sys.wait_for_case_steps(case, AuditStep::ReplyReceived, 2, WAIT)
        .await;

    // The client wrote last by SMS: the next message about the case goes
    // by SMS, though they prefer email.
    let texts_before = texts_to(&sys, phone).len();
    let next = sys.notify_ok(&about_case("n-next", case, &[])).await;
    eventually("the answer by SMS", move || async move {
        (texts_to(s, phone).len() > texts_before).then_some(())
    })
    .await;
    // What routing decided for it: one job, by SMS, and nothing by email.
    let bus = sys.bus().await;
    let routed = eventually("the routing of the answer", || {
        let bus = bus.clone();
        let next = next.clone();
        async move {
            let trail = herald_runtime::audit::read_trail(
                &bus,
                &herald_proto::subjects::audit_of_notification(&next),
            )
            .await
            .ok()?;
            trail
                .into_iter()
                .any(|r| r.step == AuditStep::Sent as i32)
                .then_some(())
        }
    })
    .await;
    let _: () = routed;
    let trail = herald_runtime::audit::read_trail(
        &bus,
        &herald_proto::subjects::audit_of_notification(&next),
    )
    .await
    .unwrap();
    let channels: Vec<i32> = trail
        .iter()
        .filter(|r| r.step == AuditStep::Sent as i32)
        .map(|r| r.channel)
        .collect();
    assert_eq!(channels, [Channel::Sms as i32]);
    assert_eq!(
        summaries(&sys.case_trail(case).await, AuditStep::ReplyReceived).len(),
        2,
        "each reply once"
    );
}
