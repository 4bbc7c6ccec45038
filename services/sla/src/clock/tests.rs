//! The clock rules with fixed instants: a ManualClock stands in for
//! time, the shipped office calendar (London, Mon-Fri 09-17) and a
//! 24/7 one for the calendar.
use super::*;
use crate::policy::{Policies, Target};
use chrono::{TimeDelta, TimeZone};
use herald_calendar::Calendars;
use herald_runtime::clock::{Clock as _, ManualClock};

fn office() -> Calendar {
    Calendars::built_in()
        .unwrap()
        .get("office")
        .unwrap()
        .clone()
}

fn spec(kind: ClockKind, target: Target) -> ClockSpec {
    ClockSpec {
        kind,
        policy: "p".into(),
        target,
        written: "t".into(),
        warn_permille: 750,
    }
}

fn h(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n * 3600)
}

fn utc(y: i32, mo: u32, d: u32, hh: u32, mm: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, hh, mm, 0).unwrap()
}

#[test]
fn an_email_clock_counts_business_hours_warns_then_breaches() {
    // Received Fri 2026-03-13 16:00 GMT. 24 business hours on the office
    // calendar: Fri 1 h, Mon 8, Tue 8, Wed 7 -> Wed 03-18 16:00; the
    // warning at 18 h: Fri 1, Mon 8, Tue 8, Wed 1 -> Wed 10:00.
    let cal = office();
    let time = ManualClock::at(utc(2026, 3, 13, 16, 0));
    let mut c = Clock::start(
        &spec(ClockKind::Response, Target::Business(h(24))),
        time.now(),
        &cal,
        1,
    );
    assert_eq!(c.deadline_ms, millis(utc(2026, 3, 18, 16, 0)));
    assert_eq!(c.next_due(), Some(millis(utc(2026, 3, 18, 10, 0))));
    time.set(utc(2026, 3, 18, 9, 59));
    assert_eq!(c.fire(time.now()), None);
    time.advance(TimeDelta::minutes(1));
    assert_eq!(c.fire(time.now()), Some(Fired::Warning));
    assert_eq!(c.fire(time.now()), None, "a warning fires once");
    assert_eq!(c.next_due(), Some(c.deadline_ms));
    // Six business hours left at the warning point.
    assert_eq!(c.seconds_left(time.now(), &cal), 6 * 3600);
    time.set(utc(2026, 3, 18, 16, 0));
    assert_eq!(c.fire(time.now()), Some(Fired::Breach));
    assert_eq!(c.next_due(), None, "nothing more after the breach");
    // Thursday 10:00: an hour over, in business time.
    time.set(utc(2026, 3, 19, 10, 0));
    assert_eq!(c.seconds_left(time.now(), &cal), -3600 - 3600);
    assert_eq!(c.stop(time.now(), &cal), Some(false), "stopped late");
}

#[test]
fn waiting_on_the_client_pauses_and_the_reply_resumes_with_what_was_left() {
    // A 2-business-hour clock started Mon 09:00; paused at 10:30 with
    // 30 min left; the client replies Tue 16:00; the new deadline is
    // Tue 16:30.
    let cal = office();
    let t0 = utc(2026, 3, 16, 9, 0);
    let ack = spec(ClockKind::Acknowledgement, Target::Business(h(2)));
    let mut case = CaseClocks {
        team: "support".into(),
        clocks: vec![Clock::start(&ack, t0, &cal, 1)],
        ..Default::default()
    };
    let changes = case.apply(
        CaseEventKind::WaitingOnClient,
        utc(2026, 3, 16, 10, 30),
        &cal,
        &[],
    );
    assert_eq!(
        changes,
        [Change::Paused {
            kind: ClockKind::Acknowledgement
        }]
    );
    let c = &case.clocks[0];
    assert_eq!(c.next_due(), None, "a paused clock has no timer");
    assert_eq!(c.seconds_left(utc(2026, 3, 16, 15, 0), &cal), 1800);
    assert_eq!(
        c.projected_deadline(utc(2026, 3, 17, 16, 0), &cal),
        millis(utc(2026, 3, 17, 16, 30))
    );
    let changes = case.apply(
        CaseEventKind::ClientReplied,
        utc(2026, 3, 17, 16, 0),
        &cal,
        &[],
    );
    let deadline = millis(utc(2026, 3, 17, 16, 30));
    assert_eq!(
        changes,
        [Change::Resumed {
            kind: ClockKind::Acknowledgement,
            deadline_ms: deadline
        }]
    );
    let c = &case.clocks[0];
    assert_eq!(c.generation, 2, "a resumed clock fires under new ids");
    // 75% of 2 h is 90 min; 90 min were spent by the pause, so the
    // warning is due at once.
    assert_eq!(c.next_due(), Some(millis(utc(2026, 3, 17, 16, 0))));
    // A second reply changes nothing.
    assert!(
        case.apply(
            CaseEventKind::ClientReplied,
            utc(2026, 3, 17, 16, 5),
            &cal,
            &[]
        )
        .is_empty()
    );
}

#[test]
fn events_stop_the_clocks_they_answer() {
    let cal = Calendar::always_open("always", chrono_tz::UTC);
    let t0 = utc(2026, 3, 16, 9, 0);
    let specs = [
        spec(ClockKind::Acknowledgement, Target::Wall(h(1))),
        spec(ClockKind::Response, Target::Wall(h(4))),
        spec(ClockKind::Resolution, Target::Wall(h(48))),
    ];
    let (mut case, started) = CaseClocks::open(
        Opening {
            team: "t",
            channel: CaseChannel::SupportTicket,
            priority: Priority::Normal,
            specs: &specs,
        },
        t0,
        &cal,
    );
    assert_eq!(started.len(), 3);
    let ack = case.apply(
        CaseEventKind::Acknowledged,
        t0 + TimeDelta::minutes(30),
        &cal,
        &[],
    );
    assert_eq!(
        ack,
        [Change::Stopped {
            kind: ClockKind::Acknowledgement,
            met: true
        }]
    );
    // Responding after 5 h: the response clock missed; the
    // acknowledgement clock is already stopped.
    let rsp = case.apply(
        CaseEventKind::Responded,
        t0 + TimeDelta::hours(5),
        &cal,
        &[],
    );
    assert_eq!(
        rsp,
        [Change::Stopped {
            kind: ClockKind::Response,
            met: false
        }]
    );
    let res = case.apply(CaseEventKind::Resolved, t0 + TimeDelta::hours(6), &cal, &[]);
    assert_eq!(res.len(), 1);
    assert!(case.clocks.iter().all(|c| c.next_due().is_none()));
    // Reopening starts response and resolution afresh, one generation
    // on, not the acknowledgement.
    let again = case.apply(
        CaseEventKind::Reopened,
        t0 + TimeDelta::hours(8),
        &cal,
        &specs,
    );
    assert_eq!(
        again.iter().map(Change::kind).collect::<Vec<_>>(),
        [ClockKind::Response, ClockKind::Resolution]
    );
    let rsp = case.clock_mut(ClockKind::Response).unwrap();
    assert_eq!(rsp.generation, 2);
    assert_eq!(rsp.deadline_ms, millis(t0 + TimeDelta::hours(12)));
    assert!(!rsp.breached);
}

#[test]
fn a_clock_due_long_ago_breaches_without_a_separate_warning() {
    // The sla service was down past the deadline: one breach, no late
    // warning.
    let cal = Calendar::always_open("always", chrono_tz::UTC);
    let t0 = utc(2026, 3, 16, 9, 0);
    let mut c = Clock::start(&spec(ClockKind::Response, Target::Wall(h(2))), t0, &cal, 1);
    assert_eq!(c.fire(t0 + TimeDelta::hours(3)), Some(Fired::Breach));
    assert_eq!(c.fire(t0 + TimeDelta::hours(3)), None);
    assert!(c.warned);
}

#[test]
fn state_stays_small_and_timer_ids_round_trip() {
    let cal = office();
    let specs =
        Policies::load(None)
            .unwrap()
            .clocks_for(CaseChannel::Email, Priority::Normal, "support");
    let (case, _) = CaseClocks::open(
        Opening {
            team: "support",
            channel: CaseChannel::Email,
            priority: Priority::Normal,
            specs: &specs,
        },
        utc(2026, 3, 16, 9, 0),
        &cal,
    );
    let bytes = prost::Message::encode_to_vec(&case);
    // An email case has its response clock and the 24-hour resolution
    // clock; each costs at most 64 bytes of state.
    assert_eq!(specs.len(), 2);
    assert!(bytes.len() <= 64 * specs.len(), "{} bytes", bytes.len());
    let id = timer_id("CASE-7:x", ClockKind::Resolution);
    assert_eq!(
        parse_timer_id(&id),
        Some(("CASE-7:x", ClockKind::Resolution))
    );
    assert_eq!(parse_timer_id("CASE-7:q"), None);
}
