//! What a public-warning system (or anyone holding a coordinator token)
//! can hand Herald as a CAP alert. Whatever the bytes, reading never
//! panics; whatever reads, writing it back reads back the same; and an
//! alert with one of its elements cut out or given a value CAP does not
//! allow is refused naming that element.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

const ALERT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>ID-1</identifier>
  <sender>warnings@example.org</sender>
  <sent>2026-12-02T09:30:00-00:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Safety</category>
    <event>Gas leak</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <headline>HEADLINE</headline>
    <area><areaDesc>Block C</areaDesc></area>
  </info>
</alert>"#;

const ELEMENTS: [(&str, &str); 9] = [
    ("identifier", "alert/identifier"),
    ("sender", "alert/sender"),
    ("sent", "alert/sent"),
    ("status", "alert/status"),
    ("msgType", "alert/msgType"),
    ("scope", "alert/scope"),
    ("urgency", "alert/info[1]/urgency"),
    ("severity", "alert/info[1]/severity"),
    ("certainty", "alert/info[1]/certainty"),
];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = herald_cap::parse(&bytes);
    }

    #[test]
    fn any_headline_round_trips(headline in any::<String>()) {
        // Text XML 1.0 can carry (no control characters but tab and newlines).
        let clean: String = headline.chars().filter(|c| !c.is_control() || matches!(c, '\t' | '\n')).collect();
        let escaped = quick_escape(&clean);
        let xml = ALERT.replace("HEADLINE", &escaped);
        if let Ok(a) = herald_cap::parse(xml.as_bytes()) {
            let again = herald_cap::parse(herald_cap::write(&a).as_bytes()).unwrap();
            prop_assert_eq!(again, a);
        }
    }

    #[test]
    fn a_missing_or_unknown_required_value_names_its_element(
        which in 0..ELEMENTS.len(),
        value in "[A-Za-z ]{0,12}",
    ) {
        let (tag, element) = ELEMENTS[which];
        let start = ALERT.find(&format!("<{tag}>")).unwrap();
        let end = ALERT.find(&format!("</{tag}>")).unwrap() + tag.len() + 3;
        let xml = format!("{}<{tag}>{value}</{tag}>{}", &ALERT[..start], &ALERT[end..]);
        if let Err(e) = herald_cap::parse(xml.as_bytes()) {
            prop_assert_eq!(e.element, element);
        }
        let cut = format!("{}{}", &ALERT[..start], &ALERT[end..]);
        let e = herald_cap::parse(cut.as_bytes()).unwrap_err();
        prop_assert_eq!(e.element, element);
    }
}

fn quick_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
