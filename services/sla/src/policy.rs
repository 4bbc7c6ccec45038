//! SLA policies: which response-time clocks a case gets and their targets
//! (`config/sla.toml`, compiled in; `[sla] policy_file` replaces it).

use std::{path::Path, time::Duration};

use herald_calendar::Calendar;
use herald_proto::v1::{CaseChannel, ClockKind, Priority};
use serde::Deserialize;

/// The policies Herald ships with.
pub const DEFAULT_POLICIES: &str = include_str!("../../../config/sla.toml");

/// How long a clock runs before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Real time.
    Wall(Duration),
    /// Working time on the team's calendar.
    Business(Duration),
    /// Business days: each the calendar's `business_day` of working time.
    BusinessDays(u32),
}

impl Target {
    /// The target as seconds and whether they are business seconds, on
    /// the calendar of the case's team.
    pub fn resolve(self, cal: &Calendar) -> (u64, bool) {
        match self {
            Target::Wall(d) => (d.as_secs(), false),
            Target::Business(d) => (d.as_secs(), true),
            Target::BusinessDays(n) => (cal.business_day.as_secs() * u64::from(n), true),
        }
    }

    pub fn parse(text: &str) -> Result<Target, String> {
        let t = text.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if words.len() == 3 && words[1] == "business" {
            let n: u32 = words[0]
                .parse()
                .map_err(|_| format!("{text:?}: {:?} is not a whole number", words[0]))?;
            if n == 0 {
                return Err(format!("{text:?}: must be more than zero"));
            }
            let unit = match words[2] {
                "second" | "seconds" => 1,
                "minute" | "minutes" => 60,
                "hour" | "hours" => 3600,
                "day" | "days" => return Ok(Target::BusinessDays(n)),
                other => {
                    return Err(format!("{text:?}: {other:?} is not minutes, hours or days"));
                }
            };
            return Ok(Target::Business(Duration::from_secs(u64::from(n) * unit)));
        }
        match humantime::parse_duration(t) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(Target::Wall(d)),
            Ok(_) => Err(format!("{text:?}: must be at least a second")),
            Err(_) => Err(format!(
                "{text:?} is not a duration such as \"5m\", \"2h\", \"24 business hours\" or \"1 business day\""
            )),
        }
    }
}

/// One clock a policy sets.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockSpec {
    pub kind: ClockKind,
    pub policy: String,
    pub target: Target,
    /// The target as written, for showing.
    pub written: String,
    /// Warning at this fraction of the target, in thousandths.
    pub warn_permille: u32,
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    channels: Vec<CaseChannel>,
    priorities: Vec<Priority>,
    teams: Vec<String>,
    clocks: Vec<ClockSpec>,
}

#[derive(Debug, Clone)]
pub struct Policies {
    policies: Vec<Policy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_warning")]
    warning_at: f64,
    #[serde(default)]
    policy: Vec<FilePolicy>,
}

fn default_warning() -> f64 {
    0.75
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    name: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    priorities: Vec<String>,
    #[serde(default)]
    teams: Vec<String>,
    warning_at: Option<f64>,
    acknowledgement: Option<String>,
    response: Option<String>,
    resolution: Option<String>,
}

impl Policies {
    pub fn load(path: Option<&Path>) -> Result<Policies, Vec<String>> {
        let (text, origin) =
            herald_config::built_in_or_file(path, DEFAULT_POLICIES, "SLA policies")?;
        Policies::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Policies, Vec<String>> {
        let file: File = toml::from_str(text).map_err(|e| vec![format!("{origin}: {e}")])?;
        let mut problems = Vec::new();
        let fraction = |f: f64, at: &str, problems: &mut Vec<String>| -> u32 {
            if !(f > 0.0 && f < 1.0) {
                problems.push(format!(
                    "{at}warning_at = {f}: expected a fraction between 0 and 1"
                ));
            }
            (f * 1000.0).round() as u32
        };
        let default_warn = fraction(file.warning_at, "", &mut problems);
        let mut policies = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, p) in file.policy.into_iter().enumerate() {
            let at = format!("policy[{i}] ({}): ", p.name);
            if !herald_proto::subjects::is_subject_token(&p.name) {
                problems.push(format!(
                    "{at}name must be letters, digits or - _ (it is shown and sent in events)"
                ));
            }
            if !names.insert(p.name.clone()) {
                problems.push(format!("{at}name appears twice"));
            }
            let warn = p
                .warning_at
                .map(|f| fraction(f, &at, &mut problems))
                .unwrap_or(default_warn);
            let mut channels = Vec::new();
            for c in &p.channels {
                match CaseChannel::parse(c) {
                    Some(ch) => channels.push(ch),
                    None => problems.push(format!(
                        "{at}channels: {c:?} is not email, live_chat, phone, support_ticket or portal"
                    )),
                }
            }
            let mut priorities = Vec::new();
            for pr in &p.priorities {
                match herald_proto::v1::Priority::parse(pr) {
                    Some(x) => priorities.push(x),
                    None => problems.push(format!(
                        "{at}priorities: {pr:?} is not low, normal, high or critical"
                    )),
                }
            }
            let mut clocks = Vec::new();
            for (kind, written) in [
                (ClockKind::Acknowledgement, &p.acknowledgement),
                (ClockKind::Response, &p.response),
                (ClockKind::Resolution, &p.resolution),
            ] {
                let Some(w) = written else { continue };
                match Target::parse(w) {
                    Ok(target) => clocks.push(ClockSpec {
                        kind,
                        policy: p.name.clone(),
                        target,
                        written: w.trim().to_string(),
                        warn_permille: warn,
                    }),
                    Err(why) => problems.push(format!("{at}{}: {why}", kind.name())),
                }
            }
            if clocks.is_empty() {
                problems.push(format!(
                    "{at}sets no clock (give acknowledgement, response or resolution)"
                ));
            }
            policies.push(Policy {
                name: p.name,
                channels,
                priorities,
                teams: p.teams,
                clocks,
            });
        }
        if problems.is_empty() {
            Ok(Policies { policies })
        } else {
            Err(problems
                .into_iter()
                .map(|p| format!("{origin}: {p}"))
                .collect())
        }
    }

    /// The clocks a case gets: for each kind, the first matching policy
    /// that sets it.
    pub fn clocks_for(
        &self,
        channel: CaseChannel,
        priority: Priority,
        team: &str,
    ) -> Vec<ClockSpec> {
        let mut out: Vec<ClockSpec> = Vec::new();
        for p in &self.policies {
            let matches = (p.channels.is_empty() || p.channels.contains(&channel))
                && (p.priorities.is_empty() || p.priorities.contains(&priority))
                && (p.teams.is_empty() || p.teams.iter().any(|t| t == team));
            if !matches {
                continue;
            }
            for c in &p.clocks {
                if !out.iter().any(|o| o.kind == c.kind) {
                    out.push(c.clone());
                }
            }
        }
        out.sort_by_key(|c| c.kind as i32);
        out
    }

    /// How a policy wrote a clock's target ("24 business hours"), for
    /// showing; the clock's own seconds when the policy has changed since.
    pub fn written(&self, policy: &str, kind: ClockKind, target_s: u64, business: bool) -> String {
        self.policies
            .iter()
            .find(|p| p.name == policy)
            .and_then(|p| p.clocks.iter().find(|c| c.kind == kind))
            .map(|c| c.written.clone())
            .unwrap_or_else(|| {
                let d = humantime::format_duration(std::time::Duration::from_secs(target_s));
                if business {
                    format!("{d} of business time")
                } else {
                    d.to_string()
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policies_carry_the_sop_timeframes() {
        let p = Policies::load(None).unwrap();
        let cal = herald_calendar::Calendars::built_in().unwrap();
        let office = cal.for_team("support");
        let get = |ch, pr| p.clocks_for(ch, pr, "support");
        let resolved = |specs: Vec<ClockSpec>| -> Vec<(ClockKind, u64, bool, String)> {
            specs
                .into_iter()
                .map(|c| {
                    let (s, b) = c.target.resolve(office);
                    (c.kind, s, b, c.policy)
                })
                .collect()
        };
        use CaseChannel as C;
        use ClockKind as K;
        assert_eq!(
            resolved(get(C::Email, Priority::Normal)),
            [
                (K::Response, 24 * 3600, true, "email".into()),
                (K::Resolution, 24 * 3600, false, "unresolved".into())
            ]
        );
        assert_eq!(
            resolved(get(C::LiveChat, Priority::Normal)),
            [
                (K::Response, 300, false, "live_chat".into()),
                (K::Resolution, 24 * 3600, false, "unresolved".into())
            ]
        );
        assert_eq!(
            resolved(get(C::Phone, Priority::High)),
            [
                (K::Acknowledgement, 3600, false, "high".into()),
                (K::Response, 7200, false, "phone".into()),
                (K::Resolution, 24 * 3600, false, "unresolved".into())
            ]
        );
        assert_eq!(
            resolved(get(C::SupportTicket, Priority::Low)),
            [
                (K::Acknowledgement, 7200, false, "support_ticket".into()),
                (K::Resolution, 48 * 3600, false, "support_ticket".into())
            ]
        );
        // One business day on the office calendar is 8 working hours.
        assert_eq!(
            resolved(get(C::Portal, Priority::Normal)),
            [
                (K::Acknowledgement, 8 * 3600, true, "client_inquiry".into()),
                (K::Response, 16 * 3600, true, "client_inquiry".into()),
                (K::Resolution, 24 * 3600, false, "unresolved".into())
            ]
        );
        // Critical and high: acknowledged within the hour, the channel's
        // own clocks otherwise; a ticket keeps its 48 hours to resolve
        // (SOP 000 §2), everything else is escalated after 24 (SOP 002
        // §8.1).
        assert_eq!(
            resolved(get(C::SupportTicket, Priority::Critical)),
            [
                (K::Acknowledgement, 3600, false, "critical".into()),
                (K::Resolution, 48 * 3600, false, "support_ticket".into())
            ]
        );
        let chat = &get(C::LiveChat, Priority::Normal)[0];
        assert_eq!(chat.warn_permille, 600);
        assert_eq!(get(C::Email, Priority::Normal)[0].warn_permille, 750);
    }

    #[test]
    fn targets_parse_and_bad_ones_are_named() {
        assert_eq!(
            Target::parse("5m"),
            Ok(Target::Wall(Duration::from_secs(300)))
        );
        assert_eq!(
            Target::parse("24 business hours"),
            Ok(Target::Business(Duration::from_secs(24 * 3600)))
        );
        assert_eq!(
            Target::parse("30 business minutes"),
            Ok(Target::Business(Duration::from_secs(1800)))
        );
        assert_eq!(
            Target::parse("2 business days"),
            Ok(Target::BusinessDays(2))
        );
        for bad in [
            "soon",
            "0 business hours",
            "two business days",
            "3 business weeks",
            "0s",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let problems = Policies::parse(
            r#"
warning_at = 1.5
[[policy]]
name = "a"
channels = ["fax"]
priorities = ["urgent"]
response = "whenever"
[[policy]]
name = "a"
"#,
            "sla.toml",
        )
        .unwrap_err()
        .join("\n");
        for want in [
            "warning_at = 1.5",
            "\"fax\"",
            "\"urgent\"",
            "response: \"whenever\"",
            "name appears twice",
            "sets no clock",
        ] {
            assert!(problems.contains(want), "{want} not in:\n{problems}");
        }
    }
}
