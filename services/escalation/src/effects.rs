//! Carrying out what the reducer asks for (`decide.rs`) before the state
//! that records it is written: stopping cancel families, notifying levels
//! and sending surveys (`notify.rs`), and the trail entries; and counting
//! each new level once its state is written.

use herald_durable::stop::Stop;
use herald_proto::v1::AuditStep;
use herald_runtime::audit::Entry;

use crate::metrics::EscalationLabel;

use crate::{
    Escalator,
    decide::Effect,
    machine::{Escalation, Step},
    policy::Level,
    state::CaseState,
};

/// What happened, counted once the state that records it is written.
pub(crate) struct Counted {
    level: usize,
    trigger: String,
}

impl Escalator {
    /// Carries out effects in order; fills in who was notified.
    pub(crate) async fn perform(
        &self,
        case_id: &str,
        st: &mut CaseState,
        effects: Vec<Effect>,
    ) -> anyhow::Result<Vec<Counted>> {
        let mut counted = Vec::new();
        for effect in effects {
            match effect {
                Effect::StopFamily {
                    family,
                    position,
                    reason,
                } => {
                    Stop::family(family, position, reason)
                        .send(&self.bus)
                        .await?;
                }
                Effect::Notify { esc, step } => {
                    if let Step::Notify {
                        level,
                        round,
                        client,
                    } = step
                    {
                        let notified = self
                            .notify_level(case_id, st, &esc, level, round, client)
                            .await?;
                        if let Some(cur) = st.current.as_mut() {
                            cur.notified = notified;
                        }
                        if round == 0 {
                            counted.push(Counted {
                                level,
                                trigger: esc.trigger.clone(),
                            });
                        }
                    }
                }
                Effect::Exhausted { esc } => {
                    self.audit(
                        Entry {
                            case_id: case_id.to_string(),
                            record_id: Some(format!("esc-{case_id}-{}-exhausted", esc.seq)),
                            ..Entry::new(
                                AuditStep::Escalated,
                                "every escalation level was notified and nobody acknowledged",
                            )
                        }
                        .attr("escalation", esc.seq),
                    )
                    .await?;
                }
                Effect::Stopped { esc } => {
                    self.audit(
                        Entry {
                            case_id: case_id.to_string(),
                            record_id: Some(format!("esc-{case_id}-{}-stopped", esc.seq)),
                            ..Entry::new(
                                AuditStep::EscalationStopped,
                                format!(
                                    "escalation stopped at level {} ({}): {}",
                                    esc.level + 1,
                                    self.level_of(&esc).map(Level::title).unwrap_or_default(),
                                    esc.stopped_by
                                ),
                            )
                        }
                        .attr("escalation", esc.seq)
                        .attr("level", esc.level + 1),
                    )
                    .await?;
                }
                Effect::Survey { seq, reminder } => {
                    self.send_survey(case_id, st, seq, reminder).await?;
                }
                Effect::ActionReminder {
                    action,
                    round,
                    overdue,
                } => {
                    self.remind_action(case_id, st, &action, round, overdue)
                        .await?;
                }
                Effect::FeedbackRouted { item, comment } => {
                    let told = self.relay_feedback(case_id, st, &item, &comment).await?;
                    if let Some(f) = st.feedback.as_mut() {
                        f.owners = told;
                    }
                    self.book
                        .put(&crate::feedback::book::Kept::of(case_id, st, &item))
                        .await?;
                }
                Effect::FeedbackStatus { item, note, seq } => {
                    self.feedback_moved(case_id, st, &item, &note, seq).await?;
                    self.book
                        .put(&crate::feedback::book::Kept::of(case_id, st, &item))
                        .await?;
                }
                Effect::MeetingInvite { meeting, cancel } => {
                    self.invite(case_id, st, &meeting, cancel).await?;
                }
                Effect::MeetingReminder { meeting, round, to } => {
                    self.remind_meeting(case_id, st, &meeting, round, &to)
                        .await?;
                }
                Effect::FollowUpNote { id, summary } => {
                    self.audit(Entry {
                        case_id: case_id.to_string(),
                        record_id: Some(id),
                        ..Entry::new(AuditStep::FollowUp, summary)
                    })
                    .await?;
                }
            }
        }
        Ok(counted)
    }

    pub(crate) fn count(&self, counted: &[Counted]) {
        for c in counted {
            self.metrics
                .escalations
                .get_or_create(&EscalationLabel {
                    lane: "normal".into(),
                    level: (c.level + 1).to_string(),
                    trigger: c.trigger.split(':').next().unwrap_or("").to_string(),
                })
                .inc();
        }
    }

    pub(crate) fn level_of(&self, esc: &Escalation) -> Option<&Level> {
        self.policies.named(&esc.policy)?.levels.get(esc.level)
    }

    pub(crate) async fn audit(&self, entry: Entry) -> anyhow::Result<()> {
        self.auditor.record_durable(entry).await?;
        Ok(())
    }
}
