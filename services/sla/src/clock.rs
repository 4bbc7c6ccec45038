//! The clocks of one case and how case events move them: pure functions of
//! the state, the event, the policies and the calendar, so that every rule
//! is tested with fixed instants and no servers.
//!
//! ```text
//!            start                pause                 resume
//!   (none) ────────▶ running ─────────────▶ paused ─────────────▶ running
//!                     │  ▲ warning (at warning_at of the target)
//!                     │  └ breach (at the deadline; keeps running)
//!                     └──── stop ───▶ stopped (met if it stopped by the deadline)
//! ```
//!
//! Time spent is counted on the team's calendar for a business-hours clock
//! and on the wall clock otherwise. A paused clock keeps what it spent; on
//! resuming, the deadline is what is left of the target from that moment.
//!
//! The state is kept compact (protobuf, a few dozen bytes a clock) because
//! a deployment may hold millions of running clocks in Redis.

use chrono::{DateTime, Utc};
use herald_calendar::Calendar;
use herald_proto::v1::{CaseChannel, CaseEventKind, ClockKind, ClockState, Priority};
use herald_runtime::clock::{from_millis, millis};

use crate::policy::ClockSpec;

/// Every clock of a case, and what the case is (for the events).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CaseClocks {
    #[prost(string, tag = "1")]
    pub team: String,
    #[prost(int32, tag = "2")]
    pub channel: i32,
    #[prost(int32, tag = "3")]
    pub priority: i32,
    /// Stream position of the last case event applied: a redelivered
    /// event is recognised and not applied twice.
    #[prost(uint64, tag = "4")]
    pub last_seq: u64,
    #[prost(message, repeated, tag = "5")]
    pub clocks: Vec<Clock>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Clock {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub policy: String,
    #[prost(uint64, tag = "3")]
    pub target_s: u64,
    #[prost(bool, tag = "4")]
    pub business: bool,
    #[prost(int32, tag = "5")]
    pub state: i32,
    /// Seconds counted before the current run (business seconds for a
    /// business-hours clock).
    #[prost(uint64, tag = "6")]
    pub spent_s: u64,
    /// When the current run began (ms since the epoch), while running.
    #[prost(int64, tag = "7")]
    pub run_from_ms: i64,
    /// The deadline, and the warning point; for a paused clock, as they
    /// were when it paused. `i64::MAX` when the calendar has no working
    /// time ahead.
    #[prost(int64, tag = "8")]
    pub deadline_ms: i64,
    #[prost(int64, tag = "9")]
    pub warn_ms: i64,
    #[prost(bool, tag = "10")]
    pub warned: bool,
    #[prost(bool, tag = "11")]
    pub breached: bool,
    /// Bumped at each start and resume, and part of every event id.
    #[prost(uint32, tag = "12")]
    pub generation: u32,
    /// When it started and stopped, in seconds (for showing).
    #[prost(int64, tag = "13")]
    pub started_s: i64,
    #[prost(int64, tag = "14")]
    pub stopped_s: i64,
    #[prost(uint32, tag = "15")]
    pub warn_permille: u32,
}

/// What firing a clock produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Warning,
    Breach,
}

/// What applying an event did to one clock, for the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Started { kind: ClockKind, deadline_ms: i64 },
    Resumed { kind: ClockKind, deadline_ms: i64 },
    Paused { kind: ClockKind },
    Stopped { kind: ClockKind, met: bool },
}

/// The letter that stands for a clock in ids: its timer's (`<case>:a`,
/// `:r`, `:s`), its events' and its trail records'.
pub fn clock_letter(kind: ClockKind) -> char {
    match kind {
        ClockKind::Acknowledgement => 'a',
        ClockKind::Response => 'r',
        ClockKind::Resolution | ClockKind::Unspecified => 's',
    }
}

/// The clock a letter stands for ([`clock_letter`] read back).
pub fn clock_of_letter(c: char) -> Option<ClockKind> {
    match c {
        'a' => Some(ClockKind::Acknowledgement),
        'r' => Some(ClockKind::Response),
        's' => Some(ClockKind::Resolution),
        _ => None,
    }
}

/// The timer id of a case's clock.
pub fn timer_id(case_id: &str, kind: ClockKind) -> String {
    format!("{case_id}:{}", clock_letter(kind))
}

/// The case and clock a timer id names.
pub fn parse_timer_id(id: &str) -> Option<(&str, ClockKind)> {
    let (case, l) = id.rsplit_once(':')?;
    let mut chars = l.chars();
    let k = clock_of_letter(chars.next()?)?;
    chars.next().is_none().then_some((case, k))
}

/// Which clocks an event stops.
fn stops(event: CaseEventKind, kind: ClockKind) -> bool {
    match event {
        CaseEventKind::Acknowledged => kind == ClockKind::Acknowledgement,
        CaseEventKind::Responded => kind != ClockKind::Resolution,
        CaseEventKind::Resolved => true,
        _ => false,
    }
}

impl Clock {
    pub fn kind(&self) -> ClockKind {
        ClockKind::try_from(self.kind).unwrap_or_default()
    }

    pub fn state(&self) -> ClockState {
        ClockState::try_from(self.state).unwrap_or_default()
    }

    /// A clock starting at `at`.
    pub fn start(spec: &ClockSpec, at: DateTime<Utc>, cal: &Calendar, generation: u32) -> Clock {
        let (target_s, business) = spec.target.resolve(cal);
        let mut c = Clock {
            kind: spec.kind as i32,
            policy: spec.policy.clone(),
            target_s,
            business,
            state: ClockState::Running as i32,
            generation,
            started_s: at.timestamp(),
            warn_permille: spec.warn_permille,
            ..Default::default()
        };
        c.run_from(at, cal);
        c
    }

    /// Sets the run to begin at `at` with what is left of the target.
    fn run_from(&mut self, at: DateTime<Utc>, cal: &Calendar) {
        self.run_from_ms = millis(at);
        let left = self.target_s.saturating_sub(self.spent_s);
        let warn_target = self.target_s * u64::from(self.warn_permille) / 1000;
        let warn_left = warn_target.saturating_sub(self.spent_s);
        self.deadline_ms = self.after(at, left, cal);
        self.warn_ms = self.after(at, warn_left, cal);
    }

    fn after(&self, at: DateTime<Utc>, secs: u64, cal: &Calendar) -> i64 {
        let d = std::time::Duration::from_secs(secs);
        if self.business {
            cal.add_business(at, d).map(millis).unwrap_or(i64::MAX)
        } else {
            millis(at).saturating_add(secs as i64 * 1000)
        }
    }

    /// Seconds counted from `from` to `to` on this clock's measure.
    fn counted(&self, from_ms: i64, to: DateTime<Utc>, cal: &Calendar) -> u64 {
        let from = from_millis(from_ms);
        if to <= from {
            return 0;
        }
        if self.business {
            cal.business_between(from, to).as_secs()
        } else {
            (to - from).num_seconds().max(0) as u64
        }
    }

    pub fn pause(&mut self, at: DateTime<Utc>, cal: &Calendar) -> bool {
        if self.state() != ClockState::Running {
            return false;
        }
        self.spent_s += self.counted(self.run_from_ms, at, cal);
        self.run_from_ms = 0;
        self.state = ClockState::Paused as i32;
        true
    }

    pub fn resume(&mut self, at: DateTime<Utc>, cal: &Calendar) -> bool {
        if self.state() != ClockState::Paused {
            return false;
        }
        self.state = ClockState::Running as i32;
        self.generation += 1;
        self.run_from(at, cal);
        true
    }

    /// Stops the clock at `at`; returns whether it met its deadline.
    pub fn stop(&mut self, at: DateTime<Utc>, cal: &Calendar) -> Option<bool> {
        let met = match self.state() {
            ClockState::Running => {
                self.spent_s += self.counted(self.run_from_ms, at, cal);
                millis(at) <= self.deadline_ms
            }
            ClockState::Paused => self.spent_s <= self.target_s,
            _ => return None,
        };
        self.state = ClockState::Stopped as i32;
        self.run_from_ms = 0;
        self.stopped_s = at.timestamp();
        Some(met)
    }

    /// When the clock next needs its timer (warning point, then deadline).
    pub fn next_due(&self) -> Option<i64> {
        if self.state() != ClockState::Running {
            return None;
        }
        let due = if !self.warned && self.warn_ms < self.deadline_ms {
            self.warn_ms
        } else if !self.breached {
            self.deadline_ms
        } else {
            return None;
        };
        (due != i64::MAX).then_some(due)
    }

    /// What the clock does at `now`: a breach once the deadline has
    /// passed (a warning not yet sent is then moot), else a warning once
    /// its point has.
    pub fn fire(&mut self, now: DateTime<Utc>) -> Option<Fired> {
        if self.state() != ClockState::Running {
            return None;
        }
        let now = millis(now);
        if !self.breached && now >= self.deadline_ms {
            self.breached = true;
            self.warned = true;
            return Some(Fired::Breach);
        }
        if !self.warned && now >= self.warn_ms {
            self.warned = true;
            return Some(Fired::Warning);
        }
        None
    }

    /// Time left before the deadline at `now` (business seconds for a
    /// business-hours clock), negative once past; for a paused clock, what
    /// is left of the target.
    pub fn seconds_left(&self, now: DateTime<Utc>, cal: &Calendar) -> i64 {
        match self.state() {
            ClockState::Running => {
                let deadline = from_millis(self.deadline_ms);
                if self.deadline_ms == i64::MAX {
                    i64::MAX
                } else if now <= deadline {
                    self.counted(millis(now), deadline, cal) as i64
                } else {
                    -(self.counted(self.deadline_ms, now, cal) as i64)
                }
            }
            _ => self.target_s as i64 - self.spent_s as i64,
        }
    }

    /// Where the deadline would be for a paused clock resumed at `now`.
    pub fn projected_deadline(&self, now: DateTime<Utc>, cal: &Calendar) -> i64 {
        match self.state() {
            ClockState::Paused => {
                let mut c = self.clone();
                c.run_from(now, cal);
                c.deadline_ms
            }
            _ => self.deadline_ms,
        }
    }
}

/// The case as an opened event describes it.
pub struct Opening<'a> {
    pub team: &'a str,
    pub channel: CaseChannel,
    pub priority: Priority,
    pub specs: &'a [ClockSpec],
}

impl CaseClocks {
    /// A new case's clocks, started at `at`.
    pub fn open(o: Opening<'_>, at: DateTime<Utc>, cal: &Calendar) -> (CaseClocks, Vec<Change>) {
        let clocks: Vec<Clock> = o
            .specs
            .iter()
            .map(|s| Clock::start(s, at, cal, 1))
            .collect();
        let changes = clocks
            .iter()
            .map(|c| Change::Started {
                kind: c.kind(),
                deadline_ms: c.deadline_ms,
            })
            .collect();
        (
            CaseClocks {
                team: o.team.to_string(),
                channel: o.channel as i32,
                priority: o.priority as i32,
                last_seq: 0,
                clocks,
            },
            changes,
        )
    }

    pub fn clock_mut(&mut self, kind: ClockKind) -> Option<&mut Clock> {
        self.clocks.iter_mut().find(|c| c.kind() == kind)
    }

    /// Applies a lifecycle event (other than opening) at `at`. `reopen`
    /// holds the clocks a reopened case starts afresh.
    pub fn apply(
        &mut self,
        event: CaseEventKind,
        at: DateTime<Utc>,
        cal: &Calendar,
        reopen: &[ClockSpec],
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        match event {
            CaseEventKind::Acknowledged | CaseEventKind::Responded | CaseEventKind::Resolved => {
                for c in &mut self.clocks {
                    if stops(event, c.kind())
                        && let Some(met) = c.stop(at, cal)
                    {
                        changes.push(Change::Stopped {
                            kind: c.kind(),
                            met,
                        });
                    }
                }
            }
            CaseEventKind::WaitingOnClient => {
                for c in &mut self.clocks {
                    if c.pause(at, cal) {
                        changes.push(Change::Paused { kind: c.kind() });
                    }
                }
            }
            CaseEventKind::ClientReplied => {
                for c in &mut self.clocks {
                    if c.resume(at, cal) {
                        changes.push(Change::Resumed {
                            kind: c.kind(),
                            deadline_ms: c.deadline_ms,
                        });
                    }
                }
            }
            CaseEventKind::Reopened => {
                for spec in reopen
                    .iter()
                    .filter(|s| s.kind != ClockKind::Acknowledgement)
                {
                    let generation = self
                        .clocks
                        .iter()
                        .find(|c| c.kind() == spec.kind)
                        .map(|c| c.generation + 1)
                        .unwrap_or(1);
                    let fresh = Clock::start(spec, at, cal, generation);
                    changes.push(Change::Started {
                        kind: spec.kind,
                        deadline_ms: fresh.deadline_ms,
                    });
                    match self.clock_mut(spec.kind) {
                        Some(c) => *c = fresh,
                        None => self.clocks.push(fresh),
                    }
                }
                self.clocks.sort_by_key(|c| c.kind);
            }
            _ => {}
        }
        changes
    }
}

impl Change {
    pub fn kind(&self) -> ClockKind {
        match self {
            Change::Started { kind, .. }
            | Change::Resumed { kind, .. }
            | Change::Paused { kind }
            | Change::Stopped { kind, .. } => *kind,
        }
    }

    /// Short words for the trail.
    pub fn describe(&self) -> String {
        let name = self.kind().name();
        match self {
            Change::Started { .. } => format!("{name} clock started"),
            Change::Resumed { .. } => format!("{name} clock resumed"),
            Change::Paused { .. } => format!("{name} clock paused (waiting on the client)"),
            Change::Stopped { met: true, .. } => format!("{name} clock stopped: met"),
            Change::Stopped { met: false, .. } => {
                format!("{name} clock stopped: after its deadline")
            }
        }
    }
}

#[cfg(test)]
mod tests;
