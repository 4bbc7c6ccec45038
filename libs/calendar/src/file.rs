//! Reading calendars from the TOML a deployment keeps them in: each
//! calendar's time zone, spans and holidays checked, every problem
//! reported together, and which team uses which.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::{Calendar, DAY_NAMES, DEFAULT_CALENDARS, Holiday, MINUTES_PER_DAY, Span};

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
