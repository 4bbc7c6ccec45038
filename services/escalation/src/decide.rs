//! What a case event, a breach or a due timer does to a case: the new
//! state and the effects to carry out before it is written. Pure functions
//! of the stored state, the message, the policies and the time, so that
//! every rule is tested without servers; the service feeds them from the
//! stream (`events.rs`) and the timers (`firing.rs`) and carries out what
//! they return (`effects.rs`).

use herald_proto::cancel_keys::{escalation_family, follow_up_family};
use herald_proto::v1::{
    CaseEvent, CaseEventKind, ClockKind, FeedbackStatus, Priority, SlaEvent, SlaEventKind,
};
use herald_runtime::clock::{from_millis, millis};

use crate::{
    actions::{self, Action},
    machine::{Escalation, FollowStep, FollowUp, Step},
    meetings::{self, Change, Meeting},
    policy::{Policies, Policy},
    state::{CaseState, FeedbackItem, Timer},
};

/// Something to do before a new state is written. Each is idempotent, so
/// an attempt that loses the swap (or a crash) may do it again harmlessly.
#[derive(Debug, PartialEq)]
pub(crate) enum Effect {
    /// Notify a level (and the client on a new level).
    Notify {
        esc: Escalation,
        step: Step,
    },
    Exhausted {
        esc: Escalation,
    },
    Stopped {
        esc: Escalation,
    },
    /// Stop a cancel family before `position`.
    StopFamily {
        family: String,
        position: u64,
        reason: String,
    },
    Survey {
        seq: u64,
        reminder: bool,
    },
    /// A follow-up step worth a line in the trail.
    FollowUpNote {
        id: String,
        summary: String,
    },
    /// Relay new feedback to its department and tell the client it
    /// arrived.
    FeedbackRouted {
        item: FeedbackItem,
        comment: String,
    },
    /// Tell the client where their feedback now stands.
    FeedbackStatus {
        item: FeedbackItem,
        note: String,
        seq: u64,
    },
    /// Remind an action's owner (`round`: which reminder, from 1).
    ActionReminder {
        action: Action,
        round: u32,
        overdue: bool,
    },
    /// Send every attendee the meeting's invitation as it now stands, or
    /// its cancellation.
    MeetingInvite {
        meeting: Meeting,
        cancel: bool,
    },
    /// Remind these attendees of the meeting (`round`: which reminder time).
    MeetingReminder {
        meeting: Meeting,
        round: u32,
        to: Vec<String>,
    },
}

/// The new state and what to do for a lifecycle event at stream position
/// `seq`; None when the event changes nothing here.
pub(crate) fn on_event(
    policies: &Policies,
    ev: &CaseEvent,
    seq: u64,
    stored: Option<&CaseState>,
    now: i64,
) -> Option<(CaseState, Vec<Effect>)> {
    let kind = ev.kind();
    let at = ev
        .occurred_at
        .as_ref()
        .map(|t| millis(herald_proto::system_time(Some(t)).into()))
        .unwrap_or(now);
    let who = if ev.actor.is_empty() {
        kind.name().to_string()
    } else {
        format!("{} by {}", kind.name(), ev.actor)
    };
    let mut effects = Vec::new();
    let mut st = match (kind, stored) {
        (CaseEventKind::Opened, None) => {
            let d = ev.details.clone().unwrap_or_default();
            let mut st = CaseState {
                client: d.client_contact_id.clone(),
                staff: d.responsible_staff.clone(),
                team: d.team.clone(),
                reference: d.reference.clone(),
                priority: d.priority,
                ..Default::default()
            };
            if let Some(policy) = policy_for(policies, &st)
                && policy.escalate_at_open.contains(&d.priority())
            {
                start(&mut st, policy, seq, "critical", 0, now, &mut effects);
            }
            return Some((st, effects));
        }
        (CaseEventKind::Opened, Some(_)) | (_, None) => return None,
        (_, Some(s)) => s.clone(),
    };
    match kind {
        CaseEventKind::Updated => {
            let d = ev.details.clone().unwrap_or_default();
            if !d.responsible_staff.is_empty() {
                st.staff = d.responsible_staff;
            }
            if !d.team.is_empty() {
                st.team = d.team;
            }
            if !d.reference.is_empty() {
                st.reference = d.reference;
            }
            if d.priority != 0 {
                st.priority = d.priority;
            }
        }
        CaseEventKind::Acknowledged | CaseEventKind::Responded | CaseEventKind::Resolved => {
            st.answer(match kind {
                CaseEventKind::Acknowledged => &[ClockKind::Acknowledgement],
                CaseEventKind::Responded => &[ClockKind::Acknowledgement, ClockKind::Response],
                _ => &[
                    ClockKind::Acknowledgement,
                    ClockKind::Response,
                    ClockKind::Resolution,
                ],
            });
            effects.push(Effect::StopFamily {
                family: escalation_family(&ev.case_id),
                position: seq,
                reason: who.clone(),
            });
            if let Some(esc) = st.current.as_mut()
                && esc.stop(at.max(esc.started_ms), &who)
            {
                effects.push(Effect::Stopped { esc: esc.clone() });
            }
            if kind == CaseEventKind::Resolved {
                st.resolved = true;
                st.follow_up = FollowUp::resolved(seq, at, &policies.follow_up);
                effects.push(Effect::FollowUpNote {
                    id: format!("fu-{}-{seq}-scheduled", ev.case_id),
                    summary: format!(
                        "follow-up survey scheduled for {}",
                        from_millis(st.follow_up.next_due().unwrap_or(at)).to_rfc3339()
                    ),
                });
            }
        }
        CaseEventKind::Reopened => {
            st.reopen();
            effects.push(Effect::StopFamily {
                family: follow_up_family(&ev.case_id),
                position: seq,
                reason: who.clone(),
            });
            if st.follow_up.call_off() {
                effects.push(Effect::FollowUpNote {
                    id: format!("fu-{}-{seq}-off", ev.case_id),
                    summary: "follow-up called off: the case was reopened".into(),
                });
            }
        }
        CaseEventKind::FeedbackReceived => {
            let rating = ev.feedback.as_ref().map(|f| f.rating).unwrap_or(0);
            effects.push(Effect::StopFamily {
                family: follow_up_family(&ev.case_id),
                position: seq,
                reason: "feedback received".into(),
            });
            st.follow_up.answered(rating);
            effects.push(Effect::FollowUpNote {
                id: format!("fu-{}-{seq}-feedback", ev.case_id),
                summary: format!("feedback recorded on the case: rating {rating}/5"),
            });
            let category = ev
                .feedback
                .as_ref()
                .map(|f| f.category.clone())
                .unwrap_or_default();
            let item = FeedbackItem {
                seq,
                department: policies
                    .department_for(&category)
                    .map(|d| d.name.clone())
                    .unwrap_or_default(),
                category,
                status: FeedbackStatus::Received as i32,
                rating,
                owners: Vec::new(),
                updated_ms: at,
                received_ms: at,
            };
            st.feedback = Some(item.clone());
            effects.push(Effect::FeedbackRouted {
                item,
                comment: ev
                    .feedback
                    .as_ref()
                    .map(|f| f.comment.clone())
                    .unwrap_or_default(),
            });
        }
        CaseEventKind::InteractionLogged => {
            actions::add(&mut st.actions, actions::logged(ev));
        }
        CaseEventKind::ActionDone => {
            let id = ev.action_done.as_ref().map(|d| d.action_id.as_str());
            let done = id.is_some_and(|id| actions::finish(&mut st.actions, id));
            if !done {
                effects.push(Effect::FollowUpNote {
                    id: format!("act-{}-{}-unknown", ev.case_id, ev.event_id),
                    summary: format!(
                        "{} names no open action of this case",
                        id.unwrap_or_default()
                    ),
                });
            }
        }
        CaseEventKind::FeedbackUpdated => {
            let update = ev.feedback_update.clone().unwrap_or_default();
            match st.feedback.as_mut() {
                Some(item) if item.status != update.status => {
                    item.status = update.status;
                    item.updated_ms = at;
                    effects.push(Effect::FeedbackStatus {
                        item: item.clone(),
                        note: update.note,
                        seq,
                    });
                }
                Some(_) => {}
                None => effects.push(Effect::FollowUpNote {
                    id: format!("fb-{}-{seq}-none", ev.case_id),
                    summary: "a feedback update, but the case has no feedback".into(),
                }),
            }
        }
        CaseEventKind::EscalateNow => {
            let active = st.current.as_ref().is_some_and(Escalation::is_active);
            if active {
                let mut esc = st.current.clone()?;
                let policy = policies.named(&esc.policy).or(policy_for(policies, &st))?;
                let step = esc.escalate_now(policy, now);
                st.current = Some(esc.clone());
                effects.push(Effect::Notify { esc, step });
            } else {
                let policy = policy_for(policies, &st)?;
                start(
                    &mut st,
                    policy,
                    seq,
                    "request",
                    policy.on_request,
                    now,
                    &mut effects,
                );
            }
        }
        CaseEventKind::MeetingScheduled
        | CaseEventKind::MeetingRescheduled
        | CaseEventKind::MeetingCancelled
        | CaseEventKind::MeetingAnswered => {
            match meetings::apply(&mut st.meetings, ev, &policies.meeting_reminders, now) {
                Some(Change::Invite(meeting)) => effects.push(Effect::MeetingInvite {
                    meeting,
                    cancel: false,
                }),
                Some(Change::Cancel(meeting)) => effects.push(Effect::MeetingInvite {
                    meeting,
                    cancel: true,
                }),
                Some(Change::Unknown(id)) => effects.push(Effect::FollowUpNote {
                    id: format!("mtg-{}-{}-unknown", ev.case_id, ev.event_id),
                    summary: format!("{id} names no meeting of this case that is still on"),
                }),
                Some(Change::Answered) | None => {}
            }
            st.meeting_next_ms = meetings::next_due(&st.meetings, &policies.meeting_reminders);
        }
        _ => return None,
    }
    Some((st, effects))
}

/// A breach starts the case's policy, unless one is under way or the
/// clock was answered meanwhile. Warnings are for dashboards and other
/// systems, not for escalation.
pub(crate) fn on_sla(
    policies: &Policies,
    ev: &SlaEvent,
    seq: u64,
    stored: Option<&CaseState>,
    now: i64,
) -> Option<(CaseState, Vec<Effect>)> {
    if ev.kind() != SlaEventKind::Breach {
        return None;
    }
    let mut st = stored?.clone();
    let clock = ev.clock();
    if st.is_answered(clock) || st.current.as_ref().is_some_and(Escalation::is_active) {
        return None;
    }
    let policy = policy_for(policies, &st)?;
    let mut effects = Vec::new();
    let trigger = format!("breach:{}", clock.name());
    let level = policy.breach_level(clock);
    start(&mut st, policy, seq, &trigger, level, now, &mut effects);
    Some((st, effects))
}

/// A due timer: the escalation's next notice or its end, the follow-up's
/// survey or reminder, or the reminders of open actions. The state comes back even
/// when nothing was due, for the service writes it anyway. An error when
/// the escalation's policy is gone from the configuration.
pub(crate) fn on_timer(
    policies: &Policies,
    stored: &CaseState,
    which: Timer,
    now: i64,
) -> anyhow::Result<(CaseState, Vec<Effect>)> {
    let mut st = stored.clone();
    let mut effects = Vec::new();
    if which == Timer::Meetings {
        let reminders = &policies.meeting_reminders;
        for (meeting, to) in meetings::due(&mut st.meetings, reminders, now) {
            let round = meeting.reminders_passed;
            effects.push(Effect::MeetingReminder { meeting, round, to });
        }
        st.meeting_next_ms = meetings::next_due(&st.meetings, reminders);
    } else if which == Timer::Actions {
        for (action, round) in actions::due(&mut st.actions, now) {
            let overdue = action.overdue(now);
            effects.push(Effect::ActionReminder {
                action,
                round,
                overdue,
            });
        }
    } else if which == Timer::Escalation {
        if let Some(mut esc) = st.current.clone() {
            let policy = policies
                .named(&esc.policy)
                .or(policy_for(policies, &st))
                .ok_or_else(|| anyhow::anyhow!("no escalation policy {}", esc.policy))?;
            match esc.on_timeout(policy, now) {
                Step::Wait => {}
                Step::Exhausted => effects.push(Effect::Exhausted { esc: esc.clone() }),
                step => effects.push(Effect::Notify {
                    esc: esc.clone(),
                    step,
                }),
            }
            st.current = Some(esc);
        }
    } else {
        match st.follow_up.on_timer(now, &policies.follow_up) {
            FollowStep::Survey { seq } => effects.push(Effect::Survey {
                seq,
                reminder: false,
            }),
            FollowStep::Reminder { seq } => effects.push(Effect::Survey {
                seq,
                reminder: true,
            }),
            FollowStep::Wait => {}
        }
    }
    Ok((st, effects))
}

/// A new escalation of the case under `policy` at `level`, its first
/// notice due at once.
fn start(
    st: &mut CaseState,
    policy: &Policy,
    seq: u64,
    trigger: &str,
    level: usize,
    now: i64,
    effects: &mut Vec<Effect>,
) {
    let (esc, step) = Escalation::start(policy, seq, trigger, level, now);
    st.escalations += 1;
    st.current = Some(esc.clone());
    effects.push(Effect::Notify { esc, step });
}

fn policy_for<'p>(policies: &'p Policies, st: &CaseState) -> Option<&'p Policy> {
    policies.for_case(
        &st.team,
        Priority::try_from(st.priority).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
