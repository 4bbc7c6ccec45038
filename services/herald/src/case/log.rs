//! `herald case log` and `herald case done`: an interaction that happened
//! outside Herald (a call, meeting, email or conversation) documented on
//! the case with its summary, outcome and action items (SOP 001 §4.1, SOP
//! 004), and an action item closed.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::Args;
use herald_proto::v1::{ActionDone, ActionItem, Interaction, InteractionKind};

use super::{EventArgs, usage};
use crate::Failure;

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// call, meeting, email or in-person.
    #[arg(long)]
    kind: String,
    /// What was discussed and agreed (kept in the case's trail).
    #[arg(long)]
    summary: String,
    /// How it ended, e.g. "client accepts the new date".
    #[arg(long)]
    outcome: Option<String>,
    /// An action item: "<what> by <YYYY-MM-DD or RFC 3339 time>"; repeat
    /// for several. A date alone means 09:00 UTC that day.
    #[arg(long = "action", value_name = "WHAT by WHEN")]
    actions: Vec<String>,
    /// Who owns the action items, by contact id (default: --by).
    #[arg(long)]
    owner: Option<String>,
}

#[derive(Args, Debug)]
pub struct DoneArgs {
    #[command(flatten)]
    pub event: EventArgs,
    /// The action's id, `<interaction event id>/<n>` (`herald case show`
    /// lists them).
    action_id: String,
}

impl LogArgs {
    /// The interaction the flags describe.
    pub fn interaction(&self) -> Result<Interaction, Failure> {
        let kind = InteractionKind::parse(&self.kind).ok_or_else(|| {
            usage(format!(
                "--kind {:?}: call, meeting, email or in-person",
                self.kind
            ))
        })?;
        let owner = match (&self.owner, &self.event.by) {
            (Some(o), _) | (None, Some(o)) => o.clone(),
            (None, None) if self.actions.is_empty() => String::new(),
            (None, None) => {
                return Err(usage(
                    "--action needs an owner: give --owner <contact id> (or --by)",
                ));
            }
        };
        let actions = self
            .actions
            .iter()
            .map(|a| action(a, &owner))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Interaction {
            kind: kind as i32,
            summary: self.summary.clone(),
            outcome: self.outcome.clone().unwrap_or_default(),
            actions,
        })
    }
}

impl DoneArgs {
    pub fn done(&self) -> ActionDone {
        ActionDone {
            action_id: self.action_id.clone(),
        }
    }
}

/// "<what> by <when>" as an action item owned by `owner`.
fn action(text: &str, owner: &str) -> Result<ActionItem, Failure> {
    let Some((what, when)) = text.rsplit_once(" by ") else {
        return Err(usage(format!(
            "--action {text:?}: say when, e.g. \"Send the revised schedule by 2026-12-10\""
        )));
    };
    Ok(ActionItem {
        description: what.trim().to_string(),
        owner: owner.to_string(),
        due: Some(herald_proto::timestamp(due(when.trim(), text)?.into())),
    })
}

fn due(when: &str, text: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(when) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(when, "%Y-%m-%d %H:%M") {
        return Ok(t.and_utc());
    }
    NaiveDate::parse_from_str(when, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            usage(format!(
                "--action {text:?}: {when:?} is not a date (YYYY-MM-DD, YYYY-MM-DD HH:MM in UTC, or RFC 3339)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_reads_what_and_when() {
        let a = action("Send the revised schedule by 2026-12-10", "fl-sam")
            .unwrap_or_else(|f| panic!("{}", f.message));
        assert_eq!(a.description, "Send the revised schedule");
        assert_eq!(a.owner, "fl-sam");
        let due = a.due.unwrap();
        assert_eq!(
            DateTime::from_timestamp(due.seconds, 0)
                .unwrap()
                .to_rfc3339(),
            "2026-12-10T09:00:00+00:00"
        );
        let b = action("Call back by the way by 2026-12-10T15:30:00+01:00", "x")
            .unwrap_or_else(|f| panic!("{}", f.message));
        assert_eq!(b.description, "Call back by the way");
        assert!(action("Call back soon", "x").is_err());
        assert!(action("Call back by Tuesday", "x").is_err());
    }
}
