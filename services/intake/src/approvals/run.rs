//! What the approvals timer does: documents a hold and asks the approvers,
//! times a wait out, and carries out each decision (the release with its
//! grant, the trail record, the requester told). Each step is safe to
//! repeat: a timer whose holder died fires again, the trail records and
//! messages carry fixed ids and idempotency keys, and the release is
//! published under the notification's own id.

use std::collections::BTreeMap;

use herald_durable::timers::{Due, TimerChange};
use herald_proto::{
    Message,
    v1::{
        AcceptedNotification, AuditRecord, AuditStep, CommunicationType, Confidentiality,
        ErrorCode, IntakeReply, Lane, NotificationRequest, Priority, Recipient, intake_reply,
    },
};
use herald_runtime::{audit::Entry, clock::millis};
use tracing::{error, info, warn};

use super::{
    links::Link,
    state::{Held, Stage},
};
use crate::Intake;

/// The approver's message: what is held, and the links that decide it.
pub const APPROVAL_REQUEST: &str = "approval_request";
/// The requester's message: what became of it.
pub const APPROVAL_OUTCOME: &str = "approval_outcome";

/// Passes over one approval before its timer is left to fire again.
const PASSES: usize = 8;

impl Intake {
    /// Handles a batch of due approval timers; returns those finished.
    pub(crate) async fn fire_approvals(&self, batch: Vec<Due>) -> Vec<String> {
        let mut done = Vec::with_capacity(batch.len());
        for due in batch {
            match self.step_approval(&due.id).await {
                Ok(()) => done.push(due.id),
                Err(e) => {
                    warn!(approval = %due.id, error = %e, "approval step failed; it is tried again")
                }
            }
        }
        done
    }

    async fn step_approval(&self, id: &str) -> anyhow::Result<()> {
        let waited = humantime::format_duration(self.approvals.timeout()).to_string();
        for _ in 0..PASSES {
            let Some((seen, held)) = self.approvals.load(id).await? else {
                return Ok(());
            };
            if held.done {
                return Ok(());
            }
            let now = millis(chrono::Utc::now());
            let (next, change) = match held.stage {
                Stage::Held => {
                    self.document_hold(&held, None).await?;
                    self.ask_approvers(&held).await?;
                    let at = TimerChange::At(id.to_string(), held.deadline_ms);
                    (
                        Held {
                            stage: Stage::Waiting,
                            ..held
                        },
                        at,
                    )
                }
                Stage::Waiting => match held.time_out(now, &waited) {
                    Some(out) => (out, TimerChange::At(id.to_string(), now)),
                    None => {
                        let at = TimerChange::At(id.to_string(), held.deadline_ms);
                        (held, at)
                    }
                },
                Stage::Approved | Stage::Denied | Stage::TimedOut => {
                    self.follow_decision(&held).await?;
                    (
                        Held { done: true, ..held },
                        TimerChange::Cancel(id.to_string()),
                    )
                }
            };
            if !self.approvals.swap(&seen, &next, change).await? {
                continue;
            }
            if next.done {
                self.approvals.forget_notification(id).await?;
                return Ok(());
            }
            if !next.stage.decided() {
                return Ok(());
            }
        }
        anyhow::bail!("approval {id} kept changing under this step")
    }

    /// The trail's "accepted" (which came with the notification, when
    /// given) and "awaiting approval" records, in one write whose id makes
    /// a repeat a duplicate JetStream drops.
    pub(crate) async fn document_hold(
        &self,
        held: &Held,
        accepted: Option<AuditRecord>,
    ) -> anyhow::Result<()> {
        let accepted = match accepted {
            Some(a) => Some(a),
            None => match self.approvals.notification(&held.id).await? {
                Some(bytes) => AcceptedNotification::decode(&bytes[..])?.accepted,
                None => None,
            },
        };
        let entry = Entry {
            notification_id: held.id.clone(),
            case_id: held.case_id.clone(),
            contact_id: held.contact_ids.first().cloned().unwrap_or_default(),
            lane: Lane::try_from(held.lane).unwrap_or_default(),
            caller: held.caller.clone(),
            record_id: Some(format!("{}-awaiting-approval", held.id)),
            ..Entry::new(
                AuditStep::AwaitingApproval,
                format!(
                    "held for approval of first contact with {} (rule {}); approvers {}",
                    held.contact_ids.join(", "),
                    held.rule,
                    held.approvers.join(", ")
                ),
            )
        }
        .attr("rule", &held.rule)
        .attr("contacts", held.contact_ids.join(","))
        .attr("matter", &held.matter)
        .attr("approvers", held.approvers.join(","))
        .attr(
            "deadline",
            herald_runtime::clock::from_millis(held.deadline_ms).to_rfc3339(),
        );
        let ack = self
            .auditor
            .record_after(accepted.into_iter().collect(), vec![entry])
            .await?;
        herald_runtime::bus::confirm(herald_proto::subjects::audit_all().to_string(), ack).await?;
        Ok(())
    }

    /// Sends each approver the request, with their own links.
    async fn ask_approvers(&self, held: &Held) -> anyhow::Result<()> {
        let names = self.names_of(&held.contact_ids).await?;
        let deadline = herald_runtime::clock::from_millis(held.deadline_ms)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string();
        let mut asked = 0;
        for approver in &held.approvers {
            let mut params = BTreeMap::from([
                ("approval_id".to_string(), held.id.clone()),
                ("recipients".to_string(), names.clone()),
                ("reference".to_string(), reference(held)),
                (
                    "kind".to_string(),
                    held.communication_type.replace('_', " "),
                ),
                ("requested_by".to_string(), requested_by(held)),
                ("deadline".to_string(), deadline.clone()),
            ]);
            if let Some(links) = self.approvals.links() {
                for (name, approve) in [("approve_url", true), ("deny_url", false)] {
                    let link = Link {
                        approval_id: held.id.clone(),
                        by: approver.clone(),
                        approve,
                    };
                    params.insert(name.into(), links.url(&link));
                }
            }
            let req = internal(
                format!("approval-ask:{}:{approver}", held.id),
                approver,
                APPROVAL_REQUEST,
                params,
                held,
            );
            if self.submit_internal(req).await? {
                asked += 1;
            }
        }
        if asked == 0 {
            error!(approval = %held.id, "no approver could be asked; the approval will time out");
        }
        Ok(())
    }

    /// The release (for an approval), the trail record and the requester
    /// told.
    async fn follow_decision(&self, held: &Held) -> anyhow::Result<()> {
        let lane = Lane::try_from(held.lane).unwrap_or_default();
        let mut released = false;
        if held.stage == Stage::Approved {
            self.approvals
                .grant(&held.contact_ids, &held.matter)
                .await?;
            match self.approvals.notification(&held.id).await? {
                Some(bytes) => {
                    let mut n = AcceptedNotification::decode(&bytes[..])?;
                    // The trail has it since the hold.
                    n.accepted = None;
                    self.bus
                        .publish_durable(
                            herald_proto::subjects::notify_accepted(lane).to_string(),
                            &n,
                            Some(&held.id),
                        )
                        .await?;
                    released = true;
                }
                None => {
                    error!(approval = %held.id, "the held notification is gone; nothing released")
                }
            }
        }
        let by = if held.decided_by.is_empty() {
            "nobody".to_string()
        } else {
            held.decided_by.clone()
        };
        let summary = match held.stage {
            Stage::Approved if released => format!("first contact approved by {by}: released"),
            Stage::Approved => format!(
                "first contact approved by {by}, but the held notification had expired: nothing sent"
            ),
            Stage::Denied => format!("first contact denied by {by}: nothing sent"),
            _ => "refused: nobody decided in time, nothing sent".to_string(),
        };
        let entry = Entry {
            notification_id: held.id.clone(),
            case_id: held.case_id.clone(),
            contact_id: held.contact_ids.first().cloned().unwrap_or_default(),
            lane,
            caller: held.caller.clone(),
            record_id: Some(format!("{}-approval-decided", held.id)),
            ..Entry::new(AuditStep::ApprovalDecided, summary)
        }
        .attr("decision", held.stage.name())
        .attr("decided_by", &by)
        .attr("reason", &held.reason)
        .attr("rule", &held.rule)
        .attr("contacts", held.contact_ids.join(","))
        .attr("matter", &held.matter);
        self.auditor.record_durable(entry).await?;
        if let Some(who) = &held.tell {
            let outcome = match held.stage {
                Stage::Approved => format!("approved by {by}; it is on its way"),
                Stage::Denied => format!("denied by {by}; nothing was sent"),
                _ => "not decided in time, so it was not sent".to_string(),
            };
            let params = BTreeMap::from([
                (
                    "recipients".to_string(),
                    self.names_of(&held.contact_ids).await?,
                ),
                ("reference".to_string(), reference(held)),
                ("outcome".to_string(), outcome),
                ("reason".to_string(), held.reason.clone()),
            ]);
            let req = internal(
                format!("approval-outcome:{}", held.id),
                who,
                APPROVAL_OUTCOME,
                params,
                held,
            );
            self.submit_internal(req).await?;
        }
        info!(approval = %held.id, decision = held.stage.name(), "approval carried out");
        Ok(())
    }

    /// Submits one of the approvals' own messages (never held itself):
    /// whether it was accepted; an error if intake could not store it now.
    async fn submit_internal(&self, req: NotificationRequest) -> anyhow::Result<bool> {
        let reply: IntakeReply = self.submit_as(req, Lane::Normal, "intake", false).await;
        match reply.result {
            Some(intake_reply::Result::Accepted(_)) => Ok(true),
            Some(intake_reply::Result::Rejected(r)) if r.code == ErrorCode::Unavailable as i32 => {
                anyhow::bail!("could not be stored: {}", r.message)
            }
            Some(intake_reply::Result::Rejected(r)) => {
                warn!(field = %r.field, code = r.code, "an approval message was refused");
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// The names of `ids` as the directory has them (ids where it has
    /// none), for the approver's and requester's messages.
    async fn names_of(&self, ids: &[String]) -> anyhow::Result<String> {
        let found = self.directory.get_many(ids).await?;
        Ok(ids
            .iter()
            .zip(found)
            .map(|(id, c)| c.map(|c| c.name).unwrap_or_else(|| id.clone()))
            .collect::<Vec<_>>()
            .join(", "))
    }
}

fn reference(held: &Held) -> String {
    if held.case_id.is_empty() {
        held.id.clone()
    } else {
        held.case_id.clone()
    }
}

fn requested_by(held: &Held) -> String {
    if held.requester.is_empty() {
        held.caller.clone()
    } else {
        held.requester.clone()
    }
}

fn internal(
    key: String,
    to: &str,
    template: &str,
    params: BTreeMap<String, String>,
    held: &Held,
) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key,
        communication_type: CommunicationType::ServiceUpdate as i32,
        priority: Priority::High as i32,
        // Names and ids, never the held message's content.
        confidentiality: Confidentiality::Standard as i32,
        recipients: vec![Recipient::contact(to)],
        template_id: template.into(),
        params,
        case_id: held.case_id.clone(),
        requester: "intake approvals".into(),
        ..Default::default()
    }
}
