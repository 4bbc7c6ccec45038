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

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

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

/// The calendars of a deployment and which team uses which.
#[derive(Debug, Clone)]
pub struct Calendars {
    calendars: BTreeMap<String, Calendar>,
    teams: BTreeMap<String, String>,
    default: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Calendar used by a team not listed in `teams`.
    default: String,
    #[serde(default)]
    teams: BTreeMap<String, String>,
    calendar: BTreeMap<String, FileCalendar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCalendar {
    time_zone: String,
    #[serde(default, with = "humantime_serde")]
    business_day: Option<Duration>,
    every_day: Option<Vec<String>>,
    weekdays: Option<Vec<String>>,
    monday: Option<Vec<String>>,
    tuesday: Option<Vec<String>>,
    wednesday: Option<Vec<String>>,
    thursday: Option<Vec<String>>,
    friday: Option<Vec<String>>,
    saturday: Option<Vec<String>>,
    sunday: Option<Vec<String>>,
    #[serde(default)]
    holidays: Vec<String>,
}

impl Calendars {
    /// The calendars shipped in `config/calendars.toml`.
    pub fn built_in() -> Result<Calendars, Vec<String>> {
        Calendars::parse(DEFAULT_CALENDARS, "built-in calendars")
    }

    /// Calendars from a file's text, checked; every problem is reported,
    /// each under `origin`.
    pub fn parse(text: &str, origin: &str) -> Result<Calendars, Vec<String>> {
        let file: File = toml::from_str(text).map_err(|e| vec![format!("{origin}: {e}")])?;
        let mut problems = Vec::new();
        let names: BTreeSet<String> = file.calendar.keys().cloned().collect();
        if !names.contains(&file.default) {
            problems.push(format!(
                "default = {:?}: no [calendar.{}] table",
                file.default, file.default
            ));
        }
        for (team, cal) in &file.teams {
            if !names.contains(cal) {
                problems.push(format!("teams.{team} = {cal:?}: no [calendar.{cal}] table"));
            }
        }
        let mut calendars = BTreeMap::new();
        for (name, c) in file.calendar {
            match parse_calendar(&name, c) {
                Ok(cal) => {
                    calendars.insert(name, cal);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(Calendars {
                calendars,
                teams: file.teams,
                default: file.default,
            })
        } else {
            Err(problems
                .into_iter()
                .map(|p| format!("{origin}: {p}"))
                .collect())
        }
    }

    /// The calendar a team works on (the default for an unknown team).
    pub fn for_team(&self, team: &str) -> &Calendar {
        self.teams
            .get(team)
            .and_then(|c| self.calendars.get(c))
            .unwrap_or_else(|| &self.calendars[&self.default])
    }

    pub fn get(&self, name: &str) -> Option<&Calendar> {
        self.calendars.get(name)
    }
}

fn parse_calendar(name: &str, c: FileCalendar) -> Result<Calendar, Vec<String>> {
    let at = |field: &str| format!("[calendar.{name}] {field}");
    let mut problems = Vec::new();
    let tz = match c.time_zone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            problems.push(format!(
                "{}: {:?} is not an IANA time zone such as Europe/London",
                at("time_zone"),
                c.time_zone
            ));
            None
        }
    };
    let days = [
        c.monday,
        c.tuesday,
        c.wednesday,
        c.thursday,
        c.friday,
        c.saturday,
        c.sunday,
    ];
    let mut week: [Vec<Span>; 7] = Default::default();
    for (i, given) in days.into_iter().enumerate() {
        let (field, spans) = match given {
            Some(s) => (DAY_NAMES[i], s),
            None if i < 5 && c.weekdays.is_some() => {
                ("weekdays", c.weekdays.clone().unwrap_or_default())
            }
            None => ("every_day", c.every_day.clone().unwrap_or_default()),
        };
        for text in spans {
            match parse_span(&text) {
                Ok(span) => week[i].push(span),
                Err(why) => problems.push(format!("{}: {text:?} {why}", at(field))),
            }
        }
        week[i].sort();
    }
    if week.iter().all(Vec::is_empty) && problems.is_empty() {
        problems.push(format!(
            "{}: no working hours on any day (give weekdays, every_day or a day's spans)",
            at("weekdays")
        ));
    }
    // Overlaps, on the week seen as a ring of minutes: a Sunday night shift
    // runs into Monday.
    let mut used = vec![false; 7 * MINUTES_PER_DAY as usize];
    'days: for (i, spans) in week.iter().enumerate() {
        for span in spans {
            for m in span.start..span.end {
                let slot = (i * MINUTES_PER_DAY as usize + m as usize) % used.len();
                if used[slot] {
                    problems.push(format!(
                        "{}: spans overlap (at {:02}:{:02} on {})",
                        at(DAY_NAMES[i]),
                        (m % MINUTES_PER_DAY) / 60,
                        m % 60,
                        DAY_NAMES[slot / MINUTES_PER_DAY as usize]
                    ));
                    continue 'days;
                }
                used[slot] = true;
            }
        }
    }
    let mut holidays = BTreeSet::new();
    for h in &c.holidays {
        match parse_holiday(h) {
            Some(d) => {
                holidays.insert(d);
            }
            None => problems.push(format!(
                "{}: {h:?} is not a date (YYYY-MM-DD) or a yearly day (MM-DD)",
                at("holidays")
            )),
        }
    }
    let business_day = c.business_day.unwrap_or(Duration::from_secs(8 * 3600));
    if business_day.is_zero() {
        problems.push(format!("{}: must be more than zero", at("business_day")));
    }
    match (tz, problems.is_empty()) {
        (Some(tz), true) => Ok(Calendar {
            name: name.to_string(),
            tz,
            week,
            holidays,
            business_day,
        }),
        _ => Err(problems),
    }
}

/// `HH:MM-HH:MM`; an end at or before the start means the next day, and
/// `24:00` is the end of the day.
fn parse_span(text: &str) -> Result<Span, String> {
    let (a, b) = text
        .split_once('-')
        .ok_or("is not a span such as 09:00-17:00")?;
    let minutes = |t: &str, allow_24: bool| -> Result<u32, String> {
        let (h, m) = t
            .trim()
            .split_once(':')
            .ok_or("has a time without a colon")?;
        let (h, m): (u32, u32) = (
            h.parse().map_err(|_| "has an hour that is not a number")?,
            m.parse().map_err(|_| "has minutes that are not a number")?,
        );
        if m >= 60 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
            return Err("has a time outside 00:00-24:00".into());
        }
        Ok(h * 60 + m)
    };
    let start = minutes(a, false)?;
    let mut end = minutes(b, true)?;
    if end == start {
        return Err("is empty (write 00:00-24:00 for a whole day)".into());
    }
    if end < start {
        end += MINUTES_PER_DAY;
    }
    Ok(Span { start, end })
}

fn parse_holiday(text: &str) -> Option<Holiday> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(Holiday::Date(d));
    }
    let (m, d) = text.split_once('-')?;
    let (month, day): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    // Valid in a leap year (02-29 is a holiday in leap years only).
    NaiveDate::from_ymd_opt(2024, month, day)?;
    Some(Holiday::Yearly { month, day })
}

#[cfg(test)]
mod tests {
    //! Hand-worked examples. Each comment gives the working it checks.
    use super::*;

    fn cal(toml_body: &str) -> Calendar {
        let text = format!("default = \"c\"\n[calendar.c]\n{toml_body}");
        Calendars::parse(&text, "test")
            .unwrap_or_else(|p| panic!("{p:#?}"))
            .get("c")
            .unwrap()
            .clone()
    }

    fn london_office() -> Calendar {
        cal(r#"
time_zone = "Europe/London"
weekdays = ["09:00-17:00"]
holidays = ["2026-05-04", "12-25"]
"#)
    }

    /// Local London time to UTC (for writing expectations as people do).
    fn ldn(s: &str) -> DateTime<Utc> {
        local("Europe/London", s)
    }

    fn local(tz: &str, s: &str) -> DateTime<Utc> {
        let tz: Tz = tz.parse().unwrap();
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    #[test]
    fn friday_evening_to_tuesday() {
        let c = london_office();
        // Fri 2026-03-13 18:30 is after hours. Ten business hours: Monday
        // 09:00-17:00 (8 h), then 2 h on Tuesday: Tue 11:00.
        assert_eq!(
            c.add_business(ldn("2026-03-13 18:30"), hours(10)),
            Some(ldn("2026-03-17 11:00"))
        );
        // Fri 16:00: one hour on Friday, 8 on Monday, 3 on Tuesday = 12 h.
        assert_eq!(
            c.add_business(ldn("2026-03-13 16:00"), hours(12)),
            Some(ldn("2026-03-17 12:00"))
        );
        // Ending exactly at close lands on close, not next morning.
        assert_eq!(
            c.add_business(ldn("2026-03-16 09:00"), hours(8)),
            Some(ldn("2026-03-16 17:00"))
        );
        assert_eq!(
            c.business_between(ldn("2026-03-13 16:00"), ldn("2026-03-17 12:00")),
            hours(12)
        );
    }

    #[test]
    fn twenty_four_business_hours_is_three_working_days() {
        let c = london_office();
        // SOP 000 §2: email answered within 24 business hours. Received
        // Wed 2026-03-11 14:00: Wed 3 h, Thu 8 h, Fri 8 h (19 h), Mon 5 h:
        // Mon 14:00.
        assert_eq!(
            c.add_business(ldn("2026-03-11 14:00"), hours(24)),
            Some(ldn("2026-03-16 14:00"))
        );
    }

    #[test]
    fn a_holiday_in_between_is_skipped() {
        let c = london_office();
        // Early May bank holiday Mon 2026-05-04. Fri 05-01 18:00 + 10 h:
        // Monday is a holiday, so Tue 8 h + Wed 2 h: Wed 11:00.
        assert_eq!(
            c.add_business(ldn("2026-05-01 18:00"), hours(10)),
            Some(ldn("2026-05-06 11:00"))
        );
        // A yearly holiday: Christmas 2026 is a Friday. Thu 12-24 16:00
        // + 2 h: 1 h on Thursday, none Friday, 1 h Monday 12-28: 10:00.
        assert_eq!(
            c.add_business(ldn("2026-12-24 16:00"), hours(2)),
            Some(ldn("2026-12-28 10:00"))
        );
        assert_eq!(
            c.business_between(ldn("2026-05-01 12:00"), ldn("2026-05-05 12:00")),
            hours(5 + 3)
        );
    }

    #[test]
    fn spring_forward_weekend_in_london() {
        // Europe/London goes from 01:00 GMT to 02:00 BST on Sun 2026-03-29.
        let c = cal(r#"
time_zone = "Europe/London"
every_day = ["00:00-03:00"]
"#);
        // That Sunday the span 00:00-03:00 local is 00:00-02:00 UTC: two
        // real hours of work, not three.
        let sunday = ldn("2026-03-29 00:00");
        assert_eq!(sunday, Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap());
        assert_eq!(
            c.business_between(sunday, sunday + TimeDelta::hours(6)),
            hours(2)
        );
        // From Saturday 02:30 local: 30 min left on Saturday, then 2 h on
        // Sunday (00:00-01:00 GMT, 02:00-03:00 BST) = 2.5 h. Three hours
        // therefore end 30 minutes into Monday's span: Mon 00:30 BST.
        assert_eq!(
            c.add_business(ldn("2026-03-28 02:30"), hours(3)),
            Some(ldn("2026-03-30 00:30"))
        );
        // One hour from Sunday 00:30 GMT: 00:30-01:00 GMT is 30 min, then
        // the clock jumps to 02:00 BST; 30 min more is 02:30 BST
        // (01:30 UTC).
        assert_eq!(
            c.add_business(ldn("2026-03-29 00:30"), hours(1)),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap())
        );
    }

    #[test]
    fn a_span_inside_the_missing_hour_holds_no_work() {
        // 01:00-02:00 local does not exist on 2026-03-29 in London.
        let c = cal(r#"
time_zone = "Europe/London"
every_day = ["01:00-02:00"]
"#);
        let sat = ldn("2026-03-28 00:00");
        // Saturday 1 h, Sunday none, Monday 1 h.
        assert_eq!(c.business_between(sat, ldn("2026-03-31 00:00")), hours(2));
        assert_eq!(
            c.add_business(ldn("2026-03-28 01:30"), hours(1)),
            Some(ldn("2026-03-30 01:30"))
        );
    }

    #[test]
    fn fall_back_weekend_in_london() {
        // Sun 2026-10-25: 02:00 BST becomes 01:00 GMT; 01:00-02:00 local
        // happens twice.
        let c = cal(r#"
time_zone = "Europe/London"
every_day = ["00:00-03:00"]
"#);
        // The span 00:00 BST (23:00 UTC Sat) to 03:00 GMT (03:00 UTC): four
        // real hours that Sunday.
        let start = ldn("2026-10-25 00:00");
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 10, 24, 23, 0, 0).unwrap());
        assert_eq!(
            c.business_between(start, start + TimeDelta::hours(12)),
            hours(4)
        );
        // A span that is exactly the repeated hour is worked twice.
        let c = cal(r#"
time_zone = "Europe/London"
every_day = ["01:00-02:00"]
"#);
        let sat = ldn("2026-10-24 12:00");
        assert_eq!(c.business_between(sat, sat + TimeDelta::days(1)), hours(2));
        // 90 minutes from the first 01:00 (00:00 UTC) ends at the second
        // 01:30 (01:30 UTC).
        assert_eq!(
            c.add_business(
                Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap(),
                Duration::from_secs(90 * 60)
            ),
            Some(Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap())
        );
    }

    #[test]
    fn an_office_week_across_the_dst_change_counts_real_hours() {
        // US Eastern springs forward on Sun 2026-03-08; a Mon-Fri office is
        // unaffected and the deadline keeps its local time.
        let c = cal(r#"
time_zone = "America/New_York"
weekdays = ["08:00-12:00", "13:00-17:00"]
"#);
        let ny = |s: &str| local("America/New_York", s);
        // Fri 03-06 15:00 EST + 10 h: Fri 2 h; Mon 8 h (EDT): Mon 17:00 EDT.
        assert_eq!(
            c.add_business(ny("2026-03-06 15:00"), hours(10)),
            Some(ny("2026-03-09 17:00"))
        );
        // Lunch does not count: 11:30 + 1 h is 13:30.
        assert_eq!(
            c.add_business(ny("2026-03-10 11:30"), hours(1)),
            Some(ny("2026-03-10 13:30"))
        );
    }

    #[test]
    fn a_24_7_calendar_has_no_gap_at_midnight() {
        // zammad#3180: calendars written as 00:00-23:59 lose a minute a
        // day. Ours are 00:00-24:00 and contiguous.
        let c = Calendar::always_open("always", chrono_tz::UTC);
        let t = Utc.with_ymd_and_hms(2026, 3, 13, 23, 59, 30).unwrap();
        assert_eq!(
            c.add_business(t, Duration::from_secs(60)),
            Some(t + TimeDelta::seconds(60))
        );
        assert_eq!(c.add_business(t, hours(48)), Some(t + TimeDelta::hours(48)));
        assert_eq!(c.business_between(t, t + TimeDelta::days(10)), hours(240));
        assert!(c.is_working(Utc.with_ymd_and_hms(2026, 3, 14, 0, 0, 0).unwrap()));
        // The same from the file form, on a zone with DST: business time
        // equals real time across both changes.
        let c = cal("time_zone = \"Europe/London\"\nevery_day = [\"00:00-24:00\"]\n");
        let a = ldn("2026-03-27 12:00");
        let b = ldn("2026-10-30 12:00");
        assert_eq!(c.business_between(a, b), (b - a).to_std().unwrap());
        assert_eq!(c.add_business(a, hours(72)), Some(a + TimeDelta::hours(72)));
    }

    #[test]
    fn a_night_shift_crossing_midnight() {
        // Mon-Fri nights 22:00-06:00, Paris; Monday 2026-03-16's shift is
        // cancelled by a holiday, Tuesday's is not.
        let c = cal(r#"
time_zone = "Europe/Paris"
weekdays = ["22:00-06:00"]
holidays = ["2026-03-16"]
"#);
        let paris = |s: &str| local("Europe/Paris", s);
        // Sat 03:00: Friday's shift (Fri 22:00-Sat 06:00) is still on.
        assert!(c.is_working(paris("2026-03-14 03:00")));
        assert!(!c.is_working(paris("2026-03-14 07:00")));
        // Sat 05:00 + 3 h: 1 h left of Friday's shift; no shift Sat, Sun or
        // Monday (holiday); Tuesday 22:00 + 2 h = Wed 00:00.
        assert_eq!(
            c.add_business(paris("2026-03-14 05:00"), hours(3)),
            Some(paris("2026-03-18 00:00"))
        );
        // Tue 23:00 + 8 h: 7 h to 06:00 Wed, then Wed 22:00 + 1 h.
        assert_eq!(
            c.add_business(paris("2026-03-17 23:00"), hours(8)),
            Some(paris("2026-03-18 23:00"))
        );
        assert_eq!(
            c.business_between(paris("2026-03-17 12:00"), paris("2026-03-18 12:00")),
            hours(8)
        );
    }

    #[test]
    fn outside_hours_zero_duration_and_ends_of_spans() {
        let c = london_office();
        let sat = ldn("2026-03-14 10:00");
        assert_eq!(c.add_business(sat, Duration::ZERO), Some(sat));
        // The first second of Monday counts.
        assert_eq!(
            c.add_business(sat, Duration::from_secs(1)),
            Some(ldn("2026-03-16 09:00") + TimeDelta::seconds(1))
        );
        assert!(c.is_working(ldn("2026-03-16 09:00")));
        assert!(!c.is_working(ldn("2026-03-16 17:00")));
        assert_eq!(c.business_between(sat, sat), Duration::ZERO);
        assert_eq!(
            c.business_between(sat, sat - TimeDelta::hours(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn bad_calendars_are_refused_with_every_reason() {
        let text = r#"
default = "nowhere"
[teams]
support = "missing"
[calendar.a]
time_zone = "Mars/Olympus"
monday = ["09:00-17:00", "16:00-18:00"]
tuesday = ["9-17", "25:00-26:00", "10:00-10:00"]
holidays = ["2026-13-01"]
[calendar.b]
time_zone = "UTC"
sunday = ["22:00-08:00"]
monday = ["07:00-09:00"]
"#;
        let problems = Calendars::parse(text, "cal.toml").unwrap_err().join("\n");
        for want in [
            "time_zone",
            "[calendar.a] monday: spans overlap",
            "\"9-17\"",
            "\"25:00-26:00\"",
            "\"10:00-10:00\" is empty",
            "holidays",
            "[calendar.b] sunday: spans overlap (at 07:00 on monday)",
            "teams.support",
            "default = \"nowhere\"",
        ] {
            assert!(problems.contains(want), "{want} not in:\n{problems}");
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(24 * 3600, true), "24h 00m of business time");
        assert_eq!(duration_words(26 * 3600, false), "1d 2h");
        assert_eq!(duration_words(200, false), "3m 20s");
        assert_eq!(duration_words(-5, false), "0s");
    }

    #[test]
    fn the_shipped_calendars_load_and_teams_find_theirs() {
        let cals = Calendars::built_in().unwrap();
        let default = cals.for_team("nobody-in-particular");
        assert_eq!(default.tz, chrono_tz::Europe::London);
        assert_eq!(default.business_day, hours(8));
        let always = cals.get("always").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 12, 25, 23, 0, 0).unwrap();
        assert_eq!(
            always.add_business(t, hours(2)),
            Some(t + TimeDelta::hours(2))
        );
    }
}
