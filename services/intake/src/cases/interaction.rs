//! Interactions that happened outside Herald (SOP 001 §4.1: every call,
//! email and meeting logged with a summary, action items and who is
//! responsible; SOP 004: a call's outcome and follow-up actions), and the
//! action items done later: checked field by field, and written to the
//! case's trail as the interaction record.

use herald_proto::v1::{CaseEvent, CaseEventKind, ErrorCode, InteractionKind, Rejected};
use herald_runtime::audit::Entry;

use crate::validate::reject;

const MAX_SUMMARY: usize = 2000;
const MAX_OUTCOME: usize = 1000;
const MAX_ACTION: usize = 500;
/// Action items one interaction may carry.
pub const MAX_ACTIONS: usize = 20;

/// Whether `text` is printable prose: line breaks allowed, other control
/// characters not.
fn printable(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}

/// Checks the interaction of an `interaction_logged` event and the action
/// of an `action_done` one; every other kind must carry neither.
pub fn check(kind: CaseEventKind, ev: &mut CaseEvent) -> Result<(), Rejected> {
    use ErrorCode as E;
    match (kind, ev.interaction.as_mut()) {
        (CaseEventKind::InteractionLogged, None) => {
            return Err(reject(
                E::InvalidArgument,
                "interaction",
                "is required: its kind, a summary and any action items",
            ));
        }
        (CaseEventKind::InteractionLogged, Some(i)) => {
            if matches!(
                InteractionKind::try_from(i.kind),
                Ok(InteractionKind::Unspecified) | Err(_)
            ) {
                return Err(reject(
                    E::InvalidArgument,
                    "interaction.kind",
                    "is required (call, meeting, email or in_person)",
                ));
            }
            if i.summary.trim().is_empty() {
                return Err(reject(
                    E::InvalidArgument,
                    "interaction.summary",
                    "is required: what was discussed and agreed",
                ));
            }
            for (field, text, max) in [
                ("interaction.summary", &i.summary, MAX_SUMMARY),
                ("interaction.outcome", &i.outcome, MAX_OUTCOME),
            ] {
                if text.chars().count() > max || !printable(text) {
                    return Err(reject(
                        E::InvalidArgument,
                        field,
                        format!("must be at most {max} printable characters"),
                    ));
                }
            }
            if i.actions.len() > MAX_ACTIONS {
                return Err(reject(
                    E::InvalidArgument,
                    "interaction.actions",
                    format!("holds {} items; at most {MAX_ACTIONS}", i.actions.len()),
                ));
            }
            for (n, a) in i.actions.iter_mut().enumerate() {
                let at = |f: &str| format!("interaction.actions[{n}].{f}");
                if a.description.trim().is_empty()
                    || a.description.chars().count() > MAX_ACTION
                    || !printable(&a.description)
                {
                    return Err(reject(
                        E::InvalidArgument,
                        at("description"),
                        format!("must be 1-{MAX_ACTION} printable characters: what is to be done"),
                    ));
                }
                if !herald_proto::subjects::is_subject_token(&a.owner) {
                    return Err(reject(
                        E::InvalidArgument,
                        at("owner"),
                        "is required: the contact id of whoever owns it",
                    ));
                }
                match &a.due {
                    None => {
                        return Err(reject(
                            E::InvalidArgument,
                            at("due"),
                            "is required: when it must be done by",
                        ));
                    }
                    Some(t) if t.seconds <= 0 || !(0..1_000_000_000).contains(&t.nanos) => {
                        return Err(reject(
                            E::InvalidArgument,
                            at("due"),
                            "is not a valid timestamp",
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        (_, Some(_)) => {
            return Err(reject(
                E::InvalidArgument,
                "interaction",
                "only interaction_logged events carry an interaction",
            ));
        }
        (_, None) => {}
    }
    match (kind, &ev.action_done) {
        (CaseEventKind::ActionDone, None) => Err(reject(
            E::InvalidArgument,
            "action_done",
            "is required: the action's id (<interaction event id>/<n>)",
        )),
        (CaseEventKind::ActionDone, Some(done)) => match parse_action_id(&done.action_id) {
            Some(_) => Ok(()),
            None => Err(reject(
                E::InvalidArgument,
                "action_done.action_id",
                "must be <event id of the interaction>/<n>, n counting from 1",
            )),
        },
        (_, Some(_)) => Err(reject(
            E::InvalidArgument,
            "action_done",
            "only action_done events name a done action",
        )),
        (_, None) => Ok(()),
    }
}

/// An action id's interaction event id and number.
pub fn parse_action_id(id: &str) -> Option<(&str, usize)> {
    let (event, n) = id.rsplit_once('/')?;
    let n: usize = n.parse().ok()?;
    (!event.is_empty() && (1..=MAX_ACTIONS).contains(&n)).then_some((event, n))
}

/// The people an interaction names, who must be in the directory: each
/// action's owner, as (field, contact id).
pub fn named(ev: &CaseEvent) -> Vec<(String, String)> {
    ev.interaction
        .iter()
        .flat_map(|i| i.actions.iter().enumerate())
        .map(|(n, a)| (format!("interaction.actions[{n}].owner"), a.owner.clone()))
        .collect()
}

/// The interaction record's summary and attributes (SOP 001 §4.1: date,
/// type, summary, action items, responsible staff, who recorded it).
pub fn document(ev: &CaseEvent, mut entry: Entry) -> (String, Entry) {
    if let Some(done) = &ev.action_done {
        return (
            format!("action {} done", done.action_id),
            entry.attr("action_id", &done.action_id),
        );
    }
    let Some(i) = &ev.interaction else {
        return (String::new(), entry);
    };
    let kind = InteractionKind::try_from(i.kind)
        .unwrap_or_default()
        .name()
        .replace('_', " ");
    entry = entry
        .attr("interaction", &kind)
        .attr("interaction_summary", i.summary.trim());
    if !i.outcome.is_empty() {
        entry = entry.attr("outcome", &i.outcome);
    }
    for (n, a) in i.actions.iter().enumerate() {
        let due = a
            .due
            .as_ref()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(Some(t)))
                    .to_rfc3339()
            })
            .unwrap_or_default();
        entry = entry.attr(
            &format!("action_{}", n + 1),
            format!("{} (owner {}, due {due})", a.description.trim(), a.owner),
        );
    }
    let actions = match i.actions.len() {
        0 => String::new(),
        1 => ", 1 action item".to_string(),
        n => format!(", {n} action items"),
    };
    (format!("{kind} logged{actions}"), entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::{ActionDone, ActionItem, Interaction};

    fn call() -> CaseEvent {
        CaseEvent {
            event_id: "call-1".into(),
            case_id: "CASE-1".into(),
            kind: CaseEventKind::InteractionLogged as i32,
            interaction: Some(Interaction {
                kind: InteractionKind::Call as i32,
                summary: "  Agreed a new delivery date.  ".into(),
                outcome: "client satisfied".into(),
                actions: vec![ActionItem {
                    description: "Send the revised schedule".into(),
                    owner: "fl-sam".into(),
                    due: Some(herald_proto::Timestamp {
                        seconds: 1_900_000_000,
                        nanos: 0,
                    }),
                }],
            }),
            ..Default::default()
        }
    }

    fn field(mut ev: CaseEvent) -> String {
        let kind = ev.kind();
        check(kind, &mut ev).unwrap_err().field
    }

    #[test]
    fn an_interaction_names_its_kind_a_summary_and_owned_dated_actions() {
        let mut ok = call();
        check(CaseEventKind::InteractionLogged, &mut ok).unwrap();
        assert_eq!(
            ok.interaction.as_ref().unwrap().summary,
            "  Agreed a new delivery date.  ",
            "kept as given"
        );
        let mut e = call();
        e.interaction.as_mut().unwrap().kind = 0;
        assert_eq!(field(e), "interaction.kind");
        let mut e = call();
        e.interaction.as_mut().unwrap().summary = " ".into();
        assert_eq!(field(e), "interaction.summary");
        let mut e = call();
        e.interaction.as_mut().unwrap().actions[0].owner = "has space".into();
        assert_eq!(field(e), "interaction.actions[0].owner");
        let mut e = call();
        e.interaction.as_mut().unwrap().actions[0].due = None;
        assert_eq!(field(e), "interaction.actions[0].due");
        let mut e = call();
        e.interaction = None;
        assert_eq!(field(e), "interaction");
        let mut e = call();
        e.kind = CaseEventKind::Acknowledged as i32;
        assert_eq!(field(e), "interaction");
    }

    #[test]
    fn a_done_action_is_named_by_its_interaction_and_number() {
        assert_eq!(parse_action_id("call-1/2"), Some(("call-1", 2)));
        for bad in ["call-1", "/1", "call-1/0", "call-1/x", "call-1/99"] {
            assert_eq!(parse_action_id(bad), None, "{bad}");
        }
        let mut done = CaseEvent {
            kind: CaseEventKind::ActionDone as i32,
            action_done: Some(ActionDone {
                action_id: "call-1".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            check(CaseEventKind::ActionDone, &mut done)
                .unwrap_err()
                .field,
            "action_done.action_id"
        );
    }

    #[test]
    fn the_record_carries_the_summary_outcome_and_each_action() {
        let mut ev = call();
        check(CaseEventKind::InteractionLogged, &mut ev).unwrap();
        let (summary, entry) = document(
            &ev,
            Entry::new(herald_proto::v1::AuditStep::CaseEvent, String::new()),
        );
        assert_eq!(summary, "call logged, 1 action item");
        assert_eq!(
            entry.attributes["interaction_summary"],
            "Agreed a new delivery date."
        );
        assert_eq!(entry.attributes["outcome"], "client satisfied");
        assert!(
            entry.attributes["action_1"]
                .starts_with("Send the revised schedule (owner fl-sam, due 2030-")
        );
    }
}
