//! Signed follow-up survey links and the words for timeframes.
//!
//! A survey link is `<survey_url>?case=<id>&round=<n>&token=<t>`, where `t`
//! is the first 128 bits of HMAC-SHA256 over `survey:<id>:<n>`, keyed with
//! `escalation.survey_secret`, in unpadded URL-safe base64. The survey site
//! checks the token with [`verify`] (or the same few lines in its own
//! language) before taking an answer, and reports it to Herald as a
//! `feedback_received` case event. `n` is the resolution's position in the
//! case stream, so a case resolved again gets a new link.

use std::time::Duration;

use herald_content::token as signed_link;

/// What a survey token covers: the case and the round.
fn signed(case_id: &str, round: u64) -> String {
    format!("survey:{case_id}:{round}")
}

pub fn token(secret: &str, case_id: &str, round: u64) -> String {
    signed_link::sign(secret.as_bytes(), &signed(case_id, round))
}

/// Whether `token` is right for the case and round (constant time).
pub fn verify(secret: &str, case_id: &str, round: u64, token: &str) -> bool {
    signed_link::verify(secret.as_bytes(), &signed(case_id, round), token)
}

/// The link a client gets. Case ids are subject tokens (letters, digits
/// and `-_:@+=`); the case is percent-encoded ([`herald_content::url`]) so
/// that a `+` does not come back as a space.
pub fn link(base: &str, secret: &str, case_id: &str, round: u64) -> String {
    let round_text = round.to_string();
    let token = token(secret, case_id, round);
    herald_content::url::with_query(
        base,
        &[("case", case_id), ("round", &round_text), ("token", &token)],
    )
}

/// A timeframe in the client's language: "2 hours", "2 heures", "2 horas".
/// English for languages without words here.
pub fn timeframe(d: Duration, language: &str) -> String {
    let minutes = d.as_secs().div_ceil(60).max(1);
    let (n, unit) = if minutes.is_multiple_of(24 * 60) {
        (minutes / (24 * 60), Unit::Day)
    } else if minutes.is_multiple_of(60) {
        (minutes / 60, Unit::Hour)
    } else {
        (minutes, Unit::Minute)
    };
    let primary = language.split('-').next().unwrap_or("en");
    let words = match (primary, unit) {
        ("fr", Unit::Minute) => ("minute", "minutes"),
        ("fr", Unit::Hour) => ("heure", "heures"),
        ("fr", Unit::Day) => ("jour", "jours"),
        ("es", Unit::Minute) => ("minuto", "minutos"),
        ("es", Unit::Hour) => ("hora", "horas"),
        ("es", Unit::Day) => ("día", "días"),
        (_, Unit::Minute) => ("minute", "minutes"),
        (_, Unit::Hour) => ("hour", "hours"),
        (_, Unit::Day) => ("day", "days"),
    };
    format!("{n} {}", if n == 1 { words.0 } else { words.1 })
}

#[derive(Clone, Copy)]
enum Unit {
    Minute,
    Hour,
    Day,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_any_change_breaks_them() {
        let secret = "a-survey-secret-of-length";
        let l = link("https://feedback.example.org/survey", secret, "CASE-1", 42);
        let token = l.rsplit_once("token=").unwrap().1;
        assert!(l.starts_with("https://feedback.example.org/survey?case=CASE-1&round=42&token="));
        assert!(verify(secret, "CASE-1", 42, token));
        assert!(!verify(secret, "CASE-2", 42, token));
        assert!(!verify(secret, "CASE-1", 43, token));
        assert!(!verify("another-secret-entirely", "CASE-1", 42, token));
        assert!(!verify(secret, "CASE-1", 42, "not-a-token"));
        assert!(!verify(secret, "CASE-1", 42, &token[..10]));
        assert!(
            link("https://x.example/s?lang=fr", secret, "a:b", 1).contains("?lang=fr&case=a%3Ab&")
        );
    }

    #[test]
    fn timeframes_read_naturally() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(timeframe(h(2), "en"), "2 hours");
        assert_eq!(timeframe(h(1), "en-GB"), "1 hour");
        assert_eq!(timeframe(h(48), "fr"), "2 jours");
        assert_eq!(timeframe(Duration::from_secs(90 * 60), "es"), "90 minutos");
        assert_eq!(timeframe(Duration::from_secs(20), "de"), "1 minute");
    }
}
