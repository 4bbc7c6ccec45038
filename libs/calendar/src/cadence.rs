//! Agreed cadences for reports (SOP 002 §4.1: "communicate with clients as
//! per the agreed schedule, e.g. weekly, biweekly, or monthly"): the dates
//! a report falls on in the recipient's time zone, moved to the next
//! business day of a calendar when one falls on a weekend or holiday, and
//! the period each one covers.
//!
//! A report's *nominal* date is the one the cadence names (every Friday,
//! every other Friday, the 1st of each month); it is sent at the agreed
//! local time on that date, or on the first business day after it. It
//! covers the time from the previous nominal date's agreed time up to its
//! own, so a report sent late for a holiday still covers exactly its
//! period, and consecutive reports neither overlap nor leave a gap.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;

use crate::Calendar;

/// How often a report is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Weekly(Weekday),
    /// Every other week on the weekday of `anchor`, one of its dates.
    Biweekly {
        anchor: NaiveDate,
    },
    /// On this day of every month (1 to 28, so every month has it).
    Monthly {
        day: u32,
    },
}

/// The first Monday of the Unix epoch: biweekly cadences with no anchor of
/// their own count their weeks from it.
pub const EPOCH_MONDAY: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 5) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

impl Cadence {
    /// A cadence as a configuration names it: `weekly`, `biweekly` or
    /// `monthly`, on `weekday` (weekly and biweekly) or `day_of_month`
    /// (monthly, 1 to 28); a biweekly one falls in the weeks of `first`.
    /// The error says which of them is wrong.
    pub fn from_words(
        cadence: &str,
        weekday: &str,
        day_of_month: u32,
        first: Option<NaiveDate>,
    ) -> Result<Cadence, String> {
        let day = || {
            weekday
                .parse::<Weekday>()
                .map_err(|_| format!("weekday: {weekday:?} is not a day of the week"))
        };
        match cadence {
            "weekly" => Ok(Cadence::Weekly(day()?)),
            "biweekly" => {
                let w = day()?;
                match first {
                    Some(f) if f.weekday() != w => Err(format!(
                        "first: {f} is a {}, not a {}",
                        day_name(f.weekday()),
                        day_name(w)
                    )),
                    Some(anchor) => Ok(Cadence::Biweekly { anchor }),
                    None => Ok(Cadence::biweekly_on(w)),
                }
            }
            "monthly" if (1..=28).contains(&day_of_month) => {
                Ok(Cadence::Monthly { day: day_of_month })
            }
            "monthly" => Err(format!("day_of_month: {day_of_month} is not 1 to 28")),
            other => Err(format!(
                "cadence: {other:?} is not weekly, biweekly or monthly"
            )),
        }
    }

    /// Every other `weekday`, counting weeks from [`EPOCH_MONDAY`].
    pub fn biweekly_on(weekday: Weekday) -> Cadence {
        Cadence::Biweekly {
            anchor: EPOCH_MONDAY + TimeDelta::days(i64::from(weekday.num_days_from_monday())),
        }
    }

    /// The first nominal date on or after `date`.
    fn on_or_after(self, date: NaiveDate) -> NaiveDate {
        match self {
            Cadence::Weekly(w) => {
                let ahead = (7 + w.num_days_from_monday() as i64
                    - date.weekday().num_days_from_monday() as i64)
                    % 7;
                date + TimeDelta::days(ahead)
            }
            Cadence::Biweekly { anchor } => {
                let ahead = (anchor - date).num_days().rem_euclid(14);
                date + TimeDelta::days(ahead)
            }
            Cadence::Monthly { day } => {
                let this = date.with_day(day).unwrap_or(date);
                if this >= date {
                    this
                } else {
                    this.checked_add_months(Months::new(1)).unwrap_or(this)
                }
            }
        }
    }

    /// The nominal date before `nominal`.
    pub fn previous(self, nominal: NaiveDate) -> NaiveDate {
        match self {
            Cadence::Weekly(_) => nominal - TimeDelta::days(7),
            Cadence::Biweekly { .. } => nominal - TimeDelta::days(14),
            Cadence::Monthly { .. } => nominal
                .checked_sub_months(Months::new(1))
                .unwrap_or(nominal),
        }
    }

    /// The nominal date after `nominal`.
    fn next(self, nominal: NaiveDate) -> NaiveDate {
        match self {
            Cadence::Weekly(_) => nominal + TimeDelta::days(7),
            Cadence::Biweekly { .. } => nominal + TimeDelta::days(14),
            Cadence::Monthly { .. } => nominal
                .checked_add_months(Months::new(1))
                .unwrap_or(nominal),
        }
    }

    /// The cadence in words, e.g. "weekly on Friday".
    pub fn words(self) -> String {
        match self {
            Cadence::Weekly(w) => format!("weekly on {}", day_name(w)),
            Cadence::Biweekly { anchor } => format!(
                "every other {} (one of them {anchor})",
                day_name(anchor.weekday())
            ),
            Cadence::Monthly { day } => format!("monthly on day {day}"),
        }
    }
}

fn day_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// A cadence at a local time in a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub cadence: Cadence,
    pub at: NaiveTime,
    pub tz: Tz,
}

/// One report of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The date the cadence names, in the schedule's zone: the report's
    /// name for its period.
    pub nominal: NaiveDate,
    /// When it is sent: the agreed time on the nominal date or, if that is
    /// no business day, on the first business day after it.
    pub due: DateTime<Utc>,
    /// The period it covers, `from` included, `until` not.
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Schedule {
    fn instant(&self, date: NaiveDate) -> DateTime<Utc> {
        Calendar::local_instant(self.tz, date, self.at)
    }

    /// The report named by the nominal date `nominal`.
    pub fn occurrence(&self, nominal: NaiveDate, business: &Calendar) -> Occurrence {
        Occurrence {
            nominal,
            due: self.instant(business.business_day_from(nominal)),
            from: self.instant(self.cadence.previous(nominal)),
            until: self.instant(nominal),
        }
    }

    /// The first report due after `t`.
    pub fn next_after(&self, t: DateTime<Utc>, business: &Calendar) -> Occurrence {
        // A report named before t's date may still be due after it (moved
        // past a long holiday), so the search starts a while back.
        let start = t.with_timezone(&self.tz).date_naive() - TimeDelta::days(40);
        let mut nominal = self.cadence.on_or_after(start);
        loop {
            let o = self.occurrence(nominal, business);
            if o.due > t {
                return o;
            }
            nominal = self.cadence.next(nominal);
        }
    }

    /// The report that follows `o`.
    pub fn following(&self, o: &Occurrence, business: &Calendar) -> Occurrence {
        self.occurrence(self.cadence.next(o.nominal), business)
    }

    /// The schedule in words, e.g. "weekly on Friday at 09:00".
    pub fn words(&self) -> String {
        format!("{} at {}", self.cadence.words(), self.at.format("%H:%M"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Calendars;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn nine() -> NaiveTime {
        NaiveTime::from_hms_opt(9, 0, 0).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn office() -> Calendar {
        Calendars::built_in()
            .unwrap()
            .get("office")
            .unwrap()
            .clone()
    }

    #[test]
    fn weekly_on_friday_in_london_covers_the_week_before() {
        let s = Schedule {
            cadence: Cadence::Weekly(Weekday::Fri),
            at: nine(),
            tz: chrono_tz::Europe::London,
        };
        // Wednesday 2 December 2026: next is Friday the 4th at 09:00 GMT.
        let o = s.next_after(utc("2026-12-02T12:00:00Z"), &office());
        assert_eq!(o.nominal, d(2026, 12, 4));
        assert_eq!(o.due, utc("2026-12-04T09:00:00Z"));
        assert_eq!(o.from, utc("2026-11-27T09:00:00Z"));
        assert_eq!(o.until, o.due);
        // Exactly at the due time, it is the next week's.
        let later = s.next_after(o.due, &office());
        assert_eq!(later.nominal, d(2026, 12, 11));
        assert_eq!(later.from, o.until, "no gap, no overlap");
        assert_eq!(s.following(&o, &office()), later);
    }

    #[test]
    fn a_report_on_a_holiday_or_weekend_moves_to_the_next_business_day() {
        // Friday 25 December 2026 is a holiday and Monday the 28th too:
        // the report goes on Tuesday the 29th, still covering to the 25th.
        let s = Schedule {
            cadence: Cadence::Weekly(Weekday::Fri),
            at: nine(),
            tz: chrono_tz::Europe::London,
        };
        let o = s.next_after(utc("2026-12-24T12:00:00Z"), &office());
        assert_eq!(o.nominal, d(2026, 12, 25));
        assert_eq!(o.due, utc("2026-12-29T09:00:00Z"));
        assert_eq!(o.until, utc("2026-12-25T09:00:00Z"));
        // Still the one due on the 27th (a Sunday, while it waits).
        assert_eq!(s.next_after(utc("2026-12-27T00:00:00Z"), &office()), o);
        // Monthly on the 1st: 1 August 2026 is a Saturday, so Monday the 3rd.
        let m = Schedule {
            cadence: Cadence::Monthly { day: 1 },
            ..s
        };
        let o = m.next_after(utc("2026-07-20T00:00:00Z"), &office());
        assert_eq!(o.nominal, d(2026, 8, 1));
        assert_eq!(o.due, utc("2026-08-03T08:00:00Z"), "09:00 BST");
        assert_eq!(o.from, utc("2026-07-01T08:00:00Z"));
    }

    #[test]
    fn biweekly_skips_a_week_and_follows_its_anchor() {
        let s = Schedule {
            cadence: Cadence::Biweekly {
                anchor: d(2026, 12, 4),
            },
            at: nine(),
            tz: chrono_tz::Europe::Paris,
        };
        let o = s.next_after(utc("2026-12-05T00:00:00Z"), &office());
        assert_eq!(o.nominal, d(2026, 12, 18));
        assert_eq!(o.due, utc("2026-12-18T08:00:00Z"), "09:00 in Paris");
        assert_eq!(o.from, utc("2026-12-04T08:00:00Z"));
        let epoch = Cadence::biweekly_on(Weekday::Mon);
        assert_eq!(
            epoch,
            Cadence::Biweekly {
                anchor: EPOCH_MONDAY
            }
        );
        assert!(s.words().starts_with("every other Friday"), "{}", s.words());
    }

    #[test]
    fn cadences_read_from_their_words() {
        assert_eq!(
            Cadence::from_words("weekly", "Friday", 1, None),
            Ok(Cadence::Weekly(Weekday::Fri))
        );
        assert_eq!(
            Cadence::from_words("monthly", "monday", 15, None),
            Ok(Cadence::Monthly { day: 15 })
        );
        assert!(
            Cadence::from_words("biweekly", "monday", 1, Some(d(2026, 12, 4)))
                .unwrap_err()
                .starts_with("first:")
        );
        assert!(
            Cadence::from_words("daily", "monday", 1, None)
                .unwrap_err()
                .starts_with("cadence:")
        );
        assert!(
            Cadence::from_words("weekly", "someday", 1, None)
                .unwrap_err()
                .starts_with("weekday:")
        );
    }

    #[test]
    fn the_business_day_is_the_calendars() {
        let cal = office();
        assert!(cal.is_business_day(d(2026, 12, 4)));
        assert!(!cal.is_business_day(d(2026, 12, 5)), "Saturday");
        assert!(!cal.is_business_day(d(2026, 12, 25)), "holiday");
        assert_eq!(cal.business_day_from(d(2026, 12, 25)), d(2026, 12, 29));
        let always = Calendar::always_open("always", chrono_tz::UTC);
        assert_eq!(always.business_day_from(d(2026, 12, 26)), d(2026, 12, 26));
    }
}
