//! What an escalation and a follow-up do next: pure state machines over
//! the policy and the time, tested without servers.
//!
//! ```text
//!  escalation:
//!    (none) ──start──▶ level L, round 0 ──timeout──▶ round 1 … round `repeat`
//!                          ▲      │                              │ timeout
//!                          │      └─ escalate_now ──▶ level L+1 ◀┘
//!                          │                         (the last level repeats)
//!     acknowledged / responded / resolved ──▶ stopped      past the last round ──▶ exhausted
//!
//!  follow-up:
//!    resolved ──▶ scheduled ──delay──▶ survey sent ──reminder_after──▶ reminder sent
//!                     │                    │
//!                     └─ reopened ─────────┴──▶ called off     feedback ──▶ answered
//! ```
//!
//! Each step names the level and round it notifies; the service derives
//! idempotency keys from them, so a step repeated after a crash sends
//! nothing twice.

use serde::{Deserialize, Serialize};

use crate::policy::{FollowUp as FollowUpPolicy, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Stopped,
    /// Every level and repeat was notified and nobody acknowledged.
    Exhausted,
}

/// One escalation of a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// Stream position of what started it: the position of its cancel key
    /// (`esc-<case>@<seq>`) and part of every idempotency key.
    pub seq: u64,
    /// "breach:<clock>", "request" or "critical".
    pub trigger: String,
    pub policy: String,
    /// The level reached (0 for the first) and its round (0 for the first
    /// notice, then each repeat).
    pub level: usize,
    pub round: u32,
    pub started_ms: i64,
    /// When the next repeat or level is due, while active.
    pub next_ms: Option<i64>,
    pub status: Status,
    #[serde(default)]
    pub stopped_ms: Option<i64>,
    #[serde(default)]
    pub stopped_by: String,
    /// Contacts notified at the current level.
    #[serde(default)]
    pub notified: Vec<String>,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Notify the targets of `level`; on a new level (`client`) tell the
    /// client too.
    Notify {
        level: usize,
        round: u32,
        client: bool,
    },
    /// Past the last round of the last level.
    Exhausted,
    /// Nothing is due yet.
    Wait,
}

impl Escalation {
    /// A new escalation at `level`, notifying it at once.
    pub fn start(
        policy: &Policy,
        seq: u64,
        trigger: &str,
        level: usize,
        now_ms: i64,
    ) -> (Escalation, Step) {
        let level = level.min(policy.levels.len().saturating_sub(1));
        let mut e = Escalation {
            seq,
            trigger: trigger.to_string(),
            policy: policy.name.clone(),
            level,
            round: 0,
            started_ms: now_ms,
            next_ms: None,
            status: Status::Active,
            stopped_ms: None,
            stopped_by: String::new(),
            notified: Vec::new(),
        };
        e.arm(policy, level, 0, now_ms);
        (
            e,
            Step::Notify {
                level,
                round: 0,
                client: true,
            },
        )
    }

    fn arm(&mut self, policy: &Policy, level: usize, round: u32, now_ms: i64) {
        if level != self.level {
            self.notified.clear();
        }
        self.level = level;
        self.round = round;
        let timeout = policy.levels[level].timeout.as_millis() as i64;
        self.next_ms = Some(now_ms.saturating_add(timeout));
    }

    /// The level's time ran out (if it has by `now_ms`): repeat, go up, or
    /// finish.
    pub fn on_timeout(&mut self, policy: &Policy, now_ms: i64) -> Step {
        match (self.status, self.next_ms) {
            (Status::Active, Some(next)) if now_ms >= next => {}
            _ => return Step::Wait,
        }
        let Some(level) = policy.levels.get(self.level) else {
            return self.exhaust();
        };
        if self.round < level.repeat {
            let round = self.round + 1;
            self.arm(policy, self.level, round, now_ms);
            Step::Notify {
                level: self.level,
                round,
                client: false,
            }
        } else if self.level + 1 < policy.levels.len() {
            let up = self.level + 1;
            self.arm(policy, up, 0, now_ms);
            Step::Notify {
                level: up,
                round: 0,
                client: true,
            }
        } else {
            self.exhaust()
        }
    }

    fn exhaust(&mut self) -> Step {
        self.status = Status::Exhausted;
        self.next_ms = None;
        Step::Exhausted
    }

    /// Someone asked to go up now: the next level, or the last one again.
    pub fn escalate_now(&mut self, policy: &Policy, now_ms: i64) -> Step {
        if self.status != Status::Active {
            return Step::Wait;
        }
        if self.level + 1 < policy.levels.len() {
            let up = self.level + 1;
            self.arm(policy, up, 0, now_ms);
            Step::Notify {
                level: up,
                round: 0,
                client: true,
            }
        } else {
            let round = self.round + 1;
            self.arm(policy, self.level, round, now_ms);
            Step::Notify {
                level: self.level,
                round,
                client: false,
            }
        }
    }

    /// An acknowledgement, response or resolution. True if it was active.
    pub fn stop(&mut self, now_ms: i64, by: &str) -> bool {
        if self.status != Status::Active {
            return false;
        }
        self.status = Status::Stopped;
        self.next_ms = None;
        self.stopped_ms = Some(now_ms);
        self.stopped_by = by.to_string();
        true
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }
}

/// The follow-up of a resolved case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FollowUp {
    #[default]
    None,
    /// `seq`: the resolution's stream position (the follow-up's cancel key
    /// position and part of its idempotency keys).
    Scheduled {
        seq: u64,
        due_ms: i64,
    },
    SurveySent {
        seq: u64,
        reminder_ms: i64,
    },
    ReminderSent {
        seq: u64,
    },
    Answered {
        seq: u64,
        rating: u32,
    },
    CalledOff {
        seq: u64,
    },
}

/// What the follow-up does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowStep {
    Survey { seq: u64 },
    Reminder { seq: u64 },
    Wait,
}

impl FollowUp {
    pub fn resolved(seq: u64, at_ms: i64, policy: &FollowUpPolicy) -> FollowUp {
        FollowUp::Scheduled {
            seq,
            due_ms: at_ms.saturating_add(policy.delay.as_millis() as i64),
        }
    }

    pub fn next_due(&self) -> Option<i64> {
        match *self {
            FollowUp::Scheduled { due_ms, .. } => Some(due_ms),
            FollowUp::SurveySent { reminder_ms, .. } => Some(reminder_ms),
            _ => None,
        }
    }

    pub fn on_timer(&mut self, now_ms: i64, policy: &FollowUpPolicy) -> FollowStep {
        match *self {
            FollowUp::Scheduled { seq, due_ms } if now_ms >= due_ms => {
                *self = FollowUp::SurveySent {
                    seq,
                    reminder_ms: now_ms.saturating_add(policy.reminder_after.as_millis() as i64),
                };
                FollowStep::Survey { seq }
            }
            FollowUp::SurveySent { seq, reminder_ms } if now_ms >= reminder_ms => {
                *self = FollowUp::ReminderSent { seq };
                FollowStep::Reminder { seq }
            }
            _ => FollowStep::Wait,
        }
    }

    /// The client answered: no reminder.
    pub fn answered(&mut self, rating: u32) {
        let seq = self.seq();
        *self = FollowUp::Answered { seq, rating };
    }

    /// The case was reopened: nothing more is sent. True if something was
    /// still to come.
    pub fn call_off(&mut self) -> bool {
        let pending = self.next_due().is_some();
        if pending {
            *self = FollowUp::CalledOff { seq: self.seq() };
        }
        pending
    }

    pub fn seq(&self) -> u64 {
        match *self {
            FollowUp::None => 0,
            FollowUp::Scheduled { seq, .. }
            | FollowUp::SurveySent { seq, .. }
            | FollowUp::ReminderSent { seq }
            | FollowUp::Answered { seq, .. }
            | FollowUp::CalledOff { seq } => seq,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            FollowUp::None => "none",
            FollowUp::Scheduled { .. } => "scheduled",
            FollowUp::SurveySent { .. } => "survey_sent",
            FollowUp::ReminderSent { .. } => "reminder_sent",
            FollowUp::Answered { .. } => "answered",
            FollowUp::CalledOff { .. } => "called_off",
        }
    }
}

#[cfg(test)]
mod tests {
    //! The escalation rules on the shipped policy (frontline 30m;
    //! team lead 1h, repeated once; supervisor 2h, once; management 4h,
    //! twice), with a ManualClock for time.
    use super::*;
    use crate::policy::Policies;
    use chrono::{TimeDelta, TimeZone, Utc};
    use herald_runtime::clock::{Clock, ManualClock, millis};

    fn setup() -> (Policy, FollowUpPolicy, ManualClock) {
        let p = Policies::load(None).unwrap();
        let policy = p.named("standard").unwrap().clone();
        let start = Utc.with_ymd_and_hms(2026, 3, 16, 9, 0, 0).unwrap();
        (policy, p.follow_up, ManualClock::at(start))
    }

    fn now(c: &ManualClock) -> i64 {
        millis(c.now())
    }

    #[test]
    fn an_unanswered_escalation_climbs_every_level_then_gives_up() {
        let (policy, _, clock) = setup();
        let (mut e, first) = Escalation::start(&policy, 42, "breach:response", 0, now(&clock));
        assert_eq!(
            first,
            Step::Notify {
                level: 0,
                round: 0,
                client: true
            }
        );
        // Nothing before the level's half hour.
        clock.advance(TimeDelta::minutes(29));
        assert_eq!(e.on_timeout(&policy, now(&clock)), Step::Wait);
        let mut steps = Vec::new();
        // Walk the clock forward a minute at a time for a day.
        for _ in 0..24 * 60 {
            clock.advance(TimeDelta::minutes(1));
            match e.on_timeout(&policy, now(&clock)) {
                Step::Wait => {}
                s => steps.push((s, clock.now())),
            }
        }
        let at =
            |m: i64| Utc.with_ymd_and_hms(2026, 3, 16, 9, 0, 0).unwrap() + TimeDelta::minutes(m);
        let n = |level, round, client| Step::Notify {
            level,
            round,
            client,
        };
        assert_eq!(
            steps,
            [
                (n(1, 0, true), at(30)),   // team lead
                (n(1, 1, false), at(90)),  // team lead again
                (n(2, 0, true), at(150)),  // supervisor
                (n(2, 1, false), at(270)), // supervisor again
                (n(3, 0, true), at(390)),  // management
                (n(3, 1, false), at(630)), // management again
                (n(3, 2, false), at(870)), // and once more
                (Step::Exhausted, at(1110)),
            ]
        );
        assert_eq!(e.status, Status::Exhausted);
        assert_eq!(e.next_ms, None);
    }

    #[test]
    fn an_acknowledgement_between_levels_stops_the_next() {
        let (policy, _, clock) = setup();
        let (mut e, _) = Escalation::start(&policy, 7, "breach:acknowledgement", 0, now(&clock));
        clock.advance(TimeDelta::minutes(30));
        assert!(matches!(
            e.on_timeout(&policy, now(&clock)),
            Step::Notify { level: 1, .. }
        ));
        clock.advance(TimeDelta::minutes(10));
        assert!(e.stop(now(&clock), "acknowledged by tl-kim"));
        assert_eq!(e.stopped_by, "acknowledged by tl-kim");
        assert!(
            !e.stop(now(&clock), "again"),
            "stopping twice changes nothing"
        );
        clock.advance(TimeDelta::hours(10));
        assert_eq!(e.on_timeout(&policy, now(&clock)), Step::Wait);
        assert_eq!(e.escalate_now(&policy, now(&clock)), Step::Wait);
        assert_eq!(e.level, 1);
    }

    #[test]
    fn escalate_now_goes_up_at_once_and_repeats_the_top() {
        let (policy, _, clock) = setup();
        // A request starts at the team lead (on_request).
        let (mut e, first) =
            Escalation::start(&policy, 9, "request", policy.on_request, now(&clock));
        assert_eq!(
            first,
            Step::Notify {
                level: 1,
                round: 0,
                client: true
            }
        );
        clock.advance(TimeDelta::minutes(5));
        assert_eq!(
            e.escalate_now(&policy, now(&clock)),
            Step::Notify {
                level: 2,
                round: 0,
                client: true
            }
        );
        // The supervisor's two hours start from the request.
        assert_eq!(e.next_ms, Some(now(&clock) + 2 * 3600 * 1000));
        e.escalate_now(&policy, now(&clock));
        assert_eq!(
            e.escalate_now(&policy, now(&clock)),
            Step::Notify {
                level: 3,
                round: 1,
                client: false
            },
            "at the top, management is paged again"
        );
    }

    #[test]
    fn a_resolved_case_gets_a_survey_then_one_reminder_unless_it_answers() {
        let (_, fu, clock) = setup();
        let resolved_at = now(&clock);
        let mut f = FollowUp::resolved(100, resolved_at, &fu);
        assert_eq!(f.next_due(), Some(resolved_at + 24 * 3600 * 1000));
        clock.advance(TimeDelta::hours(23));
        assert_eq!(f.on_timer(now(&clock), &fu), FollowStep::Wait);
        clock.advance(TimeDelta::hours(1));
        assert_eq!(
            f.on_timer(now(&clock), &fu),
            FollowStep::Survey { seq: 100 }
        );
        assert_eq!(f.on_timer(now(&clock), &fu), FollowStep::Wait, "one survey");
        clock.advance(TimeDelta::days(3));
        assert_eq!(
            f.on_timer(now(&clock), &fu),
            FollowStep::Reminder { seq: 100 }
        );
        clock.advance(TimeDelta::days(30));
        assert_eq!(
            f.on_timer(now(&clock), &fu),
            FollowStep::Wait,
            "one reminder only"
        );
        assert_eq!(f.next_due(), None);

        // Answered before the reminder: none is sent.
        let mut g = FollowUp::resolved(200, now(&clock), &fu);
        clock.advance(TimeDelta::days(1));
        assert_eq!(
            g.on_timer(now(&clock), &fu),
            FollowStep::Survey { seq: 200 }
        );
        g.answered(4);
        assert_eq!(
            g,
            FollowUp::Answered {
                seq: 200,
                rating: 4
            }
        );
        assert_eq!(g.next_due(), None);
        clock.advance(TimeDelta::days(5));
        assert_eq!(g.on_timer(now(&clock), &fu), FollowStep::Wait);

        // Reopened before the survey: called off.
        let mut h = FollowUp::resolved(300, now(&clock), &fu);
        assert!(h.call_off());
        assert_eq!(h, FollowUp::CalledOff { seq: 300 });
        assert!(!h.call_off());
    }

    #[test]
    fn state_survives_a_round_trip_through_json() {
        let (policy, fu, clock) = setup();
        let (e, _) = Escalation::start(&policy, 1, "critical", 0, now(&clock));
        let f = FollowUp::resolved(5, now(&clock), &fu);
        let json = serde_json::to_string(&(e.clone(), f)).unwrap();
        let back: (Escalation, FollowUp) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (e, f));
    }
}
