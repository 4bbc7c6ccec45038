//! Follow-up survey links, whose token the survey site checks before it
//! takes a client's answer: whatever token is presented, checking it never
//! panics and never succeeds unless it is the one for that case and round.
//! A link Herald made always reads back as its case and round, and its
//! token verifies for them and nothing else.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use herald_escalation::survey;
use proptest::prelude::*;

/// `PROPTEST_CASES` when set, else a count small enough for every run.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

const SECRET: &str = "a-survey-secret-of-length";

fn case_id() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9_:@+=-]{1,24}", 1 => any::<String>()]
}

fn round() -> impl Strategy<Value = u64> {
    prop_oneof![0..100u64, any::<u64>()]
}

fn presented_token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{20,24}",
        (case_id(), round()).prop_map(|(c, r)| survey::token(SECRET, &c, r)),
    ]
}

/// The value of `name` in a link's query.
fn query_value(link: &str, name: &str) -> Option<String> {
    let (_, query) = link.split_once('?')?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn a_stranger_s_survey_token_never_verifies(
        case_id in case_id(),
        round in round(),
        presented in presented_token(),
    ) {
        let right = survey::token(SECRET, &case_id, round);
        prop_assert_eq!(
            survey::verify(SECRET, &case_id, round, &presented),
            presented.trim() == right
        );
    }

    #[test]
    fn a_survey_link_reads_back_as_its_case_and_round(
        case_id in case_id(),
        round in round(),
        base in prop_oneof![
            Just("https://feedback.example.org/survey".to_string()),
            Just("https://feedback.example.org/s?lang=fr".to_string()),
        ],
    ) {
        let link = survey::link(&base, SECRET, &case_id, round);
        prop_assert!(link.starts_with(&base));
        prop_assert_eq!(query_value(&link, "case"), Some(case_id.clone()));
        prop_assert_eq!(query_value(&link, "round"), Some(round.to_string()));
        let token = query_value(&link, "token").unwrap_or_default();
        prop_assert!(survey::verify(SECRET, &case_id, round, &token));
        prop_assert!(!survey::verify("another-survey-secret", &case_id, round, &token));
    }

    #[test]
    fn a_survey_token_for_one_case_or_round_verifies_no_other(
        case_id in case_id(),
        other_case in case_id(),
        round in round(),
        other_round in round(),
    ) {
        let token = survey::token(SECRET, &case_id, round);
        if (other_case.as_str(), other_round) != (case_id.as_str(), round) {
            prop_assert!(!survey::verify(SECRET, &other_case, other_round, &token));
        }
        // A case id that swallows the round's separator is another case.
        let shifted = format!("{case_id}:{round}");
        prop_assert!(!survey::verify(SECRET, &shifted, round, &token));
    }
}
