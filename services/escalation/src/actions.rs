//! The action items of a case's logged interactions (SOP 001 §4.1: action
//! items with deadlines and owners; SOP 004: follow-up actions of a call),
//! as follow-ups their owners are reminded of: when one falls due, then
//! once a day while it stays open, at most [`REMINDERS`] times, until an
//! `action_done` event closes it. Pure: the case's timer `a:<case>` fires
//! at the earliest reminder due, and the reducer asks for the reminders.

use herald_proto::v1::CaseEvent;
use serde::{Deserialize, Serialize};

/// Reminders an open action gets in all: on its due date and on each of
/// the days after, while it stays open.
pub const REMINDERS: u32 = 3;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One action item, as the case keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// `<event id of the interaction>/<n>`.
    pub id: String,
    pub description: String,
    pub owner: String,
    pub due_ms: i64,
    #[serde(default)]
    pub done: bool,
    /// Reminders sent so far.
    #[serde(default)]
    pub reminded: u32,
}

impl Action {
    /// When the next reminder is due, if one is to come.
    pub fn next_ms(&self) -> Option<i64> {
        (!self.done && self.reminded < REMINDERS).then(|| {
            self.due_ms
                .saturating_add(i64::from(self.reminded) * DAY_MS)
        })
    }

    /// Whether it is past its due date at `now_ms`.
    pub fn overdue(&self, now_ms: i64) -> bool {
        !self.done && now_ms > self.due_ms
    }
}

/// The actions an `interaction_logged` event brings.
pub fn logged(ev: &CaseEvent) -> Vec<Action> {
    ev.interaction
        .iter()
        .flat_map(|i| i.actions.iter().enumerate())
        .map(|(n, a)| Action {
            id: format!("{}/{}", ev.event_id, n + 1),
            description: a.description.trim().to_string(),
            owner: a.owner.clone(),
            due_ms: a
                .due
                .as_ref()
                .map(|t| herald_runtime::clock::millis(herald_proto::system_time(Some(t)).into()))
                .unwrap_or_default(),
            done: false,
            reminded: 0,
        })
        .collect()
}

/// Adds `new` to `all`, each once (a repeated event adds nothing).
pub fn add(all: &mut Vec<Action>, new: Vec<Action>) {
    for a in new {
        if !all.iter().any(|x| x.id == a.id) {
            all.push(a);
        }
    }
}

/// Marks `id` done: true if it was open.
pub fn finish(all: &mut [Action], id: &str) -> bool {
    match all.iter_mut().find(|a| a.id == id) {
        Some(a) if !a.done => {
            a.done = true;
            true
        }
        _ => false,
    }
}

/// The earliest reminder still to come.
pub fn next_due(all: &[Action]) -> Option<i64> {
    all.iter().filter_map(Action::next_ms).min()
}

/// The reminders due at `now_ms`, each counted as sent: (the action as it
/// now stands, which reminder this is, from 1).
pub fn due(all: &mut [Action], now_ms: i64) -> Vec<(Action, u32)> {
    let mut out = Vec::new();
    for a in all.iter_mut() {
        if a.next_ms().is_some_and(|at| at <= now_ms) {
            a.reminded += 1;
            out.push((a.clone(), a.reminded));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::{ActionItem, CaseEventKind, Interaction};

    fn event() -> CaseEvent {
        CaseEvent {
            event_id: "call-1".into(),
            kind: CaseEventKind::InteractionLogged as i32,
            interaction: Some(Interaction {
                actions: vec![
                    ActionItem {
                        description: "Send the schedule".into(),
                        owner: "fl-sam".into(),
                        due: Some(herald_proto::Timestamp {
                            seconds: 1_000,
                            nanos: 0,
                        }),
                    },
                    ActionItem {
                        description: "Call back".into(),
                        owner: "tl-tia".into(),
                        due: Some(herald_proto::Timestamp {
                            seconds: 5_000,
                            nanos: 0,
                        }),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_open_action_is_reminded_on_its_day_and_each_day_after_three_times_in_all() {
        let mut all = Vec::new();
        add(&mut all, logged(&event()));
        add(&mut all, logged(&event()));
        assert_eq!(all.len(), 2, "a repeated event adds nothing");
        assert_eq!(all[0].id, "call-1/1");
        assert_eq!(next_due(&all), Some(1_000_000));
        assert!(due(&mut all, 999_999).is_empty());
        let first = due(&mut all, 1_000_000);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].0.id.as_str(), first[0].1), ("call-1/1", 1));
        assert_eq!(next_due(&all), Some(5_000_000), "the second action's day");
        let mut rounds = vec![];
        for day in 1..5 {
            for (a, n) in due(&mut all, 1_000_000 + day * DAY_MS) {
                if a.id == "call-1/1" {
                    rounds.push(n);
                }
            }
        }
        assert_eq!(rounds, [2, 3], "three reminders in all");
        assert!(all[0].overdue(1_000_001));
    }

    #[test]
    fn a_done_action_is_reminded_no_more() {
        let mut all = logged(&event());
        assert!(finish(&mut all, "call-1/2"));
        assert!(!finish(&mut all, "call-1/2"), "once");
        assert!(!finish(&mut all, "call-9/1"), "unknown");
        assert_eq!(next_due(&all), Some(1_000_000));
        finish(&mut all, "call-1/1");
        assert_eq!(next_due(&all), None);
        assert!(due(&mut all, i64::MAX).is_empty());
    }
}
