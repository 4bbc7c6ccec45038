//! Approved, versioned templates per channel and language (SOP 001 §4.1,
//! SOP 004 "standard email and written communication templates").
//!
//! Templates live in files: `<dir>/<template_id>/v<N>.toml`, one file per
//! version, with a `[lang.<tag>]` table per language holding `subject` and
//! `email` (the email), `sms` and `voice` (the words spoken on a call). Text
//! is minijinja; a variable the caller did not pass is an error, never an
//! empty gap. Only versions marked `approved = true` are used unless a
//! request pins a version, and even a pinned version must be approved.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use herald_proto::v1::Channel;
use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;

/// The template sent in place of sensitive content on channels that may not
/// carry it. It must exist in every deployment.
pub const CONTENT_FREE_NOTICE: &str = "secure_message_notice";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[serde(default)]
    description: String,
    approved: bool,
    #[serde(default)]
    approved_by: String,
    /// Parameters a request must pass.
    #[serde(default)]
    params: Vec<String>,
    #[serde(default = "default_language")]
    default_language: String,
    lang: BTreeMap<String, Parts>,
}

fn default_language() -> String {
    "en".into()
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Parts {
    subject: Option<String>,
    email: Option<String>,
    sms: Option<String>,
    voice: Option<String>,
}

/// One version of a template, as loaded.
#[derive(Debug, Clone)]
pub struct TemplateVersion {
    pub id: String,
    pub version: u32,
    pub approved: bool,
    pub approved_by: String,
    pub description: String,
    pub params: Vec<String>,
    pub default_language: String,
    /// Language tag → channels it has text for.
    pub languages: BTreeMap<String, Vec<Channel>>,
}

/// Text ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub language: String,
    pub version: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("no template named {0:?}")]
    Unknown(String),
    #[error("template {id:?} has no version {version}")]
    UnknownVersion { id: String, version: u32 },
    #[error("template {id:?} version {version} is not approved")]
    NotApproved { id: String, version: u32 },
    #[error("template {id:?} has no approved version")]
    NoApprovedVersion { id: String },
    #[error("template {id:?} needs parameter {param:?}")]
    MissingParam { id: String, param: String },
    #[error("template {id:?} v{version} has no {channel} text in {language:?} or its fallbacks")]
    NoText {
        id: String,
        version: u32,
        channel: &'static str,
        language: String,
    },
    #[error("template {id:?} could not be rendered: {reason}")]
    Render { id: String, reason: String },
}

/// Every template version under a folder, compiled once at start.
pub struct TemplateStore {
    versions: HashMap<String, Vec<TemplateVersion>>,
    env: Environment<'static>,
}

impl TemplateStore {
    /// Loads and compiles every template, reporting every broken file.
    pub fn load(dir: &Path) -> Result<TemplateStore, Vec<String>> {
        let mut problems = Vec::new();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut versions: HashMap<String, Vec<TemplateVersion>> = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return Err(vec![format!("templates folder {}: {e}", dir.display())]),
        };
        let mut folders: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        folders.sort();
        for folder in folders.into_iter().filter(|p| p.is_dir()) {
            let Some(id) = folder.file_name().map(|n| n.to_string_lossy().to_string()) else {
                continue;
            };
            let mut files: Vec<_> = match std::fs::read_dir(&folder) {
                Ok(e) => e.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
                Err(e) => {
                    problems.push(format!("{}: {e}", folder.display()));
                    continue;
                }
            };
            files.sort();
            for file in files {
                let Some(name) = file.file_name().map(|n| n.to_string_lossy().to_string()) else {
                    continue;
                };
                let Some(version) = name
                    .strip_prefix('v')
                    .and_then(|n| n.strip_suffix(".toml"))
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    problems.push(format!(
                        "{}: expected files named v<N>.toml",
                        file.display()
                    ));
                    continue;
                };
                let parsed = std::fs::read_to_string(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|t| toml::from_str::<TemplateFile>(&t).map_err(|e| e.to_string()));
                let tf = match parsed {
                    Ok(tf) => tf,
                    Err(e) => {
                        problems.push(format!("{}: {e}", file.display()));
                        continue;
                    }
                };
                if !tf.lang.contains_key(&tf.default_language) {
                    problems.push(format!(
                        "{}: default_language {:?} has no [lang.{}] table",
                        file.display(),
                        tf.default_language,
                        tf.default_language
                    ));
                }
                let mut languages = BTreeMap::new();
                for (lang, parts) in &tf.lang {
                    if let Err(why) = herald_directory::validate::language(lang) {
                        problems.push(format!("{}: [lang.{lang}]: {why}", file.display()));
                    }
                    if parts.email.is_some() != parts.subject.is_some() {
                        problems.push(format!(
                            "{}: [lang.{lang}] needs both subject and email, or neither",
                            file.display()
                        ));
                    }
                    let mut channels = Vec::new();
                    for (part, text, channel) in [
                        ("subject", &parts.subject, None),
                        ("email", &parts.email, Some(Channel::Email)),
                        ("sms", &parts.sms, Some(Channel::Sms)),
                        ("voice", &parts.voice, Some(Channel::Voice)),
                    ] {
                        let Some(text) = text else { continue };
                        let key = template_key(&id, version, lang, part);
                        if let Err(e) = env.add_template_owned(key, text.clone()) {
                            problems.push(format!("{}: [lang.{lang}] {part}: {e}", file.display()));
                        }
                        if let Some(c) = channel {
                            channels.push(c);
                        }
                    }
                    languages.insert(lang.clone(), channels);
                }
                versions
                    .entry(id.clone())
                    .or_default()
                    .push(TemplateVersion {
                        id: id.clone(),
                        version,
                        approved: tf.approved,
                        approved_by: tf.approved_by,
                        description: tf.description,
                        params: tf.params,
                        default_language: tf.default_language,
                        languages,
                    });
            }
        }
        for v in versions.values_mut() {
            v.sort_by_key(|t| t.version);
        }
        if problems.is_empty() {
            Ok(TemplateStore { versions, env })
        } else {
            Err(problems)
        }
    }

    /// The version a request gets: the pinned one (if approved) or the
    /// newest approved one.
    pub fn resolve(&self, id: &str, version: u32) -> Result<&TemplateVersion, TemplateError> {
        let all = self
            .versions
            .get(id)
            .ok_or_else(|| TemplateError::Unknown(id.to_string()))?;
        if version == 0 {
            return all
                .iter()
                .rev()
                .find(|t| t.approved)
                .ok_or_else(|| TemplateError::NoApprovedVersion { id: id.to_string() });
        }
        let t = all.iter().find(|t| t.version == version).ok_or_else(|| {
            TemplateError::UnknownVersion {
                id: id.to_string(),
                version,
            }
        })?;
        if !t.approved {
            return Err(TemplateError::NotApproved {
                id: id.to_string(),
                version,
            });
        }
        Ok(t)
    }

    /// Checks that a request can be rendered: the template resolves and
    /// every required parameter is given.
    pub fn check(
        &self,
        id: &str,
        version: u32,
        params: &BTreeMap<String, String>,
    ) -> Result<&TemplateVersion, TemplateError> {
        let t = self.resolve(id, version)?;
        for p in &t.params {
            if !params.contains_key(p) {
                return Err(TemplateError::MissingParam {
                    id: id.to_string(),
                    param: p.clone(),
                });
            }
        }
        Ok(t)
    }

    /// The language used for a request: the exact tag, then its primary
    /// subtag, then the template's default.
    pub fn pick_language(
        &self,
        t: &TemplateVersion,
        wanted: &str,
        channel: Channel,
    ) -> Option<String> {
        let primary = wanted.split('-').next().unwrap_or(wanted);
        [wanted, primary, t.default_language.as_str()]
            .into_iter()
            .find(|l| t.languages.get(*l).is_some_and(|c| c.contains(&channel)))
            .map(str::to_string)
    }

    /// Whether the template a request names has no text at all for
    /// `channel` in `language` or the languages it falls back to. That is a
    /// property of the template set, known since it was loaded, not an
    /// event: a caller offers the channel only when there is text for it,
    /// rather than rendering, failing and reporting it for every
    /// notification. False when the template does not resolve, so that
    /// [`TemplateStore::render`] reports why.
    pub fn lacks_text(&self, id: &str, version: u32, language: &str, channel: Channel) -> bool {
        self.resolve(id, version)
            .is_ok_and(|t| self.pick_language(t, language, channel).is_none())
    }

    /// Renders a template for one channel and language.
    pub fn render(
        &self,
        id: &str,
        version: u32,
        language: &str,
        channel: Channel,
        vars: &BTreeMap<String, String>,
    ) -> Result<Rendered, TemplateError> {
        let t = self.resolve(id, version)?;
        let lang =
            self.pick_language(t, language, channel)
                .ok_or_else(|| TemplateError::NoText {
                    id: id.to_string(),
                    version: t.version,
                    channel: channel.name(),
                    language: language.to_string(),
                })?;
        let render = |part: &str| -> Result<String, TemplateError> {
            let key = template_key(id, t.version, &lang, part);
            self.env
                .get_template(&key)
                .and_then(|tpl| tpl.render(vars))
                .map_err(|e| TemplateError::Render {
                    id: id.to_string(),
                    reason: e.to_string(),
                })
        };
        let (subject, body) = match channel {
            Channel::Email => (render("subject")?.trim().to_string(), render("email")?),
            Channel::Sms => (String::new(), render("sms")?.trim().to_string()),
            Channel::Voice => (String::new(), render("voice")?.trim().to_string()),
            Channel::Unspecified => {
                return Err(TemplateError::NoText {
                    id: id.to_string(),
                    version: t.version,
                    channel: "unspecified",
                    language: language.to_string(),
                });
            }
        };
        Ok(Rendered {
            subject,
            body,
            language: lang,
            version: t.version,
        })
    }

    /// Every template id with its versions, for listings.
    pub fn all(&self) -> impl Iterator<Item = &TemplateVersion> {
        let mut ids: Vec<_> = self.versions.keys().collect();
        ids.sort();
        ids.into_iter().flat_map(move |id| self.versions[id].iter())
    }
}

fn template_key(id: &str, version: u32, lang: &str, part: &str) -> String {
    format!("{id}@v{version}/{lang}/{part}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(files: &[(&str, &str)]) -> Result<TemplateStore, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        TemplateStore::load(dir.path())
    }

    const V1: &str = r#"
approved = true
params = ["reference"]
[lang.en]
subject = "We received {{ reference }}"
email = "Dear {{ recipient_name }}, thank you."
sms = "Got {{ reference }}"
[lang.fr]
subject = "Nous avons reçu {{ reference }}"
email = "Bonjour {{ recipient_name }}"
"#;
    const V2_DRAFT: &str = "approved = false\n[lang.en]\nsms = \"draft\"\n";

    fn vars() -> BTreeMap<String, String> {
        [("reference", "R-1"), ("recipient_name", "Ann")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn newest_approved_version_and_language_fallback() {
        let s = store(&[("ack/v1.toml", V1), ("ack/v2.toml", V2_DRAFT)]).unwrap();
        let r = s
            .render("ack", 0, "fr-CA", Channel::Email, &vars())
            .unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(r.language, "fr");
        assert_eq!(r.subject, "Nous avons reçu R-1");
        // French has no SMS text: the default language is used.
        let r = s.render("ack", 0, "fr", Channel::Sms, &vars()).unwrap();
        assert_eq!((r.language.as_str(), r.body.as_str()), ("en", "Got R-1"));
        assert_eq!(
            s.resolve("ack", 2).unwrap_err(),
            TemplateError::NotApproved {
                id: "ack".into(),
                version: 2
            }
        );
    }

    #[test]
    fn missing_parameters_and_text_are_errors() {
        let s = store(&[("ack/v1.toml", V1)]).unwrap();
        assert!(matches!(
            s.check("ack", 0, &BTreeMap::new()),
            Err(TemplateError::MissingParam { .. })
        ));
        assert!(matches!(
            s.render("ack", 0, "en", Channel::Voice, &vars()),
            Err(TemplateError::NoText { .. })
        ));
        assert!(s.lacks_text("ack", 0, "en", Channel::Voice));
        assert!(!s.lacks_text("ack", 0, "fr", Channel::Sms));
        assert!(!s.lacks_text("nope", 0, "en", Channel::Voice));
        let mut partial = vars();
        partial.remove("recipient_name");
        assert!(matches!(
            s.render("ack", 0, "en", Channel::Email, &partial),
            Err(TemplateError::Render { .. })
        ));
        assert_eq!(
            s.resolve("nope", 0).unwrap_err(),
            TemplateError::Unknown("nope".into())
        );
    }

    #[test]
    fn broken_files_are_all_reported() {
        let problems = store(&[
            (
                "a/v1.toml",
                "approved = true\n[lang.en]\nsms = \"{{ unclosed\"\n",
            ),
            ("b/version1.toml", "approved = true\n"),
            (
                "c/v1.toml",
                "approved = true\ncolour = 1\n[lang.en]\nsms = \"x\"\n",
            ),
        ])
        .err()
        .unwrap();
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }
}
