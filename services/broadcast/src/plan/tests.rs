//! The planner's tests, apart from it for their fixtures: they render the
//! shipped templates for sample people and check what each job says.

use super::*;
use herald_directory::contacts::Consent;

fn templates() -> TemplateStore {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
    TemplateStore::load(&dir).expect("shipped templates load")
}

fn msg(lang: &str, text: &str) -> BroadcastMessage {
    BroadcastMessage {
        language: lang.into(),
        subject: format!("{text} subject"),
        body: format!("{text} body"),
        speak: format!("{text} speak"),
        sms: String::new(),
    }
}

fn person(language: &str, phone: Option<&str>) -> Contact {
    Contact {
        id: "kim".into(),
        name: "Kim".into(),
        email: Some("kim@example.org".into()),
        phone: phone.map(str::to_string),
        preferred_channel: Some("email".into()),
        language: language.into(),
        time_zone: "UTC".into(),
        identity_verified: false,
        verification: None,
        third_party: false,
        third_party_category: None,
        sharing: Vec::new(),
        consent: Consent::default(),
        organisation: None,
        role: None,
        team: None,
        interprets: Vec::new(),
    }
}

#[test]
fn languages_fall_back_by_primary_tag_then_default() {
    let m = vec![msg("en", "EN"), msg("fr-CA", "FRCA"), msg("de", "DE")];
    assert_eq!(pick(&m, "fr", "en").unwrap().language, "fr-CA");
    assert_eq!(pick(&m, "de-AT", "en").unwrap().language, "de");
    assert_eq!(pick(&m, "ja", "de").unwrap().language, "de");
    assert_eq!(pick(&m, "ja", "xx").unwrap().language, "en");
}

#[test]
fn everyone_gets_email_and_a_call_that_asks_for_a_key_whatever_they_prefer() {
    let t = templates();
    let signer = Signer::new("a-long-enough-secret", "https://h.example");
    let content = Content::Literal {
        messages: vec![msg("en", "EN"), msg("fr", "FR")],
        default_language: "en".into(),
    };
    let b = Broadcast {
        id: "fire-b",
        case_id: "",
        communication_type: CommunicationType::Emergency as i32,
        accepted_at: None,
        content: &content,
    };
    let planner = Planner {
        signer: &signer,
        templates: &t,
    };
    let jobs: Vec<DeliveryJob> = planner
        .jobs(
            &b,
            3,
            &person("fr", Some("+447700900123")),
            Wave::Start { sms: true },
        )
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "fire-b-r3-email-c1",
            "fire-b-r3-voice-c1",
            "fire-b-r3-sms-c1"
        ]
    );
    let email = &jobs[0];
    assert_eq!(email.subject, "FR subject");
    assert!(
        email.body.starts_with("FR body\n\nMerci de confirmer"),
        "{}",
        email.body
    );
    assert!(
        email
            .body
            .contains(&signer.url(Kind::Confirm, "fire-b", 3, &[]))
    );
    assert_eq!(email.cancel_keys, ["bc:fire-b"]);
    let call = &jobs[1];
    assert_eq!(
        call.body,
        "FR speak Appuyez sur 1 pour confirmer que vous avez reçu ce message."
    );
    assert!(
        call.key_press_url
            .starts_with("https://h.example/v1/broadcast/key?b=fire-b&r=3&s=")
    );
    assert_eq!(call.cancel_keys, ["bc:fire-b", "bc:fire-b:r3"]);
    assert!(
        jobs.iter()
            .all(|j| j.lane == Lane::Emergency as i32 && j.broadcast_id == "fire-b")
    );
    assert_eq!(
        jobs[2].body,
        "FR speak Répondez OUI pour confirmer la réception."
    );

    // No phone: the email only. A recall is a call only.
    assert_eq!(
        planner
            .jobs(&b, 4, &person("en", None), Wave::Start { sms: false })
            .len(),
        1
    );
    let recall = planner.jobs(&b, 3, &person("en", Some("+447700900123")), Wave::Recall(2));
    assert_eq!(recall[0].as_ref().unwrap().job_id, "fire-b-r3-voice-c2");
    assert_eq!(
        progress_field("fire-b", "fire-b-r3-voice-c2").as_deref(),
        Some("r3-voice-c2")
    );
    assert_eq!(parse_field("r3-voice-c2"), Some((3, Channel::Voice)));
}

#[test]
fn the_breach_template_is_rendered_per_person() {
    let t = templates();
    let signer = Signer::new("a-long-enough-secret", "https://h.example");
    let content = Content::Template {
        id: broadcasts::BREACH_TEMPLATE.into(),
        params: [("reference".to_string(), "CASE-9".to_string())].into(),
    };
    let b = Broadcast {
        id: "breach-x",
        case_id: "CASE-9",
        communication_type: CommunicationType::DataBreach as i32,
        accepted_at: None,
        content: &content,
    };
    let planner = Planner {
        signer: &signer,
        templates: &t,
    };
    let jobs = planner.jobs(
        &b,
        0,
        &person("en", Some("+447700900123")),
        Wave::Start { sms: false },
    );
    let email = jobs[0].as_ref().unwrap();
    assert_eq!(email.subject, "Data breach reported: CASE-9");
    assert!(email.body.contains("Dear Kim,"));
    assert_eq!(email.template_id, broadcasts::BREACH_TEMPLATE);
    assert!(
        jobs[1]
            .as_ref()
            .unwrap()
            .body
            .ends_with("Press 1 now to confirm that you have received this message.")
    );
}
