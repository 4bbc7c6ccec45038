//! Hand-worked calendars: weekends, holidays, night shifts and the
//! daylight-saving changes, checked instant by instant.

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
