//! Interpreters for a meeting (SOP 004, translation and interpretation
//! services): when a meeting asks for one, each attendee whose language is
//! not the organiser's needs someone from the directory (a contact with
//! role `interpreter`) who interprets between the two, and free at the
//! meeting's time. This finds the candidates; the calendar books the
//! first free ones with the organiser's slot, in the same script, so an
//! interpreter is never in two meetings at once either.

use herald_directory::contacts::{Contact, Directory, DirectoryError, INTERPRETER, MemberOf};
use herald_proto::v1::{ErrorCode, Rejected};

use crate::validate::reject;

/// One language the meeting needs interpreted from the organiser's, and
/// who could do it, in the directory's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Need {
    pub language: String,
    pub candidates: Vec<String>,
}

/// The languages of `attendees` other than `organiser`'s, each once, by
/// primary subtag, in the attendees' order.
fn other_languages(organiser: &Contact, attendees: &[Contact]) -> Vec<String> {
    let own = herald_directory::contacts::primary_language(&organiser.language);
    let mut out: Vec<String> = Vec::new();
    for a in attendees {
        let l = herald_directory::contacts::primary_language(&a.language);
        if l != own && !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// For each language to interpret, the interpreters among `pool` between
/// it and the organiser's (never someone already at the meeting), or the
/// refusal naming `meeting.interpreter`.
pub(crate) fn needs(
    organiser: &Contact,
    attendees: &[Contact],
    pool: &[Contact],
) -> Result<Vec<Need>, Rejected> {
    let languages = other_languages(organiser, attendees);
    if languages.is_empty() {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "meeting.interpreter",
            format!(
                "every attendee's language is the organiser's ({}): no interpreter is needed",
                organiser.language
            ),
        ));
    }
    let at_meeting = |id: &str| id == organiser.id || attendees.iter().any(|a| a.id == id);
    languages
        .into_iter()
        .map(|language| {
            let candidates: Vec<String> = pool
                .iter()
                .filter(|c| !at_meeting(&c.id) && c.interprets_between(&organiser.language, &language))
                .map(|c| c.id.clone())
                .collect();
            if candidates.is_empty() {
                return Err(reject(
                    ErrorCode::InvalidState,
                    "meeting.interpreter",
                    format!(
                        "no interpreter between {} and {language} is in the directory: import a contact with role {INTERPRETER} and interprets [{}, {language}]",
                        organiser.language,
                        herald_directory::contacts::primary_language(&organiser.language)
                    ),
                ));
            }
            Ok(Need {
                language,
                candidates,
            })
        })
        .collect()
}

/// The directory's interpreters, as stored now.
pub(crate) async fn pool(directory: &Directory) -> Result<Vec<Contact>, DirectoryError> {
    directory.in_group(MemberOf::Role, INTERPRETER).await
}

/// The interpreters to try first: one per need, reusing one already
/// chosen who covers a later language too, and leaving out those `busy`.
/// `None` when some need has no one left.
pub(crate) fn choose(needs: &[Need], busy: &[String]) -> Option<Vec<String>> {
    let mut chosen: Vec<String> = Vec::new();
    for n in needs {
        if chosen.iter().any(|c| n.candidates.contains(c)) {
            continue;
        }
        let pick = n.candidates.iter().find(|c| !busy.contains(c))?;
        chosen.push(pick.clone());
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, language: &str, interprets: &[&str]) -> Contact {
        let mut c: Contact = herald_proto::v1::Contact {
            id: id.into(),
            name: id.into(),
            email: Some(format!("{id}@example.org")),
            language: language.into(),
            ..Default::default()
        }
        .into();
        if !interprets.is_empty() {
            c.role = Some(INTERPRETER.into());
            c.interprets = interprets.iter().map(|l| l.to_string()).collect();
        }
        c
    }

    #[test]
    fn each_other_language_needs_an_interpreter_between_it_and_the_organisers() {
        let sam = person("fl-sam", "en-GB", &[]);
        let guests = [
            person("amira", "ar", &[]),
            person("luc", "fr-CA", &[]),
            person("ann", "en", &[]),
            person("zoe", "fr", &[]),
        ];
        let pool = [
            person("int-fr", "fr", &["fr", "en"]),
            person("int-es", "es", &["es", "en"]),
            person("int-ar", "ar", &["ar", "en", "fr"]),
        ];
        let needs = needs(&sam, &guests, &pool).unwrap();
        assert_eq!(
            needs,
            [
                Need {
                    language: "ar".into(),
                    candidates: vec!["int-ar".into()]
                },
                Need {
                    language: "fr".into(),
                    candidates: vec!["int-fr".into(), "int-ar".into()]
                },
            ]
        );
        // The Arabic interpreter also covers French.
        assert_eq!(choose(&needs, &[]), Some(vec!["int-ar".into()]));
        assert_eq!(choose(&needs, &["int-ar".into()]), None);
    }

    #[test]
    fn a_meeting_in_one_language_or_with_no_interpreter_listed_is_refused_by_name() {
        let sam = person("fl-sam", "en", &[]);
        let r = needs(&sam, &[person("ann", "en-US", &[])], &[]).unwrap_err();
        assert_eq!(r.field, "meeting.interpreter");
        let r = needs(
            &sam,
            &[person("amira", "ar", &[])],
            &[person("int-fr", "fr", &["fr", "en"])],
        )
        .unwrap_err();
        assert!(r.message.contains("between en and ar"), "{}", r.message);
        // Someone already invited does not interpret for the meeting.
        let both = person("int-ar", "ar", &["ar", "en"]);
        assert!(needs(&sam, &[person("amira", "ar", &[]), both.clone()], &[both]).is_err());
    }
}
