//! A report's figures in words, in the client's language (English or
//! French, English for any other): the template parameters of the email
//! (counts, and the cases and next steps as ready lines) and the lines of
//! the monthly PDF. Dates are shown in the client's time zone.

use std::collections::BTreeMap;

use chrono_tz::Tz;

use super::figures::{CaseLine, Figures, Standing};
use super::pdf::Line;

/// The words a report uses, per language.
struct Words {
    open: &'static str,
    resolved: &'static str,
    opened_on: &'static str,
    closed_in_period: &'static str,
    clocks: &'static str,
    met: &'static str,
    missed: &'static str,
    none: &'static str,
    title: &'static str,
    client: &'static str,
    period: &'static str,
    summary: &'static str,
    cases: &'static str,
    next_steps: &'static str,
    opened_count: &'static str,
    closed_count: &'static str,
    open_count: &'static str,
    met_count: &'static str,
    missed_count: &'static str,
    to: &'static str,
    more: &'static str,
}

const EN: Words = Words {
    open: "open",
    resolved: "resolved",
    opened_on: "opened",
    closed_in_period: "closed in the period",
    clocks: "response times",
    met: "met",
    missed: "missed",
    none: "none",
    title: "Progress report",
    client: "Client",
    period: "Period",
    summary: "Summary",
    cases: "Cases",
    next_steps: "Next steps",
    opened_count: "Cases opened",
    closed_count: "Cases closed",
    open_count: "Cases open at the end of the period",
    met_count: "Response times met",
    missed_count: "Response times missed",
    to: "to",
    more: "more (the trail has them all)",
};

const FR: Words = Words {
    open: "ouvert",
    resolved: "résolu",
    opened_on: "ouvert le",
    closed_in_period: "clos pendant la période",
    clocks: "délais de réponse",
    met: "tenus",
    missed: "manqués",
    none: "aucune",
    title: "Rapport d'avancement",
    client: "Client",
    period: "Période",
    summary: "Résumé",
    cases: "Dossiers",
    next_steps: "Prochaines étapes",
    opened_count: "Dossiers ouverts",
    closed_count: "Dossiers clos",
    open_count: "Dossiers ouverts en fin de période",
    met_count: "Délais de réponse tenus",
    missed_count: "Délais de réponse manqués",
    to: "au",
    more: "de plus (le journal les a tous)",
};

/// The most cases, and next steps, a report lists one by one: a busy
/// client's month still fits the attachment limit (64 KiB).
pub const MAX_LISTED: usize = 150;

/// At most [`MAX_LISTED`] of `items`, then how many more there are.
fn capped(items: Vec<String>, w: &Words) -> Vec<String> {
    let n = items.len();
    let mut out: Vec<String> = items.into_iter().take(MAX_LISTED).collect();
    if n > MAX_LISTED {
        out.push(format!("… {} {}", n - MAX_LISTED, w.more));
    }
    out
}

fn words(language: &str) -> &'static Words {
    if language.to_ascii_lowercase().starts_with("fr") {
        &FR
    } else {
        &EN
    }
}

fn date(ms: i64, tz: Tz) -> String {
    herald_runtime::clock::from_millis(ms)
        .with_timezone(&tz)
        .format("%Y-%m-%d")
        .to_string()
}

/// The period in words: its first and last dates, in `tz`.
pub fn period(f: &Figures, language: &str, tz: Tz) -> String {
    // The period ends just before `until`.
    format!(
        "{} {} {}",
        date(f.from_ms, tz),
        words(language).to,
        date(f.until_ms - 1, tz)
    )
}

fn case_text(c: &CaseLine, w: &Words, tz: Tz) -> String {
    let standing = match c.standing {
        Standing::Open => w.open,
        Standing::Resolved => w.resolved,
    };
    let mut s = format!(
        "{}: {standing}, {} {}",
        c.reference,
        w.opened_on,
        date(c.opened_ms, tz)
    );
    if c.closed_in_period {
        s.push_str(&format!(", {}", w.closed_in_period));
    }
    if c.met + c.missed > 0 {
        s.push_str(&format!(
            "; {} {} {}, {} {}",
            w.clocks, w.met, c.met, w.missed, c.missed
        ));
    }
    s
}

fn step_text(reference: &str, action: &str) -> String {
    format!("{reference}: {action}")
}

/// The email's parameters: `client_name`, `period`, the counts (`opened`,
/// `closed`, `open`, `met`, `missed`) and the lists `cases` and
/// `next_steps`, one item a line.
pub fn params(f: &Figures, client_name: &str, language: &str, tz: Tz) -> BTreeMap<String, String> {
    let w = words(language);
    let list = |items: Vec<String>| {
        if items.is_empty() {
            format!("- {}", w.none)
        } else {
            items
                .iter()
                .map(|i| format!("- {i}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let cases = list(capped(
        f.cases.iter().map(|c| case_text(c, w, tz)).collect(),
        w,
    ));
    let steps = list(capped(
        f.next_steps()
            .iter()
            .map(|(r, a)| step_text(r, a))
            .collect(),
        w,
    ));
    BTreeMap::from([
        ("client_name".to_string(), client_name.to_string()),
        ("period".to_string(), period(f, language, tz)),
        ("opened".to_string(), f.opened().to_string()),
        ("closed".to_string(), f.closed().to_string()),
        ("open".to_string(), f.still_open().to_string()),
        ("met".to_string(), f.met().to_string()),
        ("missed".to_string(), f.missed().to_string()),
        ("cases".to_string(), cases),
        ("next_steps".to_string(), steps),
    ])
}

/// The PDF's title and lines.
pub fn document(f: &Figures, client_name: &str, language: &str, tz: Tz) -> (String, Vec<Line>) {
    let w = words(language);
    let mut lines = vec![
        Line::Text(format!("{}: {client_name}", w.client)),
        Line::Text(format!("{}: {}", w.period, period(f, language, tz))),
        Line::Blank,
        Line::Heading(w.summary.to_string()),
    ];
    for (label, n) in [
        (w.opened_count, f.opened() as u32),
        (w.closed_count, f.closed() as u32),
        (w.open_count, f.still_open() as u32),
        (w.met_count, f.met()),
        (w.missed_count, f.missed()),
    ] {
        lines.push(Line::Text(format!("{label}: {n}")));
    }
    lines.push(Line::Blank);
    lines.push(Line::Heading(w.cases.to_string()));
    if f.cases.is_empty() {
        lines.push(Line::Text(w.none.to_string()));
    }
    for c in capped(f.cases.iter().map(|c| case_text(c, w, tz)).collect(), w) {
        lines.push(Line::Text(c));
    }
    lines.push(Line::Blank);
    lines.push(Line::Heading(w.next_steps.to_string()));
    let steps = f.next_steps();
    if steps.is_empty() {
        lines.push(Line::Text(w.none.to_string()));
    }
    for s in capped(steps.iter().map(|(r, a)| step_text(r, a)).collect(), w) {
        lines.push(Line::Text(s));
    }
    (format!("{} – {client_name}", w.title), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        Figures {
            from_ms: 1_764_576_000_000,  // 2025-12-01T08:00Z
            until_ms: 1_767_254_400_000, // 2026-01-01T08:00Z
            cases: vec![CaseLine {
                case_id: "CASE-1".into(),
                reference: "INQ-1".into(),
                opened_ms: 1_764_662_400_000,
                standing: Standing::Resolved,
                closed_in_period: true,
                opened_in_period: true,
                met: 2,
                missed: 1,
                open_actions: vec!["Call back (owner fl-sam, due 2026-01-05)".into()],
            }],
        }
    }

    #[test]
    fn the_emails_lists_say_each_case_and_step_in_the_clients_language() {
        let p = params(&figures(), "Acme", "en", chrono_tz::Europe::London);
        assert_eq!(p["period"], "2025-12-01 to 2026-01-01");
        assert_eq!(
            p["cases"],
            "- INQ-1: resolved, opened 2025-12-02, closed in the period; response times met 2, missed 1"
        );
        assert_eq!(
            p["next_steps"],
            "- INQ-1: Call back (owner fl-sam, due 2026-01-05)"
        );
        assert_eq!((p["opened"].as_str(), p["missed"].as_str()), ("1", "1"));
        let fr = params(
            &Figures::default(),
            "Acme",
            "fr-CA",
            chrono_tz::Europe::Paris,
        );
        assert_eq!(fr["cases"], "- aucune");
    }

    #[test]
    fn a_busy_clients_report_lists_the_first_cases_and_fits_the_attachment_limit() {
        let mut f = figures();
        let one = f.cases[0].clone();
        f.cases = (0..1000)
            .map(|i| CaseLine {
                reference: format!("INQ-{i:04}"),
                ..one.clone()
            })
            .collect();
        let p = params(&f, "Acme", "en", chrono_tz::UTC);
        assert_eq!(p["cases"].lines().count(), MAX_LISTED + 1);
        assert!(p["cases"].ends_with("… 850 more (the trail has them all)"));
        let (title, lines) = document(&f, "Acme", "en", chrono_tz::UTC);
        let pdf = super::super::pdf::document(&title, &lines);
        assert!(pdf.len() < 64 * 1024, "{} bytes", pdf.len());
    }

    #[test]
    fn the_document_has_a_title_and_every_figure() {
        let (title, lines) = document(&figures(), "Acme", "en", chrono_tz::UTC);
        assert_eq!(title, "Progress report – Acme");
        assert!(lines.contains(&Line::Text("Response times missed: 1".into())));
        assert!(lines.contains(&Line::Heading("Next steps".into())));
    }
}
