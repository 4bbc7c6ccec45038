//! Approved, versioned templates per channel and language (SOP 001 §4.1,
//! SOP 004 "standard email and written communication templates").
//!
//! Templates live in files: `<dir>/<template_id>/v<N>.toml`, one file per
//! version, with a `[lang.<tag>]` table per language holding `subject` and
//! `email` (the email), `sms` and `voice` (the words spoken on a call). Text
//! is minijinja; a variable the caller did not pass is an error, never an
//! empty gap. Only versions marked `approved = true` are used unless a
//! request pins a version, and even a pinned version must be approved.
//!
//! Versions proposed at run time ([`source::check_proposal`]) join the
//! shipped ones once an approver approves them ([`TemplateStore::with_approved`]):
//! the store is rebuilt with them, never changed in place, so a reader
//! holding a store renders with one consistent set.

pub mod diff;
pub mod preview;
pub mod source;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use herald_proto::v1::Channel;
use minijinja::Environment;

use source::template_key;
pub use source::{Origin, Parts, SUPPLIED, VersionText, check_proposal, is_template_id};

/// The template sent in place of sensitive content on channels that may not
/// carry it. It must exist in every deployment.
pub const CONTENT_FREE_NOTICE: &str = "secure_message_notice";

/// One version's text and where it comes from, as a store is built from it.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub version: u32,
    pub text: String,
    pub origin: Origin,
    /// Where problems are said to be: the file, or `template <id> v<N>`.
    pub place: String,
}

impl Source {
    /// A version proposed at run time and approved.
    pub fn approved(id: &str, version: u32, text: &str) -> Source {
        Source {
            id: id.to_string(),
            version,
            text: text.to_string(),
            origin: Origin::Proposed,
            place: format!("template {id} v{version}"),
        }
    }
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
    /// Parameters a request may pass.
    pub optional: Vec<String>,
    pub default_language: String,
    /// Language tag → channels it has text for.
    pub languages: BTreeMap<String, Vec<Channel>>,
    pub origin: Origin,
    /// The version's text as written.
    pub text: String,
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

/// Every template version a service uses, compiled once.
pub struct TemplateStore {
    versions: HashMap<String, Vec<TemplateVersion>>,
    env: Environment<'static>,
    sources: Vec<Source>,
}

impl TemplateStore {
    /// Loads and compiles every template file under `dir`, reporting every
    /// broken file.
    pub fn load(dir: &Path) -> Result<TemplateStore, Vec<String>> {
        let (sources, mut problems) = read_folder(dir);
        let (store, built) = TemplateStore::build(sources);
        problems.extend(built);
        if problems.is_empty() {
            Ok(store)
        } else {
            Err(problems)
        }
    }

    /// Compiles `sources` into a store. A version with problems is left
    /// out; its problems come back, each prefixed with its place.
    pub fn build(sources: Vec<Source>) -> (TemplateStore, Vec<String>) {
        let mut problems = Vec::new();
        let mut env = source::environment();
        let mut versions: HashMap<String, Vec<TemplateVersion>> = HashMap::new();
        let mut kept = Vec::with_capacity(sources.len());
        for src in sources {
            let tf = match source::parse(&src.text) {
                Ok(tf) => tf,
                Err(e) => {
                    problems.push(format!("{}: {e}", src.place));
                    continue;
                }
            };
            let found = source::compile(&src.id, src.version, &tf, src.origin, &mut env);
            if !found.is_empty() {
                problems.extend(found.into_iter().map(|p| format!("{}: {p}", src.place)));
                continue;
            }
            let languages = tf
                .lang
                .iter()
                .map(|(lang, parts)| {
                    let channels = [
                        (parts.email.is_some(), Channel::Email),
                        (parts.sms.is_some(), Channel::Sms),
                        (parts.voice.is_some(), Channel::Voice),
                    ]
                    .into_iter()
                    .filter_map(|(has, c)| has.then_some(c))
                    .collect();
                    (lang.clone(), channels)
                })
                .collect();
            versions
                .entry(src.id.clone())
                .or_default()
                .push(TemplateVersion {
                    id: src.id.clone(),
                    version: src.version,
                    // A proposed version is built into a store only once
                    // an approver has approved it.
                    approved: src.origin == Origin::Proposed || tf.approved == Some(true),
                    approved_by: tf.approved_by.unwrap_or_default(),
                    description: tf.description,
                    params: tf.params,
                    optional: tf.optional,
                    default_language: tf.default_language,
                    languages,
                    origin: src.origin,
                    text: src.text.clone(),
                });
            kept.push(src);
        }
        for v in versions.values_mut() {
            v.sort_by_key(|t| t.version);
        }
        let store = TemplateStore {
            versions,
            env,
            sources: kept,
        };
        (store, problems)
    }

    /// This store with approved runtime versions added (one replacing a
    /// runtime version of the same number, as a repeat of an approval
    /// does). A version that clashes with a shipped file or does not
    /// compile is left out and reported.
    pub fn with_approved(&self, added: Vec<Source>) -> (TemplateStore, Vec<String>) {
        let mut problems = Vec::new();
        let mut sources = self.sources.clone();
        for src in added {
            let clash = sources
                .iter()
                .any(|s| s.origin == Origin::File && s.id == src.id && s.version == src.version);
            if clash {
                problems.push(format!(
                    "{}: a shipped file has this version number; the approved version is not used",
                    src.place
                ));
                continue;
            }
            sources.retain(|s| !(s.id == src.id && s.version == src.version));
            sources.push(src);
        }
        let (store, built) = TemplateStore::build(sources);
        problems.extend(built);
        (store, problems)
    }

    /// Every version of template `id`, oldest first (empty when unknown).
    pub fn versions(&self, id: &str) -> &[TemplateVersion] {
        self.versions.get(id).map(Vec::as_slice).unwrap_or_default()
    }

    /// The highest version number template `id` has (0: none).
    pub fn newest_version(&self, id: &str) -> u32 {
        self.versions(id).last().map_or(0, |t| t.version)
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
        self.render_version(t, language, channel, vars)
    }

    /// Renders version `t` of this store, approved or not, for one
    /// channel and language (with its fallbacks).
    pub fn render_version(
        &self,
        t: &TemplateVersion,
        language: &str,
        channel: Channel,
        vars: &BTreeMap<String, String>,
    ) -> Result<Rendered, TemplateError> {
        let id = t.id.as_str();
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

/// Every `<id>/v<N>.toml` under `dir`, read, with what could not be read.
fn read_folder(dir: &Path) -> (Vec<Source>, Vec<String>) {
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return (
                sources,
                vec![format!("templates folder {}: {e}", dir.display())],
            );
        }
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
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push(Source {
                    id: id.clone(),
                    version,
                    text,
                    origin: Origin::File,
                    place: file.display().to_string(),
                }),
                Err(e) => problems.push(format!("{}: {e}", file.display())),
            }
        }
    }
    (sources, problems)
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
    fn an_approved_runtime_version_joins_a_new_store_and_wins_unpinned() {
        let s = store(&[("ack/v1.toml", V1)]).unwrap();
        let v2 = "params = [\"reference\"]\n[lang.en]\nsms = \"New {{ reference }}\"\n";
        let (s2, problems) = s.with_approved(vec![Source::approved("ack", 2, v2)]);
        assert!(problems.is_empty(), "{problems:?}");
        let r = s2.render("ack", 0, "en", Channel::Sms, &vars()).unwrap();
        assert_eq!((r.version, r.body.as_str()), (2, "New R-1"));
        assert_eq!(s2.versions("ack")[1].origin, Origin::Proposed);
        assert_eq!(s2.newest_version("ack"), 2);
        // The store it came from is untouched; v1 can still be pinned.
        assert_eq!(
            s.render("ack", 0, "en", Channel::Sms, &vars())
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            s2.render("ack", 1, "en", Channel::Sms, &vars())
                .unwrap()
                .body,
            "Got R-1"
        );
        // Approving it again replaces it rather than adding a second v2.
        let (s3, _) = s2.with_approved(vec![Source::approved("ack", 2, v2)]);
        assert_eq!(s3.versions("ack").len(), 2);
        // A shipped file's number, or text that does not compile: left out.
        let (s4, problems) = s.with_approved(vec![
            Source::approved("ack", 1, v2),
            Source::approved("ack", 3, "[lang.en]\nsms = \"{{\"\n"),
        ]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("template ack v1: a shipped file"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("template ack v3: [lang.en] sms"),
            "{problems:?}"
        );
        assert_eq!(s4.newest_version("ack"), 1);
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
