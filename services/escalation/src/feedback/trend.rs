//! The feedback trend (SOP 000 §5, SOP 002 §10: feedback tracked and used
//! to improve): on the schedule of `[feedback.trend]` (shipped: monthly),
//! each department's heads (its owners) get the period's feedback for
//! their department counted by category, by rating and by where it stands.
//!
//! The schedule is a durable timer, `trend` in the escalation service's
//! queue `reports`, beside `<escalation keyspace>feedback:trend` (JSON: the
//! nominal date of the next report and the schedule it was worked out
//! from), changed together in one compare-and-swap. A trend due while the
//! service was stopped goes when it starts again; each message's
//! idempotency key names the department, the period and the head, so a
//! timer that fires again after a crash sends nothing twice.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use herald_calendar::{
    Calendar, Calendars,
    cadence::{Occurrence, Schedule},
};
use herald_durable::timers::{Due, TimerChange, Timers};
use herald_proto::v1::{
    AuditStep, CommunicationType, FeedbackStatus, NotificationRequest, Priority, Recipient,
};
use herald_runtime::{audit::Entry, clock::millis};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::book::Kept;
use crate::{
    Escalator,
    policy::{Target, Trend},
    state::CaseState,
};
use herald_directory::contacts::{Contact, MemberOf};

/// The template the heads get.
pub const FEEDBACK_TREND: &str = "feedback_trend";
/// The timer queue and the timer.
pub const QUEUE: &str = "reports";
const TIMER: &str = "trend";

/// A department's counts for a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u32,
    pub by_category: BTreeMap<String, u32>,
    /// Ratings 1 to 5, at index rating - 1.
    pub by_rating: [u32; 5],
    pub by_status: BTreeMap<String, u32>,
    pub rating_sum: u32,
}

impl Counts {
    /// The average rating to one decimal, or "-" with none.
    pub fn average(&self) -> String {
        let rated: u32 = self.by_rating.iter().sum();
        if rated == 0 {
            "-".into()
        } else {
            format!("{:.1}", f64::from(self.rating_sum) / f64::from(rated))
        }
    }
}

/// The counts of `department`'s feedback among `entries`.
pub fn count(entries: &[Kept], department: &str) -> Counts {
    let mut c = Counts::default();
    for k in entries.iter().filter(|k| k.department == department) {
        c.total += 1;
        let category = if k.category.is_empty() {
            "none".to_string()
        } else {
            k.category.clone()
        };
        *c.by_category.entry(category).or_default() += 1;
        if (1..=5).contains(&k.rating) {
            c.by_rating[k.rating as usize - 1] += 1;
            c.rating_sum += k.rating;
        }
        *c.by_status
            .entry(FeedbackStatus::name_of(k.status).replace('_', " "))
            .or_default() += 1;
    }
    c
}

fn lines(items: impl Iterator<Item = (String, u32)>) -> String {
    let v: Vec<String> = items.map(|(k, n)| format!("- {k}: {n}")).collect();
    if v.is_empty() {
        "- none".into()
    } else {
        v.join("\n")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    nominal: NaiveDate,
    schedule: String,
}

/// The trend's schedule and timer.
#[derive(Clone)]
pub(crate) struct TrendTimer {
    pub timers: Timers,
    redis: ConnectionManager,
    key: String,
    calendars: std::sync::Arc<Calendars>,
}

impl TrendTimer {
    pub fn new(redis: ConnectionManager, deployment: &str, calendars: Calendars) -> TrendTimer {
        let prefix = herald_proto::keyspace::ESCALATION.prefix(deployment);
        TrendTimer {
            timers: Timers::new(redis.clone(), &prefix, QUEUE),
            key: format!("{prefix}feedback:trend"),
            redis,
            calendars: std::sync::Arc::new(calendars),
        }
    }

    fn calendar(&self, t: &Trend) -> &Calendar {
        self.calendars.for_team(&t.team)
    }

    fn schedule(&self, t: &Trend) -> Schedule {
        Schedule {
            cadence: t.cadence,
            at: t.at,
            tz: self.calendar(t).tz,
        }
    }

    async fn load(&self) -> anyhow::Result<Option<(Vec<u8>, State)>> {
        let mut r = self.redis.clone();
        let raw: Option<Vec<u8>> = r.get(&self.key).await?;
        Ok(raw.and_then(|raw| serde_json::from_slice(&raw).ok().map(|s| (raw, s))))
    }

    async fn swap(&self, seen: Option<&[u8]>, s: &State, o: &Occurrence) -> anyhow::Result<bool> {
        let at = TimerChange::At(TIMER.to_string(), millis(o.due));
        Ok(self
            .timers
            .swap_state(
                &self.key,
                seen,
                &serde_json::to_vec(s)?,
                std::time::Duration::ZERO,
                &[at],
            )
            .await?)
    }
}

impl Escalator {
    /// Makes sure the trend has its state and timer (or none, when off).
    pub(crate) async fn arrange_trend(&self) -> anyhow::Result<()> {
        let tt = &self.trend;
        let Some(t) = &self.policies.trend else {
            tt.timers.cancel(TIMER).await?;
            return Ok(());
        };
        let sched = tt.schedule(t);
        let cal = tt.calendar(t);
        let stored = tt.load().await?;
        let (seen, state, next) = match &stored {
            Some((raw, s)) if s.schedule == sched.words() => (
                Some(raw.as_slice()),
                s.clone(),
                sched.occurrence(s.nominal, cal),
            ),
            _ => {
                let next = sched.next_after(self.clock.now(), cal);
                let s = State {
                    nominal: next.nominal,
                    schedule: sched.words(),
                };
                (stored.as_ref().map(|(r, _)| r.as_slice()), s, next)
            }
        };
        tt.swap(seen, &state, &next).await?;
        Ok(())
    }

    /// The trend's timer came due; returns it once done.
    pub(crate) async fn fire_trend(&self, batch: Vec<Due>) -> Vec<String> {
        let mut done = Vec::new();
        for due in batch {
            match self.step_trend().await {
                Ok(()) => done.push(due.id),
                Err(e) => warn!(error = %e, "feedback trend not sent; it is tried again"),
            }
        }
        done
    }

    async fn step_trend(&self) -> anyhow::Result<()> {
        let tt = &self.trend;
        let Some(t) = &self.policies.trend else {
            return self.arrange_trend().await;
        };
        let sched = tt.schedule(t);
        let cal = tt.calendar(t).clone();
        let now = self.clock.now();
        let Some((raw, state)) = tt.load().await? else {
            return self.arrange_trend().await;
        };
        let mut current = sched.occurrence(state.nominal, &cal);
        if state.schedule != sched.words() || current.due > now {
            return self.arrange_trend().await;
        }
        loop {
            let n = sched.following(&current, &cal);
            if n.due > now {
                break;
            }
            current = n;
        }
        self.send_trend(&current, &sched).await?;
        let next = sched.following(&current, &cal);
        let s = State {
            nominal: next.nominal,
            schedule: sched.words(),
        };
        tt.swap(Some(&raw), &s, &next).await?;
        Ok(())
    }

    /// A department's heads: its owners, a role naming every holder of it
    /// whatever their team (the trend is about no case, so no team).
    async fn heads(&self, owners: &[Target]) -> anyhow::Result<Vec<Contact>> {
        let mut out: Vec<Contact> = Vec::new();
        for t in owners {
            let found = match t {
                Target::Role(role) => self.directory.in_group(MemberOf::Role, role).await?,
                other => {
                    self.resolve(std::slice::from_ref(other), &CaseState::default())
                        .await?
                }
            };
            for c in found {
                if !out.iter().any(|o| o.id == c.id) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// Sends each department's counts for `o`'s period to its heads.
    async fn send_trend(&self, o: &Occurrence, sched: &Schedule) -> anyhow::Result<()> {
        let entries = self.book.received(millis(o.from), millis(o.until)).await?;
        let fmt = |t: chrono::DateTime<chrono::Utc>| {
            t.with_timezone(&sched.tz).format("%Y-%m-%d").to_string()
        };
        let period = format!(
            "{} to {}",
            fmt(o.from),
            fmt(o.until - chrono::TimeDelta::milliseconds(1))
        );
        for d in &self.policies.departments {
            let c = count(&entries, &d.name);
            let heads = self.heads(&d.owners).await?;
            let mut told = Vec::new();
            for head in &heads {
                let req = NotificationRequest {
                    idempotency_key: format!("trend:{}:{}:{}", d.name, o.nominal, head.id),
                    communication_type: CommunicationType::StatusReport as i32,
                    priority: Priority::Normal as i32,
                    recipients: vec![Recipient::contact(&head.id)],
                    template_id: FEEDBACK_TREND.into(),
                    params: BTreeMap::from([
                        ("department".to_string(), d.name.clone()),
                        ("period".to_string(), period.clone()),
                        ("total".to_string(), c.total.to_string()),
                        ("average".to_string(), c.average()),
                        (
                            "by_category".to_string(),
                            lines(c.by_category.clone().into_iter()),
                        ),
                        (
                            "by_rating".to_string(),
                            lines(
                                (1..=5)
                                    .rev()
                                    .map(|r| (format!("{r}/5"), c.by_rating[r - 1])),
                            ),
                        ),
                        (
                            "by_status".to_string(),
                            lines(c.by_status.clone().into_iter()),
                        ),
                    ]),
                    requester: "escalation".into(),
                    ..Default::default()
                };
                if self.submit(&req).await?.is_ok() {
                    told.push(head.id.clone());
                }
            }
            self.audit(
                Entry {
                    record_id: Some(format!("trend-{}-{}", d.name.replace(' ', "_"), o.nominal)),
                    ..Entry::new(
                        AuditStep::FeedbackTrendSent,
                        format!(
                            "feedback trend of {period} for {}: {} received; sent to {}",
                            d.name,
                            c.total,
                            if told.is_empty() {
                                "nobody (no head could be told)".to_string()
                            } else {
                                told.join(", ")
                            }
                        ),
                    )
                }
                .attr("department", &d.name)
                .attr("period", o.nominal)
                .attr("report", "feedback_trend"),
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(
        case: &str,
        department: &str,
        category: &str,
        rating: u32,
        status: FeedbackStatus,
    ) -> Kept {
        Kept {
            case_id: case.into(),
            reference: case.into(),
            client: "c".into(),
            category: category.into(),
            department: department.into(),
            rating,
            status: status as i32,
            received_ms: 1,
            updated_ms: 1,
        }
    }

    #[test]
    fn the_trend_counts_a_departments_feedback_by_category_rating_and_status() {
        let entries = [
            kept("A", "Finance", "billing", 2, FeedbackStatus::Received),
            kept("B", "Finance", "invoice", 4, FeedbackStatus::Resolved),
            kept("C", "Finance", "billing", 1, FeedbackStatus::InProgress),
            kept("D", "Client Services", "", 5, FeedbackStatus::Received),
        ];
        let c = count(&entries, "Finance");
        assert_eq!(c.total, 3);
        assert_eq!(
            c.by_category,
            BTreeMap::from([("billing".to_string(), 2), ("invoice".to_string(), 1)])
        );
        assert_eq!(c.by_rating, [1, 1, 0, 1, 0]);
        assert_eq!(c.average(), "2.3");
        assert_eq!(c.by_status["in progress"], 1);
        let other = count(&entries, "Client Services");
        assert_eq!((other.total, other.by_category["none"]), (1, 1));
        assert_eq!(count(&entries, "Legal"), Counts::default());
        assert_eq!(Counts::default().average(), "-");
    }
}
