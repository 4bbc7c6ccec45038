//! The approvers' desk (`herald.v1.intake.approvals`): the approvals still
//! open, one approval, and a decision. Only approver identities may send
//! here (the permission table says so); which approver decides is checked
//! against the approval's own list.

use herald_durable::timers::TimerChange;
use herald_proto::{
    Message,
    v1::{
        ApprovalList, ApprovalReply, ApprovalRequest, ErrorCode, Rejected, approval_reply,
        approval_request,
    },
};
use tracing::{error, info};

use super::state::Held;
use crate::{Intake, unavailable, validate::reject};

/// Compare-and-set attempts before a decision is answered "try again".
const ATTEMPTS: usize = 8;

impl Intake {
    /// Answers one request from NATS.
    pub(crate) async fn answer_approvals(&self, msg: async_nats::Message) -> ApprovalReply {
        let refused = |r: Rejected| ApprovalReply {
            result: Some(approval_reply::Result::Rejected(r)),
        };
        let Some(caller) = crate::caller(&msg) else {
            return refused(crate::unnamed_caller());
        };
        let req = match ApprovalRequest::decode(msg.payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                return refused(reject(
                    ErrorCode::Undecodable,
                    "",
                    format!("not a herald.v1.ApprovalRequest: {e}"),
                ));
            }
        };
        let result = match req.op {
            None => Err(reject(
                ErrorCode::InvalidArgument,
                "op",
                "is required: list_pending, show or decide",
            )),
            Some(approval_request::Op::ListPending(_)) => match self.approvals.open().await {
                Ok(all) => Ok(approval_reply::Result::List(ApprovalList {
                    approvals: all
                        .iter()
                        .filter(|h| !h.stage.decided())
                        .map(Held::to_wire)
                        .collect(),
                })),
                Err(e) => {
                    error!(error = %e, "approvals unreadable");
                    Err(unavailable())
                }
            },
            Some(approval_request::Op::Show(id)) => self.show_approval(&id).await,
            Some(approval_request::Op::Decide(d)) => {
                let via = format!("herald approvals, identity {caller}");
                self.decide_approval(&d.approval_id, d.approve, d.by.trim(), &d.reason, &via)
                    .await
                    .map(|h| approval_reply::Result::Approval(h.to_wire()))
            }
        };
        ApprovalReply {
            result: Some(result.unwrap_or_else(approval_reply::Result::Rejected)),
        }
    }

    async fn show_approval(&self, id: &str) -> Result<approval_reply::Result, Rejected> {
        checked_id(id, "show")?;
        match self.approvals.load(id).await {
            Ok(Some((_, h))) => Ok(approval_reply::Result::Approval(h.to_wire())),
            Ok(None) => Err(not_found("show", id)),
            Err(e) => {
                error!(error = %e, "approval unreadable");
                Err(unavailable())
            }
        }
    }

    /// Records `by`'s decision on approval `id`, made `via` a link or the
    /// command line, and wakes the loop that carries it out.
    pub(crate) async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: &str,
        via: &str,
    ) -> Result<Held, Rejected> {
        checked_id(id, "decide")?;
        for _ in 0..ATTEMPTS {
            let (seen, held) = match self.approvals.load(id).await {
                Ok(Some(found)) => found,
                Ok(None) => return Err(not_found("decide", id)),
                Err(e) => {
                    error!(error = %e, "approval unreadable");
                    return Err(unavailable());
                }
            };
            let now = herald_runtime::clock::millis(chrono::Utc::now());
            let mut next = held.decide(approve, by, reason, now)?;
            if next.reason.is_empty() {
                next.reason = format!("approved via {via}");
            } else {
                next.reason = format!("{} (via {via})", next.reason);
            }
            match self
                .approvals
                .swap(&seen, &next, TimerChange::At(id.to_string(), now))
                .await
            {
                Ok(true) => {
                    info!(approval = id, approve, "approval decided");
                    return Ok(next);
                }
                Ok(false) => continue,
                Err(e) => {
                    error!(error = %e, "decision not stored");
                    return Err(unavailable());
                }
            }
        }
        Err(unavailable())
    }
}

fn checked_id(id: &str, op: &str) -> Result<(), Rejected> {
    if herald_proto::subjects::is_subject_token(id) {
        Ok(())
    } else {
        Err(reject(
            ErrorCode::InvalidArgument,
            format!("{op}.approval_id"),
            "is not an approval id (the held notification's id, ntf_…)",
        ))
    }
}

fn not_found(op: &str, id: &str) -> Rejected {
    reject(
        ErrorCode::NotFound,
        format!("{op}.approval_id"),
        format!("no approval {id:?} (decided ones are kept 30 days)"),
    )
}
