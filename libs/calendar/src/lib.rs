//! Business-hours calendars: when a team works, so that "24 business hours"
//! is measured on working time and not on the wall clock (SOP 000 §2, SOP
//! 001 §4.2).
//!
//! A calendar has an IANA time zone, working spans per weekday (several a
//! day, and spans that cross midnight such as a night shift `22:00-06:00`)
//! and public holidays. Spans are local wall-clock times, so they follow
//! daylight-saving changes: on the spring-forward day a `00:00-03:00` span
//! holds two real hours, on the fall-back day four. Work is whatever instant
//! the local clock reads inside a span.
//!
//! * A span belongs to the day it starts on: a holiday on Monday removes
//!   Monday's night shift, including its hours after midnight; a holiday on
//!   Tuesday leaves them.
//! * `00:00-24:00` on consecutive days is one unbroken stretch: there is no
//!   minute missing at midnight.
//! * Spans may not overlap (a night shift running into the next morning's
//!   span is refused when the calendar is loaded).
//!
//! The shipped calendars are in `config/calendars.toml` (compiled in), which
//! also says which team uses which; `[sla] calendars_file` replaces them.

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The calendars Herald ships with.
pub const DEFAULT_CALENDARS: &str = include_str!("../../../config/calendars.toml");

/// How far ahead arithmetic looks for working time before giving up (a
/// calendar whose holidays cover every working day).
const HORIZON_DAYS: i64 = 3 * 366;

const MINUTES_PER_DAY: u32 = 24 * 60;
const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A working span: minutes after the local midnight of the day it starts
/// on. `end` is after `start` and may pass midnight (up to 48 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    start: u32,
    end: u32,
}

/// A public holiday: a date, or the same day every year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Holiday {
    Date(NaiveDate),
    Yearly { month: u32, day: u32 },
}

#[derive(Debug, Clone)]
pub struct Calendar {
    pub name: String,
    pub tz: Tz,
    /// Spans per weekday, Monday first, sorted.
    week: [Vec<Span>; 7],
    holidays: BTreeSet<Holiday>,
    /// What "one business day" means here, in working time.
    pub business_day: Duration,
}

impl Calendar {
    /// A calendar open every minute of every day in `tz`.
    pub fn always_open(name: &str, tz: Tz) -> Calendar {
        let all = vec![Span {
            start: 0,
            end: MINUTES_PER_DAY,
        }];
        Calendar {
            name: name.to_string(),
            tz,
            week: std::array::from_fn(|_| all.clone()),
            holidays: BTreeSet::new(),
            business_day: Duration::from_secs(24 * 3600),
        }
    }

    fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&Holiday::Date(date))
            || self.holidays.contains(&Holiday::Yearly {
                month: date.month(),
                day: date.day(),
            })
    }

    /// The working intervals of spans starting on `date`, as UTC instants.
    fn intervals_of(&self, date: NaiveDate, out: &mut Vec<(DateTime<Utc>, DateTime<Utc>)>) {
        if self.is_holiday(date) {
            return;
        }
        let day = date.weekday().num_days_from_monday() as usize;
        for span in &self.week[day] {
            let start = self.instant(date, span.start, Edge::Start);
            let end = self.instant(date, span.end, Edge::End);
            if end > start {
                out.push((start, end));
            }
        }
    }

    /// The UTC instant of a local wall time: `minutes` after the midnight
    /// starting `date`. A time that occurs twice (clocks going back) is
    /// taken at its first occurrence for a span's start and its last for a
    /// span's end; a time that does not exist (clocks going forward) is the
    /// first instant after the gap.
    fn instant(&self, date: NaiveDate, minutes: u32, edge: Edge) -> DateTime<Utc> {
        let local = date.and_time(NaiveTime::MIN) + TimeDelta::minutes(i64::from(minutes));
        match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, last) => match edge {
                Edge::Start => first.with_timezone(&Utc),
                Edge::End => last.with_timezone(&Utc),
            },
            chrono::LocalResult::None => self.first_instant_at_or_after(local),
        }
    }

    /// The first instant whose local reading is at or after `local`, for a
    /// local time inside a spring-forward gap. Local readings only move
    /// forward within a day of such a gap, so a binary search finds it.
    fn first_instant_at_or_after(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let mut lo = local.and_utc() - TimeDelta::days(1);
        let mut hi = local.and_utc() + TimeDelta::days(1);
        while hi - lo > TimeDelta::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            if mid.with_timezone(&self.tz).naive_local() >= local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// Working intervals from the day before `from`'s local date (a night
    /// shift begun yesterday may still run) onwards, day by day, in order.
    fn intervals_from(
        &self,
        from: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let first = from.with_timezone(&self.tz).date_naive() - TimeDelta::days(1);
        (0..HORIZON_DAYS).flat_map(move |i| {
            let mut v = Vec::with_capacity(2);
            self.intervals_of(first + TimeDelta::days(i), &mut v);
            v.into_iter()
        })
    }

    /// Whether `date` is a business day: not a holiday, and a day with
    /// working spans.
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        !self.is_holiday(date)
            && !self.week[date.weekday().num_days_from_monday() as usize].is_empty()
    }

    /// `date` if it is a business day, else the first one after it (`date`
    /// itself when the calendar has none within three years).
    pub fn business_day_from(&self, date: NaiveDate) -> NaiveDate {
        (0..HORIZON_DAYS)
            .map(|i| date + TimeDelta::days(i))
            .find(|d| self.is_business_day(*d))
            .unwrap_or(date)
    }

    /// The UTC instant the local clock of `tz` reads `time` on `date` (the
    /// first of two readings when clocks go back, the first instant after
    /// the gap when they go forward).
    pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let cal = Calendar::always_open("", tz);
        let minutes = time.signed_duration_since(NaiveTime::MIN).num_minutes() as u32;
        cal.instant(date, minutes, Edge::Start)
    }

    /// Whether `t` falls in working time.
    pub fn is_working(&self, t: DateTime<Utc>) -> bool {
        self.intervals_from(t)
            .take_while(|(s, _)| *s <= t)
            .any(|(s, e)| s <= t && t < e)
    }

    /// The instant `duration` of working time after `start`. Time before
    /// the next working span does not count: eight business hours from
    /// Friday evening end on Monday evening. None if the calendar has no
    /// working time within three years.
    pub fn add_business(&self, start: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
        let mut left = TimeDelta::from_std(duration).ok()?;
        if left.is_zero() {
            return Some(start);
        }
        for (s, e) in self.intervals_from(start) {
            if e <= start {
                continue;
            }
            let from = s.max(start);
            let available = e - from;
            if left <= available {
                return Some(from + left);
            }
            left -= available;
        }
        None
    }

    /// Working time between `a` and `b` (zero when `b` is not after `a`).
    pub fn business_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
        if b <= a {
            return Duration::ZERO;
        }
        let mut total = TimeDelta::zero();
        for (s, e) in self.intervals_from(a) {
            if s >= b {
                break;
            }
            let (from, to) = (s.max(a), e.min(b));
            if to > from {
                total += to - from;
            }
        }
        total.to_std().unwrap_or_default()
    }
}

/// A span of time as people read it: "2d 3h", "5h 12m", "3m 20s", with
/// "of business time" when it is counted on a calendar (then in hours: 24
/// business hours are three working days, not one). Negative counts as
/// zero.
pub fn duration_words(secs: i64, business: bool) -> String {
    let s = secs.max(0);
    let text = if s >= 86_400 && !business {
        format!("{}d {}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    if business {
        format!("{text} of business time")
    } else {
        text
    }
}

#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

pub mod cadence;
mod file;
#[cfg(test)]
mod tests;

pub use file::Calendars;
