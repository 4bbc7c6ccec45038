//! One template version's text as a file or a proposal holds it, read and
//! checked: the TOML parses, every part compiles, every language tag is
//! valid, the default language has text, and (for a proposal) the
//! parameters it declares are the ones its text uses. Every problem is
//! reported, each with where it is.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;

/// Variables Herald gives every template itself (the router fills them in
/// for each recipient), which a template may use without declaring them.
pub const SUPPLIED: [&str; 3] = ["recipient_name", "notification_id", "case_id"];

/// The parts of one language, as written.
#[derive(Debug, Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Parts {
    pub subject: Option<String>,
    pub email: Option<String>,
    pub sms: Option<String>,
    pub voice: Option<String>,
}

impl Parts {
    /// Each part by name, in the order a reader expects them.
    pub fn each(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("subject", self.subject.as_deref()),
            ("email", self.email.as_deref()),
            ("sms", self.sms.as_deref()),
            ("voice", self.voice.as_deref()),
        ]
    }
}

/// One version's text, parsed.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct VersionText {
    #[serde(default)]
    pub description: String,
    /// Set in a shipped file; a proposal leaves it out (an approver
    /// decides it).
    pub approved: Option<bool>,
    #[serde(default)]
    pub approved_by: Option<String>,
    /// Parameters a request must pass.
    #[serde(default)]
    pub params: Vec<String>,
    /// Parameters a request may pass: text uses them only inside
    /// `{% if name is defined %}`.
    #[serde(default)]
    pub optional: Vec<String>,
    #[serde(default = "default_language")]
    pub default_language: String,
    #[serde(default)]
    pub lang: BTreeMap<String, Parts>,
}

fn default_language() -> String {
    "en".into()
}

/// Where a version comes from, which decides how strictly it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A shipped file under the templates folder: says itself whether it
    /// is approved.
    File,
    /// Proposed at run time and approved (or not) by an approver.
    Proposed,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Proposed => "proposed",
        }
    }
}

/// Parses `text` without the checks [`check`] makes: for reading a version
/// already accepted (a diff, a preview).
pub fn parse(text: &str) -> Result<VersionText, String> {
    toml::from_str::<VersionText>(text).map_err(|e| e.to_string().trim_end().to_string())
}

/// Whether `id` can name a template: it becomes a folder name and a token
/// of a subject, so lower-case letters, digits, `_` and `-`, starting with a
/// letter, at most 64 characters.
pub fn is_template_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The key a part is compiled under in an environment.
pub(crate) fn template_key(id: &str, version: u32, lang: &str, part: &str) -> String {
    format!("{id}@v{version}/{lang}/{part}")
}

/// A fresh environment as Herald renders with it: a variable nobody passed
/// is an error, never an empty gap.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Checks a parsed version and compiles each of its parts into `env`
/// under [`template_key`]. Problems come back as `<where>: <what>`, the
/// place a `[lang.<tag>] <part>` or a top-level field.
pub(crate) fn compile(
    id: &str,
    version: u32,
    t: &VersionText,
    origin: Origin,
    env: &mut Environment<'static>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match (origin, t.approved) {
        (Origin::File, None) => {
            problems.push("approved: is required in a template file (true or false)".into());
        }
        (Origin::Proposed, Some(_)) => problems.push(
            "approved: a proposal does not say whether it is approved; an approver decides (herald templates approve)"
                .into(),
        ),
        _ => {}
    }
    if origin == Origin::Proposed && t.approved_by.is_some() {
        problems.push(
            "approved_by: a proposal does not name its approver; the approval records who".into(),
        );
    }
    if t.lang.is_empty() {
        problems.push("lang: at least one [lang.<tag>] table with text is required".into());
    } else if !t.lang.contains_key(&t.default_language) {
        problems.push(format!(
            "default_language: {:?} has no [lang.{}] table",
            t.default_language, t.default_language
        ));
    }
    let mut used = BTreeSet::new();
    // Whether every part compiled, so that what the text uses is known.
    let mut complete = true;
    for (lang, parts) in &t.lang {
        if let Err(why) = herald_directory::validate::language(lang) {
            problems.push(format!("[lang.{lang}]: {why}"));
        }
        if parts.email.is_some() != parts.subject.is_some() {
            problems.push(format!(
                "[lang.{lang}]: needs both subject and email, or neither"
            ));
        }
        if parts.each().iter().all(|(_, text)| text.is_none()) {
            problems.push(format!(
                "[lang.{lang}]: has no text (subject and email, sms or voice)"
            ));
        }
        for (part, text) in parts.each() {
            let Some(text) = text else { continue };
            let key = template_key(id, version, lang, part);
            match env.add_template_owned(key.clone(), text.to_string()) {
                Ok(()) => {
                    if let Ok(tpl) = env.get_template(&key) {
                        used.extend(
                            tpl.undeclared_variables(false)
                                .into_iter()
                                .map(|v| (v, format!("[lang.{lang}] {part}"))),
                        );
                    }
                }
                Err(e) => {
                    complete = false;
                    problems.push(format!("[lang.{lang}] {part}: {}", compile_error(&e)));
                }
            }
        }
    }
    if origin == Origin::Proposed {
        problems.extend(check_params(t, &used, complete));
    }
    problems
}

/// A compile error without the internal key it was compiled under.
fn compile_error(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line} of the part)"));
    }
    s
}

/// A proposal's declared parameters against the variables its text uses:
/// each name a valid identifier, declared once, used somewhere (known
/// only when every part compiled: `complete`); every variable used
/// declared (or one Herald supplies).
fn check_params(t: &VersionText, used: &BTreeSet<(String, String)>, complete: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut declared = BTreeSet::new();
    for (field, names) in [("params", &t.params), ("optional", &t.optional)] {
        for name in names {
            let ident = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !ident {
                problems.push(format!(
                    "{field}: {name:?} is not a parameter name (letters, digits and _, not starting with a digit)"
                ));
            } else if SUPPLIED.contains(&name.as_str()) {
                problems.push(format!(
                    "{field}: {name:?} is given by Herald for every recipient; do not declare it"
                ));
            } else if !declared.insert(name.as_str()) {
                problems.push(format!("{field}: {name:?} is declared twice"));
            }
        }
    }
    let names_used: BTreeSet<&str> = used.iter().map(|(v, _)| v.as_str()).collect();
    for (field, names) in [("params", &t.params), ("optional", &t.optional)] {
        for name in names {
            if complete && declared.contains(name.as_str()) && !names_used.contains(name.as_str()) {
                problems.push(format!("{field}: {name:?} is declared but no text uses it"));
            }
        }
    }
    for (name, place) in used {
        if !declared.contains(name.as_str()) && !SUPPLIED.contains(&name.as_str()) {
            problems.push(format!(
                "{place}: uses {name:?}, which is neither in params nor in optional (Herald itself gives only {})",
                SUPPLIED.join(", ")
            ));
        }
    }
    problems
}

/// Checks the text of a proposed version of template `id` fully, as it
/// would be compiled once approved: every problem, each with its place.
pub fn check_proposal(id: &str, text: &str) -> Result<VersionText, Vec<String>> {
    if !is_template_id(id) {
        return Err(vec![format!(
            "template_id: {id:?} is not a template id (lower-case letters, digits, _ and -, starting with a letter)"
        )]);
    }
    let t = parse(text).map_err(|e| vec![e])?;
    let problems = compile(id, 1, &t, Origin::Proposed, &mut environment());
    if problems.is_empty() {
        Ok(t)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "Reply"
params = ["reference"]
optional = ["note"]
[lang.en]
subject = "About {{ reference }}"
email = "Dear {{ recipient_name }},{% if note is defined %} {{ note }}{% endif %}"
sms = "About {{ reference }}"
[lang.fr]
sms = "À propos de {{ reference }}"
"#;

    #[test]
    fn a_sound_proposal_is_accepted() {
        let t = check_proposal("reply", GOOD).unwrap();
        assert_eq!(t.params, ["reference"]);
        assert_eq!(t.lang.len(), 2);
    }

    #[test]
    fn every_problem_of_a_broken_proposal_is_reported_with_its_place() {
        let broken = r#"
approved = true
params = ["reference", "reference", "unused", "1x"]
default_language = "de"
[lang.en]
subject = "About {{ reference }}"
sms = "{{ unclosed"
[lang.english]
voice = "Hello {{ caller }}"
"#;
        let problems = check_proposal("reply", broken).unwrap_err();
        let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
        assert!(has("approved: a proposal"), "{problems:#?}");
        assert!(has("default_language: \"de\""), "{problems:#?}");
        assert!(
            has("[lang.en]: needs both subject and email"),
            "{problems:#?}"
        );
        assert!(has("[lang.en] sms: syntax error"), "{problems:#?}");
        assert!(
            has("[lang.english]: \"english\" is not a language tag"),
            "{problems:#?}"
        );
        assert!(
            has("[lang.english] voice: uses \"caller\""),
            "{problems:#?}"
        );
        assert!(
            has("params: \"reference\" is declared twice"),
            "{problems:#?}"
        );
        assert!(
            has("params: \"1x\" is not a parameter name"),
            "{problems:#?}"
        );
        // What the text uses is not known while a part does not compile:
        // no parameter is said to be unused.
        assert!(!has("declared but no text uses it"), "{problems:#?}");
        assert_eq!(problems.len(), 8, "{problems:#?}");
    }

    #[test]
    fn a_parameter_no_text_uses_is_a_problem_once_every_part_compiles() {
        let text = "params = [\"reference\", \"unused\"]\noptional = [\"spare\"]\n\
                    [lang.en]\nsms = \"About {{ reference }}\"\n";
        let problems = check_proposal("reply", text).unwrap_err();
        assert_eq!(
            problems,
            [
                "params: \"unused\" is declared but no text uses it",
                "optional: \"spare\" is declared but no text uses it",
            ]
        );
    }

    #[test]
    fn unparsable_text_and_bad_ids_are_refused_with_the_reason() {
        let e = check_proposal("reply", "params = [\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("line 1"), "{e:?}");
        let e = check_proposal("Reply.x", GOOD).unwrap_err();
        assert!(e[0].starts_with("template_id:"), "{e:?}");
        let e = check_proposal("reply", "colour = 1\n[lang.en]\nsms = \"x\"\n").unwrap_err();
        assert!(e[0].contains("colour"), "{e:?}");
    }

    #[test]
    fn template_ids_are_safe_folder_names_and_subject_tokens() {
        for ok in ["escalation_alert", "a", "weekly-status2"] {
            assert!(is_template_id(ok), "{ok}");
        }
        for bad in ["", "A", "1a", "a.b", "a b", "a*", &"a".repeat(65)] {
            assert!(!is_template_id(bad), "{bad:?}");
        }
    }
}
