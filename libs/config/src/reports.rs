//! The `[reports]` section: the reports agreed with each client (SOP 002
//! §4.1: "communicate with clients as per the agreed schedule, e.g.
//! weekly, biweekly, or monthly"; §5: a weekly status update by email, a
//! monthly progress report as a PDF). Each `[[reports.client]]` is one
//! schedule: a client with a weekly update and a monthly report has two.
//! Intake keeps the schedules on its durable timers and sends each report
//! at the agreed local time, on the next business day when that falls on
//! a weekend or holiday.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportsConfig {
    /// One entry per agreed schedule; none by default.
    pub client: Vec<ClientReport>,
}

/// One client's agreed report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientReport {
    /// The client, by contact id in the directory: the report goes to
    /// them, in their language and time zone, and lists their cases.
    pub contact: String,
    /// `weekly` or `biweekly` (the status update, an email) or `monthly`
    /// (the progress report, an email with the figures as a PDF).
    pub cadence: String,
    /// The day of weekly and biweekly reports.
    #[serde(default = "default_weekday")]
    pub weekday: String,
    /// The day of monthly reports, 1 to 28.
    #[serde(default = "default_day_of_month")]
    pub day_of_month: u32,
    /// The local time it is sent at, `HH:MM`.
    #[serde(default = "default_at")]
    pub at: String,
    /// The team whose business-hours calendar says which days are business
    /// days (empty: the organisation's default calendar).
    #[serde(default)]
    pub team: String,
    /// Biweekly only: the date (`YYYY-MM-DD`) of one of its reports, which
    /// fixes which weeks they fall in (unset: weeks counted from the first
    /// Monday of 1970, every other one).
    #[serde(default)]
    pub first: Option<String>,
    /// An IANA time zone for the agreed time, instead of the contact's.
    #[serde(default)]
    pub time_zone: Option<String>,
}

fn default_weekday() -> String {
    "monday".into()
}

fn default_day_of_month() -> u32 {
    1
}

fn default_at() -> String {
    "09:00".into()
}

/// The cadences a client may agree to.
pub const CADENCES: [&str; 3] = ["weekly", "biweekly", "monthly"];
/// Weekday names, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `HH:MM` as (hours, minutes).
pub fn parse_hh_mm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// `YYYY-MM-DD` as (year, month, day), checked only for its shape.
pub fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

impl ReportsConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (i, r) in self.client.iter().enumerate() {
            let at = format!("reports.client[{i}]");
            if !herald_proto::subjects::is_subject_token(&r.contact) {
                problems.push(format!(
                    "{at}.contact: must be a contact id (1-128 letters, digits or - _ : @ + =)"
                ));
            }
            if !CADENCES.contains(&r.cadence.as_str()) {
                problems.push(format!(
                    "{at}.cadence: {:?} is not one of {}",
                    r.cadence,
                    CADENCES.join(", ")
                ));
            }
            if !WEEKDAYS.contains(&r.weekday.to_ascii_lowercase().as_str()) {
                problems.push(format!(
                    "{at}.weekday: {:?} is not a day of the week (monday … sunday)",
                    r.weekday
                ));
            }
            if !(1..=28).contains(&r.day_of_month) {
                problems.push(format!(
                    "{at}.day_of_month: {} is not 1 to 28 (every month has those)",
                    r.day_of_month
                ));
            }
            if parse_hh_mm(&r.at).is_none() {
                problems.push(format!("{at}.at: {:?} is not a time as HH:MM", r.at));
            }
            if !r.team.is_empty() && !herald_proto::subjects::is_subject_token(&r.team) {
                problems.push(format!("{at}.team: is not a team name"));
            }
            match &r.first {
                Some(f) if parse_date(f).is_none() => {
                    problems.push(format!("{at}.first: {f:?} is not a date as YYYY-MM-DD"))
                }
                Some(_) if r.cadence != "biweekly" => problems.push(format!(
                    "{at}.first: only a biweekly cadence has a first date"
                )),
                _ => {}
            }
            if let Some(tz) = &r.time_zone
                && (tz.is_empty() || tz.contains(char::is_whitespace))
            {
                problems.push(format!("{at}.time_zone: {tz:?} is not an IANA time zone"));
            }
            let key = (r.contact.as_str(), r.cadence.as_str());
            if seen.contains(&key) {
                problems.push(format!(
                    "{at}: {} already has a {} report",
                    r.contact, r.cadence
                ));
            }
            seen.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, tests::env};

    #[test]
    fn a_clients_schedule_loads_and_every_bad_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            r#"
[[reports.client]]
contact = "acme"
cadence = "weekly"
weekday = "Friday"
at = "08:30"
team = "support"

[[reports.client]]
contact = "acme"
cadence = "monthly"
"#,
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(c.reports.client.len(), 2);
        assert_eq!(c.reports.client[1].day_of_month, 1);
        assert_eq!(c.reports.client[1].at, "09:00");

        std::fs::write(
            &file,
            r#"
[[reports.client]]
contact = "has space"
cadence = "daily"
weekday = "someday"
day_of_month = 31
at = "9am"
first = "2026-12-04"

[[reports.client]]
contact = "acme"
cadence = "biweekly"
first = "04/12/2026"

[[reports.client]]
contact = "acme"
cadence = "biweekly"
"#,
        )
        .unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        for field in [
            "reports.client[0].contact",
            "reports.client[0].cadence",
            "reports.client[0].weekday",
            "reports.client[0].day_of_month",
            "reports.client[0].at",
            "reports.client[0].first: only a biweekly",
            "reports.client[1].first",
            "reports.client[2]: acme already has a biweekly report",
        ] {
            assert!(err.contains(field), "{field} not in {err}");
        }
    }
}
