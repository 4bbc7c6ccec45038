//! Reports to clients (SOP 002 §4–§5): the weekly (or biweekly) status
//! update, an email of the client's open and closed cases, clocks met and
//! missed and next steps; the monthly progress report, the same figures as
//! a PDF attached to an email; and a case's incident report on demand, by
//! email and a phone call ([`incident`]). Intake owns the trail and its
//! index by client, so it computes them ([`figures`]) and sends them
//! through its own front door like any notification.
//!
//! Each `[[reports.client]]` is a schedule kept on intake's durable
//! timers, in the queue `reports`: timer `r:<client>:<cadence>` beside the
//! state `<intake keyspace>report:<client>:<cadence>` (JSON: the nominal
//! date of the next report and the schedule it was worked out from),
//! changed together in one compare-and-swap. When the timer fires the
//! report is sent, then the state moves to the next period and the timer
//! with it:
//!
//! * a report due while intake was stopped is sent when it starts again:
//!   the timer is still due in Redis (only the latest period, if several
//!   went by, with the trail saying how many were missed);
//! * sent once: the notification's idempotency key is the client, the
//!   cadence and the period's date, so a timer that fires again after a
//!   crash between the send and the state change is answered "duplicate"
//!   by intake's own deduplication, within its day (`intake.idempotency_ttl`)
//!   and well past the timer's lease;
//! * a changed schedule is worked out afresh from the moment intake
//!   starts; a removed one is forgotten when its timer next fires.
//!
//! Each send is in the client's trail (`report_sent`, with the period),
//! as is each next date (`report_scheduled`) and each report that could
//! not go (`report_failed`, and why).

pub(crate) mod desk;
pub(crate) mod figures;
mod incident;
pub(crate) mod pdf;
pub(crate) mod render;
mod send;

use std::{sync::Arc, time::Duration};

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use herald_calendar::{
    Calendar, Calendars,
    cadence::{Cadence, Occurrence, Schedule},
};
use herald_config::{ClientReport, parse_date, parse_hh_mm};
use herald_directory::contacts::Contact;
use herald_durable::timers::{Due, TimerChange, Timers};
use herald_proto::v1::{AuditStep, ReportKind};
use herald_runtime::{audit::Entry, clock::Clock};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::Intake;

/// The timer queue the schedules are kept in.
pub const QUEUE: &str = "reports";

pub(crate) use crate::trail::at_ms;

/// One agreed schedule, as checked at start.
#[derive(Debug, Clone)]
pub(crate) struct Agreed {
    pub client: String,
    pub kind: ReportKind,
    pub cadence: Cadence,
    pub at: NaiveTime,
    pub team: String,
    /// The zone the time is agreed in, when not the contact's.
    pub tz: Option<Tz>,
}

impl Agreed {
    fn timer(&self) -> String {
        format!("r:{}:{}", self.client, self.kind.name())
    }

    /// The schedule in `tz`.
    pub fn schedule(&self, tz: Tz) -> Schedule {
        Schedule {
            cadence: self.cadence,
            at: self.at,
            tz,
        }
    }

    /// The zone: the agreed one, else the contact's, else the calendar's.
    pub fn zone(&self, contact: Option<&Contact>, calendar: &Calendar) -> Tz {
        self.tz
            .or_else(|| contact.and_then(|c| c.time_zone.parse().ok()))
            .unwrap_or(calendar.tz)
    }
}

/// The schedules from the configuration; every problem, named by its key.
pub(crate) fn agreed(cfg: &[ClientReport]) -> Result<Vec<Agreed>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, r) in cfg.iter().enumerate() {
        let at = format!("reports.client[{i}]");
        let first = r
            .first
            .as_deref()
            .and_then(parse_date)
            .and_then(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d));
        if r.first.is_some() && first.is_none() {
            problems.push(format!("{at}.first: not a date"));
        }
        let cadence = Cadence::from_words(
            &r.cadence,
            &r.weekday.to_ascii_lowercase(),
            r.day_of_month,
            first,
        )
        .map_err(|e| problems.push(format!("{at}.{e}")))
        .ok();
        let time = parse_hh_mm(&r.at).and_then(|(h, m)| NaiveTime::from_hms_opt(h, m, 0));
        if time.is_none() {
            problems.push(format!("{at}.at: {:?} is not HH:MM", r.at));
        }
        let tz = match &r.time_zone {
            None => None,
            Some(z) => match z.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    problems.push(format!("{at}.time_zone: {z:?} is not an IANA time zone"));
                    None
                }
            },
        };
        let kind = ReportKind::parse(&r.cadence).unwrap_or_default();
        if let (Some(cadence), Some(at)) = (cadence, time) {
            out.push(Agreed {
                client: r.contact.clone(),
                kind,
                cadence,
                at,
                team: r.team.clone(),
                tz,
            });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The templates the agreed schedules send must exist and be approved,
/// or every report would be refused when it falls due.
pub(crate) fn check_templates(
    agreed: &[Agreed],
    templates: &herald_content::templates::TemplateStore,
) -> anyhow::Result<()> {
    for a in agreed {
        let id = if a.kind == ReportKind::Monthly {
            send::PROGRESS_REPORT
        } else {
            send::STATUS_UPDATE
        };
        templates.resolve(id, 0).map_err(|e| {
            anyhow::anyhow!(
                "the {} report of {} is sent with template {id}: {e}",
                a.kind.name(),
                a.client
            )
        })?;
    }
    Ok(())
}

/// What is kept beside each schedule's timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The nominal date of the next report.
    nominal: NaiveDate,
    /// The schedule it was worked out from, in words: a change of the
    /// configuration shows as a difference here.
    schedule: String,
}

/// The schedules and what they need.
#[derive(Clone)]
pub(crate) struct Reports {
    timers: Timers,
    redis: ConnectionManager,
    prefix: String,
    agreed: Arc<Vec<Agreed>>,
    calendars: Arc<Calendars>,
    clock: Arc<dyn Clock>,
}

impl Reports {
    pub fn new(
        redis: ConnectionManager,
        deployment: &str,
        agreed: Vec<Agreed>,
        calendars: Calendars,
        clock: Arc<dyn Clock>,
    ) -> Reports {
        let prefix = herald_proto::keyspace::INTAKE.prefix(deployment);
        Reports {
            timers: Timers::new(redis.clone(), &prefix, QUEUE),
            redis,
            prefix,
            agreed: Arc::new(agreed),
            calendars: Arc::new(calendars),
            clock,
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub fn calendar(&self, team: &str) -> &Calendar {
        self.calendars.for_team(team)
    }

    /// The schedules agreed with `client`.
    pub fn of(&self, client: &str) -> Vec<Agreed> {
        self.agreed
            .iter()
            .filter(|a| a.client == client)
            .cloned()
            .collect()
    }

    fn by_timer(&self, id: &str) -> Option<&Agreed> {
        self.agreed.iter().find(|a| a.timer() == id)
    }

    fn state_key(&self, timer: &str) -> String {
        format!(
            "{}report:{}",
            self.prefix,
            timer.strip_prefix("r:").unwrap_or(timer)
        )
    }

    /// The stored state of `timer`, raw (for the swap) and read.
    async fn load(&self, timer: &str) -> anyhow::Result<Option<(Vec<u8>, State)>> {
        let mut r = self.redis.clone();
        let raw: Option<Vec<u8>> = r.get(self.state_key(timer)).await?;
        Ok(match raw {
            None => None,
            Some(raw) => match serde_json::from_slice(&raw) {
                Ok(s) => Some((raw, s)),
                // Unreadable: worked out afresh, as if new.
                Err(_) => None,
            },
        })
    }

    /// Sets the next report of `timer` if the state is still `seen`.
    async fn swap(
        &self,
        timer: &str,
        seen: Option<&[u8]>,
        next: Option<(&State, &Occurrence)>,
    ) -> anyhow::Result<bool> {
        let key = self.state_key(timer);
        Ok(match next {
            Some((state, o)) => {
                let value = serde_json::to_vec(state)?;
                let at = TimerChange::At(timer.to_string(), herald_runtime::clock::millis(o.due));
                self.timers
                    .swap_state(&key, seen, &value, Duration::ZERO, &[at])
                    .await?
            }
            None => {
                self.timers.cancel(timer).await?;
                let mut r = self.redis.clone();
                let _: () = r.del(&key).await?;
                true
            }
        })
    }

    /// When each schedule of `client` next sends, and the period it
    /// covers.
    pub async fn next_of(
        &self,
        agreed: &Agreed,
        contact: Option<&Contact>,
    ) -> anyhow::Result<Option<Occurrence>> {
        let cal = self.calendar(&agreed.team);
        let sched = agreed.schedule(agreed.zone(contact, cal));
        Ok(self
            .load(&agreed.timer())
            .await?
            .map(|(_, s)| sched.occurrence(s.nominal, cal)))
    }
}

impl Intake {
    /// Makes sure every agreed schedule has its state and timer: a new or
    /// changed one is worked out from now; one already kept keeps its next
    /// date (a report that fell due while intake was stopped fires at once).
    pub(crate) async fn arrange_reports(&self) -> anyhow::Result<()> {
        let now = self.reports.clock.now();
        for a in self.reports.agreed.iter() {
            let contact = self.directory.get(&a.client).await?;
            let cal = self.reports.calendar(&a.team);
            let sched = a.schedule(a.zone(contact.as_ref(), cal));
            let timer = a.timer();
            let stored = self.reports.load(&timer).await?;
            let (seen, state, next, fresh) = match &stored {
                Some((raw, s)) if s.schedule == sched.words() => (
                    Some(raw.as_slice()),
                    s.clone(),
                    sched.occurrence(s.nominal, cal),
                    false,
                ),
                _ => {
                    let next = sched.next_after(now, cal);
                    let s = State {
                        nominal: next.nominal,
                        schedule: sched.words(),
                    };
                    (
                        stored.as_ref().map(|(raw, _)| raw.as_slice()),
                        s,
                        next,
                        true,
                    )
                }
            };
            // A kept schedule's timer is set again at the same time, in
            // case it was lost; only a new date goes in the trail.
            let set = self
                .reports
                .swap(&timer, seen, Some((&state, &next)))
                .await?;
            if set && fresh {
                self.document_schedule(a, &next).await?;
            }
        }
        info!(
            schedules = self.reports.agreed.len(),
            "report schedules arranged"
        );
        Ok(())
    }

    /// Handles a batch of due report timers; returns those finished.
    pub(crate) async fn fire_reports(&self, batch: Vec<Due>) -> Vec<String> {
        let mut done = Vec::with_capacity(batch.len());
        for due in batch {
            match self.step_report(&due.id).await {
                Ok(()) => done.push(due.id),
                Err(e) => warn!(timer = %due.id, error = %e, "report not sent; it is tried again"),
            }
        }
        done
    }

    async fn step_report(&self, timer: &str) -> anyhow::Result<()> {
        let Some(a) = self.reports.by_timer(timer).cloned() else {
            // No longer agreed.
            self.reports.swap(timer, None, None).await?;
            return Ok(());
        };
        let now = self.reports.clock.now();
        let contact = self.directory.get(&a.client).await?;
        let cal = self.reports.calendar(&a.team).clone();
        let tz = a.zone(contact.as_ref(), &cal);
        let sched = a.schedule(tz);
        let Some((raw, state)) = self.reports.load(timer).await? else {
            return self.arrange_reports().await;
        };
        let mut current = sched.occurrence(state.nominal, &cal);
        if state.schedule != sched.words() || current.due > now {
            // Changed meanwhile, or fired early: set the timer right.
            return self.arrange_reports().await;
        }
        // After a long stop, only the latest period due is sent.
        let mut missed = 0;
        loop {
            let n = sched.following(&current, &cal);
            if n.due > now {
                break;
            }
            current = n;
            missed += 1;
        }
        let period = current.nominal.to_string();
        match &contact {
            Some(c) => {
                // A refusal is documented as it is sent; the schedule
                // moves on either way.
                let _refused = self
                    .send_report(
                        c,
                        a.kind,
                        current.from,
                        current.until,
                        &period,
                        tz,
                        missed,
                        "schedule",
                    )
                    .await?;
            }
            None => {
                self.report_failed(
                    &a.client,
                    a.kind,
                    &period,
                    "the client is not in the directory",
                )
                .await?;
            }
        }
        let next = sched.following(&current, &cal);
        let state = State {
            nominal: next.nominal,
            schedule: sched.words(),
        };
        if self
            .reports
            .swap(timer, Some(&raw), Some((&state, &next)))
            .await?
        {
            self.document_schedule(&a, &next).await?;
        }
        Ok(())
    }

    /// `report_scheduled` in the client's trail.
    async fn document_schedule(&self, a: &Agreed, next: &Occurrence) -> anyhow::Result<()> {
        let due = next.due.to_rfc3339();
        let entry = Entry {
            contact_id: a.client.clone(),
            record_id: Some(format!(
                "rep-{}-{}-{}-scheduled",
                a.client,
                a.kind.name(),
                next.nominal
            )),
            ..Entry::new(
                AuditStep::ReportScheduled,
                format!("next {} report due {due}", a.kind.name()),
            )
        }
        .attr("report", a.kind.name())
        .attr("period", next.nominal)
        .attr("due", due);
        self.auditor.record(entry).await?.await?;
        Ok(())
    }

    /// `report_failed` in the client's trail.
    pub(crate) async fn report_failed(
        &self,
        client: &str,
        kind: ReportKind,
        period: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        let entry = Entry {
            contact_id: client.to_string(),
            record_id: Some(format!("rep-{client}-{}-{period}-failed", kind.name())),
            ..Entry::new(
                AuditStep::ReportFailed,
                format!("{} report of {period} not sent: {why}", kind.name()),
            )
        }
        .attr("report", kind.name())
        .attr("period", period);
        self.auditor.record(entry).await?.await?;
        Ok(())
    }
}
