//! Escalation policies and the follow-up settings (`config/escalation.toml`,
//! compiled in; `[escalation] policy_file` replaces it).

use std::{path::Path, time::Duration};

use herald_proto::v1::{ClockKind, Priority};
use serde::Deserialize;

/// The policies Herald ships with.
pub const DEFAULT_POLICIES: &str = include_str!("../../../config/escalation.toml");

/// Who a level notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The case's responsible staff member.
    Responsible,
    /// Everyone holding a role (in the case's team if any do).
    Role(String),
    /// One contact.
    Contact(String),
}

impl Target {
    fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s == "responsible" {
            return Ok(Target::Responsible);
        }
        let (target, id) = match s.strip_prefix("role:") {
            Some(role) => (Target::Role(role.to_string()), role),
            None => (Target::Contact(s.to_string()), s),
        };
        if herald_proto::subjects::is_subject_token(id) {
            Ok(target)
        } else {
            Err(format!(
                "{s:?} is not \"responsible\", a contact id or \"role:<role>\""
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub name: String,
    pub targets: Vec<Target>,
    /// How long the level has before the next notice (a repeat, or the
    /// next level).
    pub timeout: Duration,
    /// Further notices to the same level before moving up.
    pub repeat: u32,
    /// What the client is told to expect.
    pub expected_within: Duration,
}

impl Level {
    /// The level's name as people read it: "team lead".
    pub fn title(&self) -> String {
        self.name.replace('_', " ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub teams: Vec<String>,
    pub priorities: Vec<Priority>,
    pub escalate_at_open: Vec<Priority>,
    /// The level an escalate-now request starts at.
    pub on_request: usize,
    /// The level a breach of each clock starts at, where it is not the
    /// first (SOP 002 §8.1: a case not resolved within 24 hours goes to
    /// the team lead).
    pub on_breach: Vec<(ClockKind, usize)>,
    pub levels: Vec<Level>,
}

impl Policy {
    /// The level a breach of `clock` starts the policy at.
    pub fn breach_level(&self, clock: ClockKind) -> usize {
        self.on_breach
            .iter()
            .find(|(c, _)| *c == clock)
            .map_or(0, |(_, level)| *level)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUp {
    pub delay: Duration,
    pub reminder_after: Duration,
}

#[derive(Debug, Clone)]
pub struct Policies {
    policies: Vec<Policy>,
    pub follow_up: FollowUp,
    /// Who takes a client's feedback, by its category (SOP 000 §5).
    pub departments: Vec<Department>,
    /// How long before a meeting its attendees are reminded, longest
    /// first (`[meetings] reminders`; shipped: a day and an hour).
    pub meeting_reminders: Vec<Duration>,
    /// When each department's heads get the feedback trend
    /// (`[feedback.trend]`; shipped: monthly, on the 1st at 09:00); None
    /// when it is off.
    pub trend: Option<Trend>,
}

/// The feedback trend's schedule: a cadence at a local time, on the
/// business days of a team's calendar (and in its time zone).
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub cadence: herald_calendar::cadence::Cadence,
    pub at: chrono::NaiveTime,
    pub team: String,
}

/// A department feedback is relayed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Department {
    pub name: String,
    /// The categories it takes; empty: every category no earlier
    /// department takes.
    pub categories: Vec<String>,
    pub owners: Vec<Target>,
}

impl Policies {
    /// The department for feedback of `category`: the first that lists it,
    /// else the first that lists none.
    pub fn department_for(&self, category: &str) -> Option<&Department> {
        self.departments
            .iter()
            .find(|d| d.categories.iter().any(|c| c == category))
            .or_else(|| self.departments.iter().find(|d| d.categories.is_empty()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    policy: Vec<FilePolicy>,
    follow_up: FileFollowUp,
    #[serde(default)]
    feedback: FileFeedback,
    #[serde(default)]
    meetings: FileMeetings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMeetings {
    #[serde(default = "default_reminders")]
    reminders: Vec<String>,
}

impl Default for FileMeetings {
    fn default() -> Self {
        FileMeetings {
            reminders: default_reminders(),
        }
    }
}

fn default_reminders() -> Vec<String> {
    vec!["24h".into(), "1h".into()]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileFeedback {
    #[serde(default)]
    department: Vec<FileDepartment>,
    #[serde(default)]
    trend: FileTrend,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileTrend {
    /// weekly, biweekly, monthly or off.
    cadence: String,
    weekday: String,
    day_of_month: u32,
    at: String,
    team: String,
    first: Option<String>,
}

impl Default for FileTrend {
    fn default() -> Self {
        FileTrend {
            cadence: "monthly".into(),
            weekday: "monday".into(),
            day_of_month: 1,
            at: "09:00".into(),
            team: String::new(),
            first: None,
        }
    }
}

impl FileTrend {
    fn parse(self, problems: &mut Vec<String>) -> Option<Trend> {
        if self.cadence == "off" {
            return None;
        }
        let first = match self.first.as_deref() {
            None => None,
            Some(f) => match chrono::NaiveDate::parse_from_str(f, "%Y-%m-%d") {
                Ok(d) => Some(d),
                Err(_) => {
                    problems.push(format!("feedback.trend.first: {f:?} is not YYYY-MM-DD"));
                    None
                }
            },
        };
        let cadence = herald_calendar::cadence::Cadence::from_words(
            &self.cadence,
            &self.weekday.to_ascii_lowercase(),
            self.day_of_month,
            first,
        )
        .map_err(|e| {
            problems.push(format!(
                "feedback.trend.{e}{}",
                if e.starts_with("cadence") {
                    " (or off)"
                } else {
                    ""
                }
            ))
        })
        .ok();
        let at = herald_config::parse_hh_mm(&self.at)
            .and_then(|(h, m)| chrono::NaiveTime::from_hms_opt(h, m, 0));
        if at.is_none() {
            problems.push(format!("feedback.trend.at: {:?} is not HH:MM", self.at));
        }
        Some(Trend {
            cadence: cadence?,
            at: at?,
            team: self.team,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDepartment {
    name: String,
    #[serde(default)]
    categories: Vec<String>,
    owners: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFollowUp {
    #[serde(with = "humantime_serde")]
    delay: Duration,
    #[serde(with = "humantime_serde")]
    reminder_after: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    name: String,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    priorities: Vec<String>,
    #[serde(default)]
    escalate_at_open: Vec<String>,
    on_request: Option<String>,
    /// Clock name (acknowledgement, response, resolution) → level name.
    #[serde(default)]
    on_breach: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    level: Vec<FileLevel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLevel {
    name: String,
    targets: Vec<String>,
    timeout: String,
    #[serde(default)]
    repeat: u32,
    expected_within: Option<String>,
}

impl Policies {
    pub fn load(path: Option<&Path>) -> Result<Policies, Vec<String>> {
        let (text, origin) =
            herald_config::built_in_or_file(path, DEFAULT_POLICIES, "escalation policies")?;
        Policies::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Policies, Vec<String>> {
        let file: File = toml::from_str(text).map_err(|e| vec![format!("{origin}: {e}")])?;
        let mut problems = Vec::new();
        let priorities = |list: &[String], at: &str, problems: &mut Vec<String>| {
            let mut out = Vec::new();
            for p in list {
                match herald_proto::v1::Priority::parse(p) {
                    Some(x) => out.push(x),
                    None => {
                        problems.push(format!("{at}: {p:?} is not low, normal, high or critical"))
                    }
                }
            }
            out
        };
        let mut policies = Vec::new();
        for (i, p) in file.policy.into_iter().enumerate() {
            let at = format!("policy[{i}] ({})", p.name);
            if p.level.is_empty() {
                problems.push(format!("{at}: has no [[policy.level]]"));
            }
            let mut levels = Vec::new();
            for (j, l) in p.level.into_iter().enumerate() {
                let at = format!("{at} level[{j}] ({})", l.name);
                let timeout = match humantime::parse_duration(&l.timeout) {
                    Ok(d) if !d.is_zero() => d,
                    _ => {
                        problems.push(format!(
                            "{at}: timeout {:?} is not a duration such as \"30m\"",
                            l.timeout
                        ));
                        Duration::from_secs(1)
                    }
                };
                let expected_within =
                    match l.expected_within.as_deref().map(humantime::parse_duration) {
                        None => timeout * (l.repeat + 1),
                        Some(Ok(d)) if !d.is_zero() => d,
                        Some(_) => {
                            problems.push(format!(
                                "{at}: expected_within is not a duration such as \"4h\""
                            ));
                            timeout
                        }
                    };
                if l.targets.is_empty() {
                    problems.push(format!("{at}: targets is empty"));
                }
                let mut targets = Vec::new();
                for t in &l.targets {
                    match Target::parse(t) {
                        Ok(t) => targets.push(t),
                        Err(why) => problems.push(format!("{at}: targets: {why}")),
                    }
                }
                levels.push(Level {
                    name: l.name,
                    targets,
                    timeout,
                    repeat: l.repeat,
                    expected_within,
                });
            }
            let on_request = match &p.on_request {
                None => 0,
                Some(name) => match levels.iter().position(|l| &l.name == name) {
                    Some(i) => i,
                    None => {
                        problems.push(format!("{at}: on_request = {name:?} names no level"));
                        0
                    }
                },
            };
            let mut on_breach = Vec::new();
            for (clock, level) in &p.on_breach {
                let kind = match ClockKind::parse(clock) {
                    Some(k) if k != ClockKind::Unspecified => k,
                    _ => {
                        problems.push(format!(
                            "{at}: on_breach: {clock:?} is not a clock (acknowledgement, response, resolution)"
                        ));
                        continue;
                    }
                };
                match levels.iter().position(|l| &l.name == level) {
                    Some(i) => on_breach.push((kind, i)),
                    None => problems.push(format!(
                        "{at}: on_breach.{clock} = {level:?} names no level"
                    )),
                }
            }
            policies.push(Policy {
                name: p.name,
                teams: p.teams,
                priorities: priorities(&p.priorities, &format!("{at}: priorities"), &mut problems),
                escalate_at_open: priorities(
                    &p.escalate_at_open,
                    &format!("{at}: escalate_at_open"),
                    &mut problems,
                ),
                on_request,
                on_breach,
                levels,
            });
        }
        if policies.is_empty() {
            problems.push("no [[policy]]: give at least one".into());
        }
        let follow_up = FollowUp {
            delay: file.follow_up.delay,
            reminder_after: file.follow_up.reminder_after,
        };
        if follow_up.reminder_after.is_zero() {
            problems.push("follow_up.reminder_after must be more than zero".into());
        }
        let trend = file.feedback.trend.parse(&mut problems);
        let mut departments = Vec::new();
        for (i, d) in file.feedback.department.into_iter().enumerate() {
            let at = format!("feedback.department[{i}] ({})", d.name);
            if d.name.trim().is_empty() {
                problems.push(format!("{at}: name is empty"));
            }
            if d.owners.is_empty() {
                problems.push(format!(
                    "{at}: owners is empty: who is told of the feedback?"
                ));
            }
            let mut owners = Vec::new();
            for o in &d.owners {
                match Target::parse(o) {
                    Ok(t) => owners.push(t),
                    Err(why) => problems.push(format!("{at}: owners: {why}")),
                }
            }
            departments.push(Department {
                name: d.name,
                categories: d.categories,
                owners,
            });
        }
        let mut meeting_reminders = Vec::new();
        for (i, r) in file.meetings.reminders.iter().enumerate() {
            match humantime::parse_duration(r) {
                Ok(d) if !d.is_zero() => meeting_reminders.push(d),
                Ok(_) => problems.push(format!("meetings.reminders[{i}]: must be more than zero")),
                Err(e) => problems.push(format!("meetings.reminders[{i}]: {r:?}: {e}")),
            }
        }
        meeting_reminders.sort_by(|a, b| b.cmp(a));
        meeting_reminders.dedup();
        if problems.is_empty() {
            Ok(Policies {
                policies,
                follow_up,
                departments,
                meeting_reminders,
                trend,
            })
        } else {
            Err(problems
                .into_iter()
                .map(|p| format!("{origin}: {p}"))
                .collect())
        }
    }

    /// The policy for a case: the first that matches its team and
    /// priority.
    pub fn for_case(&self, team: &str, priority: Priority) -> Option<&Policy> {
        self.policies.iter().find(|p| {
            (p.teams.is_empty() || p.teams.iter().any(|t| t == team))
                && (p.priorities.is_empty() || p.priorities.contains(&priority))
        })
    }

    pub fn named(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_climbs_frontline_to_management() {
        let p = Policies::load(None).unwrap();
        let standard = p.for_case("support", Priority::Normal).unwrap();
        let names: Vec<&str> = standard.levels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["frontline", "team_lead", "supervisor", "management"]
        );
        assert_eq!(standard.levels[0].targets, [Target::Responsible]);
        assert_eq!(
            standard.levels[1].targets,
            [Target::Role("team_lead".into())]
        );
        // The client hears the time the level has before the next.
        assert_eq!(
            standard.levels[1].expected_within,
            Duration::from_secs(2 * 3600)
        );
        assert_eq!(standard.on_request, 1);
        assert_eq!(standard.breach_level(ClockKind::Resolution), 1);
        assert_eq!(standard.breach_level(ClockKind::Response), 0);
        assert_eq!(standard.escalate_at_open, [Priority::Critical]);
        assert_eq!(p.follow_up.delay, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn bad_policies_are_refused_with_every_reason() {
        let problems = Policies::parse(
            r#"
[[policy]]
name = "p"
priorities = ["urgent"]
on_request = "boss"
on_breach = { resolution = "nobody", soon = "a" }
[[policy.level]]
name = "a"
targets = ["role:has space", "x.y"]
timeout = "soon"
[[policy]]
name = "empty"
[follow_up]
delay = "1h"
reminder_after = "0s"
[feedback.trend]
cadence = "daily"
at = "noon"
"#,
            "escalation.toml",
        )
        .unwrap_err()
        .join("\n");
        for want in [
            "\"urgent\"",
            "on_request = \"boss\"",
            "on_breach.resolution = \"nobody\" names no level",
            "on_breach: \"soon\" is not a clock",
            "\"role:has space\"",
            "\"x.y\"",
            "timeout \"soon\"",
            "(empty): has no [[policy.level]]",
            "reminder_after",
            "feedback.trend.cadence: \"daily\" is not weekly, biweekly or monthly (or off)",
            "feedback.trend.at",
        ] {
            assert!(problems.contains(want), "{want} not in:\n{problems}");
        }
    }

    #[test]
    fn the_feedback_trend_is_monthly_unless_said_otherwise() {
        let shipped = Policies::load(None).unwrap();
        let trend = shipped.trend.unwrap();
        assert_eq!(
            trend.cadence,
            herald_calendar::cadence::Cadence::Monthly { day: 1 }
        );
        let off = Policies::parse(
            r#"
[[policy]]
name = "p"
[[policy.level]]
name = "frontline"
targets = ["responsible"]
timeout = "30m"
[follow_up]
delay = "1h"
reminder_after = "1h"
[feedback.trend]
cadence = "off"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(off.trend, None);
    }
}
