//! What changed between two versions of a template, part by part: each
//! language's subject, email, SMS and voice text compared line by line,
//! and the declared parameters, as a reviewer reads it before approving.

use super::source::{Parts, VersionText};

/// One line of a compared part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Same(String),
    Removed(String),
    Added(String),
}

/// One part that differs: `where` is `[lang.<tag>] <part>` or a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub place: String,
    pub lines: Vec<Line>,
}

/// Longest texts compared line by line; longer ones are shown as all
/// removed and all added.
const MAX_CELLS: usize = 1_000_000;

/// The parts of `new` that differ from `old`, in order: the fields, then
/// each language (either side's), each part. Empty when nothing differs.
pub fn diff(old: &VersionText, new: &VersionText) -> Vec<Change> {
    let mut out = Vec::new();
    let field = |name: &str, a: String, b: String, out: &mut Vec<Change>| {
        if a != b {
            out.push(Change {
                place: name.to_string(),
                lines: lines(&a, &b),
            });
        }
    };
    field(
        "description",
        old.description.clone(),
        new.description.clone(),
        &mut out,
    );
    field(
        "params",
        old.params.join(", "),
        new.params.join(", "),
        &mut out,
    );
    field(
        "optional",
        old.optional.join(", "),
        new.optional.join(", "),
        &mut out,
    );
    field(
        "default_language",
        old.default_language.clone(),
        new.default_language.clone(),
        &mut out,
    );
    let mut langs: Vec<&String> = old.lang.keys().chain(new.lang.keys()).collect();
    langs.sort();
    langs.dedup();
    let none = Parts::default();
    for lang in langs {
        let a = old.lang.get(lang).unwrap_or(&none).each();
        let b = new.lang.get(lang).unwrap_or(&none).each();
        for ((part, before), (_, after)) in a.into_iter().zip(b) {
            if before != after {
                out.push(Change {
                    place: format!("[lang.{lang}] {part}"),
                    lines: lines(before.unwrap_or_default(), after.unwrap_or_default()),
                });
            }
        }
    }
    out
}

/// `a` against `b` line by line (a longest common subsequence), every
/// line of both in order.
pub fn lines(a: &str, b: &str) -> Vec<Line> {
    let a: Vec<&str> = if a.is_empty() {
        Vec::new()
    } else {
        a.lines().collect()
    };
    let b: Vec<&str> = if b.is_empty() {
        Vec::new()
    } else {
        b.lines().collect()
    };
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return a
            .iter()
            .map(|l| Line::Removed(l.to_string()))
            .chain(b.iter().map(|l| Line::Added(l.to_string())))
            .collect();
    }
    // common[i][j]: the longest common run of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(Line::Same(a[i].to_string()));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push(Line::Removed(a[i].to_string()));
            i += 1;
        } else {
            out.push(Line::Added(b[j].to_string()));
            j += 1;
        }
    }
    out
}

/// A diff as text: `@@ <place>` then each line marked `-`, `+` or a space.
pub fn render(changes: &[Change]) -> String {
    let mut s = String::new();
    for c in changes {
        s.push_str(&format!("@@ {}\n", c.place));
        for l in &c.lines {
            let (mark, text) = match l {
                Line::Same(t) => (' ', t),
                Line::Removed(t) => ('-', t),
                Line::Added(t) => ('+', t),
            };
            s.push(mark);
            s.push(' ');
            s.push_str(text);
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::source::parse;

    #[test]
    fn changed_lines_are_marked_and_the_rest_kept() {
        assert_eq!(
            lines("a\nb\nc", "a\nB\nc\nd"),
            vec![
                Line::Same("a".into()),
                Line::Removed("b".into()),
                Line::Added("B".into()),
                Line::Same("c".into()),
                Line::Added("d".into()),
            ]
        );
        assert!(
            lines("same\ntext", "same\ntext")
                .iter()
                .all(|l| matches!(l, Line::Same(_)))
        );
        assert_eq!(lines("", "x"), vec![Line::Added("x".into())]);
    }

    #[test]
    fn only_the_parts_that_differ_are_shown_per_language() {
        let old = parse(
            "params = [\"reference\"]\n[lang.en]\nsms = \"Got {{ reference }}\"\nvoice = \"Hello\"\n",
        )
        .unwrap();
        let new = parse(
            "params = [\"reference\", \"when\"]\n[lang.en]\nsms = \"Got {{ reference }} on {{ when }}\"\nvoice = \"Hello\"\n[lang.fr]\nsms = \"Reçu {{ reference }}\"\n",
        )
        .unwrap();
        let changes = diff(&old, &new);
        let places: Vec<&str> = changes.iter().map(|c| c.place.as_str()).collect();
        assert_eq!(places, ["params", "[lang.en] sms", "[lang.fr] sms"]);
        let text = render(&changes);
        assert!(
            text.contains(
                "@@ [lang.en] sms\n- Got {{ reference }}\n+ Got {{ reference }} on {{ when }}\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("@@ [lang.fr] sms\n+ Reçu {{ reference }}\n"),
            "{text}"
        );
        assert!(diff(&old, &old).is_empty());
    }
}
