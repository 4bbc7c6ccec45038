//! A version as its recipients would read it, before anyone approves it:
//! rendered in every language and on every channel it has text for, with
//! the parameters given and a visible sample for each one not given.

use std::collections::BTreeMap;

use herald_proto::v1::Channel;

use super::{Origin, Source, TemplateStore, source};

/// One language and channel of a previewed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub language: String,
    pub channel: Channel,
    /// Empty but for email.
    pub subject: String,
    pub body: String,
}

/// What a parameter nobody gave is shown as, so a reader sees where it
/// goes.
pub fn sample(name: &str) -> String {
    format!("[{name}]")
}

/// Renders the text of version `version` of template `id` in each of its
/// languages and channels, with `given` and a [`sample`] for every other
/// parameter it declares (required or optional) and every variable Herald
/// supplies. A text that does not compile gives its problems.
pub fn preview(
    id: &str,
    version: u32,
    text: &str,
    given: &BTreeMap<String, String>,
) -> Result<Vec<Preview>, Vec<String>> {
    let parsed = source::parse(text).map_err(|e| vec![e])?;
    // A shipped file says whether it is approved; a proposal does not.
    let origin = if parsed.approved.is_some() {
        Origin::File
    } else {
        Origin::Proposed
    };
    let (store, problems) = TemplateStore::build(vec![Source {
        origin,
        ..Source::approved(id, version, text)
    }]);
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(t) = store.versions(id).first() else {
        return Err(vec![format!(
            "template {id} v{version}: nothing to preview"
        )]);
    };
    let mut vars = given.clone();
    for name in t
        .params
        .iter()
        .chain(&t.optional)
        .map(String::as_str)
        .chain(source::SUPPLIED)
    {
        vars.entry(name.to_string()).or_insert_with(|| sample(name));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (language, channels) in &t.languages {
        for channel in channels {
            match store.render_version(t, language, *channel, &vars) {
                Ok(r) => out.push(Preview {
                    language: language.clone(),
                    channel: *channel,
                    subject: r.subject,
                    body: r.body,
                }),
                Err(e) => problems.push(format!("[lang.{language}] {}: {e}", channel.name())),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAFT: &str = r#"
params = ["reference"]
optional = ["note"]
[lang.en]
subject = "About {{ reference }}"
email = "Dear {{ recipient_name }},{% if note is defined %} {{ note }}{% endif %}"
sms = "About {{ reference }}"
[lang.fr]
sms = "À propos de {{ reference }}"
voice = "Bonjour {{ recipient_name }}"
"#;

    #[test]
    fn every_language_and_channel_is_rendered_with_samples_for_what_is_not_given() {
        let given = [("reference".to_string(), "CASE-7".to_string())].into();
        let all = preview("reply", 3, DRAFT, &given).unwrap();
        let seen: Vec<(&str, &str)> = all
            .iter()
            .map(|p| (p.language.as_str(), p.channel.name()))
            .collect();
        assert_eq!(
            seen,
            [
                ("en", "email"),
                ("en", "sms"),
                ("fr", "sms"),
                ("fr", "voice")
            ]
        );
        assert_eq!(all[0].subject, "About CASE-7");
        assert_eq!(all[0].body, "Dear [recipient_name], [note]");
        assert_eq!(all[2].body, "À propos de CASE-7");
        assert_eq!(all[3].body, "Bonjour [recipient_name]");
    }

    #[test]
    fn a_broken_text_gives_its_problems() {
        let e = preview("reply", 3, "[lang.en]\nsms = \"{{ x\"\n", &BTreeMap::new()).unwrap_err();
        assert!(
            e[0].starts_with("template reply v3: [lang.en] sms"),
            "{e:?}"
        );
    }
}
