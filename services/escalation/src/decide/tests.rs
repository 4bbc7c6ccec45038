//! The reducer driven event by event on the shipped policy (frontline
//! 30m; team lead 1h, repeated once; supervisor 2h, once; management 4h,
//! twice; survey a day after resolution, reminder three days later),
//! checking the state it keeps and the effects it asks for.

use chrono::{TimeDelta, TimeZone, Utc};
use herald_proto::v1::{CaseDetails, Feedback, FeedbackStatus};
use herald_runtime::clock::{Clock, ManualClock};

use super::*;
use crate::machine::Status;

const CASE: &str = "CASE-1";

fn policies() -> Policies {
    Policies::load(None).unwrap()
}

fn clock() -> ManualClock {
    ManualClock::at(Utc.with_ymd_and_hms(2026, 3, 16, 9, 0, 0).unwrap())
}

fn now(c: &ManualClock) -> i64 {
    millis(c.now())
}

fn event(kind: CaseEventKind, actor: &str) -> CaseEvent {
    CaseEvent {
        case_id: CASE.into(),
        kind: kind as i32,
        actor: actor.into(),
        ..Default::default()
    }
}

fn opened(priority: Priority) -> CaseEvent {
    CaseEvent {
        details: Some(CaseDetails {
            priority: priority as i32,
            client_contact_id: "client-ana".into(),
            responsible_staff: "staff-lee".into(),
            team: "support".into(),
            reference: "INQ-7".into(),
            ..Default::default()
        }),
        ..event(CaseEventKind::Opened, "crm")
    }
}

fn breach(clock: ClockKind) -> SlaEvent {
    SlaEvent {
        case_id: CASE.into(),
        kind: SlaEventKind::Breach as i32,
        clock: clock as i32,
        ..Default::default()
    }
}

/// A normal case opened at stream position 1: nothing to do yet.
fn open_normal(p: &Policies, c: &ManualClock) -> CaseState {
    let (st, effects) = on_event(p, &opened(Priority::Normal), 1, None, now(c)).unwrap();
    assert!(effects.is_empty(), "a normal case is not escalated at open");
    assert_eq!(st.current, None);
    st
}

/// The one Notify effect in `effects`: the escalation and its step.
fn notified(effects: &[Effect]) -> (&Escalation, Step) {
    match effects {
        [Effect::Notify { esc, step }] => (esc, *step),
        other => panic!("expected one notice, got {other:?}"),
    }
}

fn notify(level: usize, round: u32, client: bool) -> Step {
    Step::Notify {
        level,
        round,
        client,
    }
}

#[test]
fn a_breach_starts_the_first_level_and_tells_the_client() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    c.advance(TimeDelta::hours(4));
    let (st, effects) = on_sla(&p, &breach(ClockKind::Response), 5, Some(&st), now(&c)).unwrap();
    let (esc, step) = notified(&effects);
    assert_eq!(
        step,
        notify(0, 0, true),
        "frontline, first notice, client told"
    );
    assert_eq!(esc.trigger, "breach:response");
    assert_eq!(esc.policy, "standard");
    assert_eq!(esc.seq, 5, "its cancel key sits at the breach's position");
    assert_eq!(st.current.as_ref(), Some(esc));
    assert_eq!(st.escalations, 1);
    assert_eq!(
        esc.next_ms,
        Some(now(&c) + 30 * 60 * 1000),
        "frontline has 30 minutes"
    );

    // A second breach while it is under way starts nothing new.
    assert_eq!(
        on_sla(&p, &breach(ClockKind::Resolution), 6, Some(&st), now(&c)),
        None
    );
}

#[test]
fn a_case_not_resolved_in_time_goes_straight_to_the_team_lead() {
    // SOP 002 §8.1: "cannot be resolved within 24 hours, escalate to the
    // team lead or supervisor".
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    c.advance(TimeDelta::hours(24));
    let (_, effects) = on_sla(&p, &breach(ClockKind::Resolution), 7, Some(&st), now(&c)).unwrap();
    let (esc, step) = notified(&effects);
    assert_eq!(esc.trigger, "breach:resolution");
    assert_eq!(
        step,
        notify(1, 0, true),
        "team lead, first notice, client told"
    );
}

#[test]
fn warnings_and_breaches_of_answered_clocks_start_nothing() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let warning = SlaEvent {
        kind: SlaEventKind::Warning as i32,
        ..breach(ClockKind::Response)
    };
    assert_eq!(on_sla(&p, &warning, 2, Some(&st), now(&c)), None);
    assert_eq!(
        on_sla(&p, &breach(ClockKind::Response), 2, None, now(&c)),
        None,
        "a case never seen open"
    );
    let ack = event(CaseEventKind::Acknowledged, "staff-lee");
    let (st, _) = on_event(&p, &ack, 3, Some(&st), now(&c)).unwrap();
    assert_eq!(
        on_sla(
            &p,
            &breach(ClockKind::Acknowledgement),
            4,
            Some(&st),
            now(&c)
        ),
        None,
        "the breach of an acknowledged clock is old news"
    );
    let (_, effects) = on_sla(&p, &breach(ClockKind::Response), 5, Some(&st), now(&c)).unwrap();
    assert_eq!(
        notified(&effects).1,
        notify(0, 0, true),
        "the response is still owed"
    );
}

#[test]
fn an_acknowledgement_stops_the_escalation_and_what_it_queued() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let (st, _) = on_sla(&p, &breach(ClockKind::Response), 5, Some(&st), now(&c)).unwrap();
    c.advance(TimeDelta::minutes(10));
    let ack = event(CaseEventKind::Acknowledged, "tl-kim");
    let (st, effects) = on_event(&p, &ack, 8, Some(&st), now(&c)).unwrap();
    let stopped = st.current.clone().unwrap();
    assert_eq!(stopped.status, Status::Stopped);
    assert_eq!(stopped.stopped_by, "acknowledged by tl-kim");
    assert_eq!(stopped.stopped_ms, Some(now(&c)));
    assert_eq!(stopped.next_ms, None, "no timer left");
    assert_eq!(
        effects,
        [
            Effect::StopFamily {
                family: escalation_family(CASE),
                position: 8,
                reason: "acknowledged by tl-kim".into(),
            },
            Effect::Stopped { esc: stopped },
        ]
    );

    // A timer that fires anyway does nothing; another acknowledgement
    // stops the family again (for events that reached the stream by other
    // means) but stops no escalation twice.
    c.advance(TimeDelta::hours(2));
    let (after, effects) = on_timer(&p, &st, Timer::Escalation, now(&c)).unwrap();
    assert!(effects.is_empty());
    assert_eq!(after, st);
    let (_, effects) = on_event(
        &p,
        &event(CaseEventKind::Responded, ""),
        9,
        Some(&st),
        now(&c),
    )
    .unwrap();
    assert_eq!(
        effects,
        [Effect::StopFamily {
            family: escalation_family(CASE),
            position: 9,
            reason: "responded".into(),
        }]
    );
}

#[test]
fn a_level_repeats_before_it_goes_up_and_the_client_is_told_on_each_new_level() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let (mut st, _) = on_sla(&p, &breach(ClockKind::Response), 5, Some(&st), now(&c)).unwrap();

    // Too early: nothing, and the state comes back as it was.
    c.advance(TimeDelta::minutes(29));
    let (same, effects) = on_timer(&p, &st, Timer::Escalation, now(&c)).unwrap();
    assert!(effects.is_empty());
    assert_eq!(same, st);

    let mut steps = Vec::new();
    for minutes in [1, 60, 60, 120] {
        c.advance(TimeDelta::minutes(minutes));
        let (next, effects) = on_timer(&p, &st, Timer::Escalation, now(&c)).unwrap();
        let (esc, step) = notified(&effects);
        assert_eq!(next.current.as_ref(), Some(esc));
        assert_eq!(esc.seq, 5, "the same escalation throughout");
        steps.push(step);
        st = next;
    }
    assert_eq!(
        steps,
        [
            notify(1, 0, true),  // team lead, the client told
            notify(1, 1, false), // team lead again, the client not told again
            notify(2, 0, true),  // supervisor, the client told
            notify(2, 1, false), // supervisor again
        ]
    );
    assert_eq!(st.escalations, 1, "one escalation, several notices");
}

#[test]
fn an_escalation_nobody_answers_ends_exhausted() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let (mut st, _) = on_sla(&p, &breach(ClockKind::Response), 5, Some(&st), now(&c)).unwrap();
    let mut last = Vec::new();
    for _ in 0..24 {
        c.advance(TimeDelta::hours(1));
        let (next, effects) = on_timer(&p, &st, Timer::Escalation, now(&c)).unwrap();
        st = next;
        if !effects.is_empty() {
            last = effects;
        }
    }
    let esc = st.current.clone().unwrap();
    assert_eq!(esc.status, Status::Exhausted);
    assert_eq!(last, [Effect::Exhausted { esc }]);
}

#[test]
fn a_critical_case_is_escalated_the_moment_it_opens() {
    let (p, c) = (policies(), clock());
    let (st, effects) = on_event(&p, &opened(Priority::Critical), 1, None, now(&c)).unwrap();
    let (esc, step) = notified(&effects);
    assert_eq!(step, notify(0, 0, true));
    assert_eq!(esc.trigger, "critical");
    assert_eq!(st.client, "client-ana");
    assert_eq!(st.staff, "staff-lee");
    assert_eq!(st.reference, "INQ-7");
    // Opened twice: the second changes nothing.
    assert_eq!(
        on_event(&p, &opened(Priority::Critical), 2, Some(&st), now(&c)),
        None
    );
}

#[test]
fn escalate_now_starts_at_the_team_lead_then_goes_up_at_once() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let now_please = event(CaseEventKind::EscalateNow, "agent-mo");
    let (st, effects) = on_event(&p, &now_please, 3, Some(&st), now(&c)).unwrap();
    let (esc, step) = notified(&effects);
    assert_eq!(step, notify(1, 0, true), "a request starts at on_request");
    assert_eq!(esc.trigger, "request");
    c.advance(TimeDelta::minutes(5));
    let (st, effects) = on_event(&p, &now_please, 4, Some(&st), now(&c)).unwrap();
    let (esc, step) = notified(&effects);
    assert_eq!(step, notify(2, 0, true), "under way: one level up");
    assert_eq!(esc.seq, 3, "still the escalation the first request began");
    assert_eq!(st.escalations, 1);
}

#[test]
fn an_update_changes_who_and_what_later_notices_name() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let update = CaseEvent {
        details: Some(CaseDetails {
            responsible_staff: "staff-ray".into(),
            priority: Priority::High as i32,
            ..Default::default()
        }),
        ..event(CaseEventKind::Updated, "crm")
    };
    let (next, effects) = on_event(&p, &update, 2, Some(&st), now(&c)).unwrap();
    assert!(effects.is_empty());
    assert_eq!(next.staff, "staff-ray");
    assert_eq!(next.priority, Priority::High as i32);
    assert_eq!(next.team, "support", "fields left empty are kept");
    assert_eq!(next.reference, "INQ-7");
    assert_eq!(
        on_event(&p, &update, 2, None, now(&c)),
        None,
        "a case never seen open"
    );
}

#[test]
fn a_resolution_schedules_the_survey_and_one_reminder_until_feedback() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let (st, effects) = on_event(
        &p,
        &event(CaseEventKind::Resolved, "staff-lee"),
        10,
        Some(&st),
        now(&c),
    )
    .unwrap();
    assert!(st.resolved);
    let due = now(&c) + 24 * 3600 * 1000;
    assert_eq!(
        st.follow_up,
        FollowUp::Scheduled {
            seq: 10,
            due_ms: due
        }
    );
    assert_eq!(
        effects,
        [
            Effect::StopFamily {
                family: escalation_family(CASE),
                position: 10,
                reason: "resolved by staff-lee".into(),
            },
            Effect::FollowUpNote {
                id: format!("fu-{CASE}-10-scheduled"),
                summary: "follow-up survey scheduled for 2026-03-17T09:00:00+00:00".into(),
            },
        ]
    );

    c.advance(TimeDelta::days(1));
    let (st, effects) = on_timer(&p, &st, Timer::FollowUp, now(&c)).unwrap();
    assert_eq!(
        effects,
        [Effect::Survey {
            seq: 10,
            reminder: false
        }]
    );
    c.advance(TimeDelta::days(3));
    let (st, effects) = on_timer(&p, &st, Timer::FollowUp, now(&c)).unwrap();
    assert_eq!(
        effects,
        [Effect::Survey {
            seq: 10,
            reminder: true
        }]
    );

    let feedback = CaseEvent {
        feedback: Some(Feedback {
            rating: 4,
            category: "billing".into(),
            comment: "the invoice was wrong".into(),
        }),
        ..event(CaseEventKind::FeedbackReceived, "client-ana")
    };
    let (st, effects) = on_event(&p, &feedback, 12, Some(&st), now(&c)).unwrap();
    assert_eq!(st.follow_up, FollowUp::Answered { seq: 10, rating: 4 });
    let item = FeedbackItem {
        seq: 12,
        category: "billing".into(),
        department: "Finance".into(),
        status: FeedbackStatus::Received as i32,
        rating: 4,
        owners: Vec::new(),
        updated_ms: now(&c),
        received_ms: now(&c),
    };
    assert_eq!(
        effects,
        [
            Effect::StopFamily {
                family: follow_up_family(CASE),
                position: 12,
                reason: "feedback received".into(),
            },
            Effect::FollowUpNote {
                id: format!("fu-{CASE}-12-feedback"),
                summary: "feedback recorded on the case: rating 4/5".into(),
            },
            Effect::FeedbackRouted {
                item: item.clone(),
                comment: "the invoice was wrong".into(),
            },
        ]
    );
    assert_eq!(st.feedback.as_ref(), Some(&item));

    // The department moves it on: the client is told each change, once.
    let moved = |status: FeedbackStatus, note: &str| CaseEvent {
        feedback_update: Some(herald_proto::v1::FeedbackUpdate {
            status: status as i32,
            note: note.into(),
        }),
        ..event(CaseEventKind::FeedbackUpdated, "fin-fay")
    };
    let (st, effects) = on_event(
        &p,
        &moved(FeedbackStatus::InProgress, "looking into it"),
        13,
        Some(&st),
        now(&c),
    )
    .unwrap();
    assert!(
        matches!(&effects[..], [Effect::FeedbackStatus { item, note, seq: 13 }]
            if item.status == FeedbackStatus::InProgress as i32 && note == "looking into it"),
        "{effects:?}"
    );
    let (st, effects) = on_event(
        &p,
        &moved(FeedbackStatus::InProgress, "still"),
        14,
        Some(&st),
        now(&c),
    )
    .unwrap();
    assert!(effects.is_empty(), "no change, nothing said: {effects:?}");
    let (st, _) = on_event(
        &p,
        &moved(FeedbackStatus::Resolved, "refunded"),
        15,
        Some(&st),
        now(&c),
    )
    .unwrap();
    assert_eq!(
        st.feedback.map(|f| f.status),
        Some(FeedbackStatus::Resolved as i32)
    );
}

#[test]
fn feedback_of_no_listed_category_goes_to_the_department_that_takes_the_rest() {
    let p = policies();
    assert_eq!(
        p.department_for("billing").map(|d| d.name.as_str()),
        Some("Finance")
    );
    assert_eq!(
        p.department_for("staff").map(|d| d.name.as_str()),
        Some("Client Services")
    );
    assert_eq!(
        p.department_for("").map(|d| d.name.as_str()),
        Some("Client Services")
    );
}

#[test]
fn reopening_calls_the_follow_up_off_and_lets_clocks_breach_again() {
    let (p, c) = (policies(), clock());
    let st = open_normal(&p, &c);
    let (st, _) = on_event(
        &p,
        &event(CaseEventKind::Resolved, ""),
        10,
        Some(&st),
        now(&c),
    )
    .unwrap();
    c.advance(TimeDelta::hours(2));
    let (st, effects) = on_event(
        &p,
        &event(CaseEventKind::Reopened, "client-ana"),
        11,
        Some(&st),
        now(&c),
    )
    .unwrap();
    assert!(!st.resolved);
    assert_eq!(st.follow_up, FollowUp::CalledOff { seq: 10 });
    assert_eq!(
        effects,
        [
            Effect::StopFamily {
                family: follow_up_family(CASE),
                position: 11,
                reason: "reopened by client-ana".into(),
            },
            Effect::FollowUpNote {
                id: format!("fu-{CASE}-11-off"),
                summary: "follow-up called off: the case was reopened".into(),
            },
        ]
    );
    // The response is owed again, the acknowledgement is not.
    assert_eq!(
        on_sla(
            &p,
            &breach(ClockKind::Acknowledgement),
            12,
            Some(&st),
            now(&c)
        ),
        None
    );
    let (_, effects) = on_sla(&p, &breach(ClockKind::Resolution), 12, Some(&st), now(&c)).unwrap();
    assert_eq!(notified(&effects).0.trigger, "breach:resolution");
}
