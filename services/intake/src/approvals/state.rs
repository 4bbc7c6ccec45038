//! One held first contact as intake keeps it, and the steps it may take:
//! pure, so that every transition (and every refusal of one) is tested
//! here without Redis.
//!
//! ```text
//!   held ──ask approvers──▶ waiting ──approve──▶ approved ─┐
//!                              │ ├────deny─────▶ denied ───┼─▶ done
//!                              │ └─deadline────▶ timed_out ┘
//! ```
//!
//! A decision only changes the state; what follows from it (the release
//! of the notification, the trail record, the requester told) is done by
//! the timer loop from the stored state, so a crash between the decision
//! and its effects leaves them to the next pass, never undone or lost.

use herald_proto::v1::{Approval, ErrorCode, Rejected};
use serde::{Deserialize, Serialize};

use crate::validate::reject;

/// Where a held notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stored; the approvers are not asked yet.
    Held,
    /// The approvers were asked; waiting for one of them.
    Waiting,
    Approved,
    Denied,
    TimedOut,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Held | Stage::Waiting => "pending",
            Stage::Approved => "approved",
            Stage::Denied => "denied",
            Stage::TimedOut => "timed_out",
        }
    }

    pub fn decided(self) -> bool {
        matches!(self, Stage::Approved | Stage::Denied | Stage::TimedOut)
    }
}

/// A held first contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The notification's id, which is the approval's too.
    pub id: String,
    pub rule: String,
    /// The recipients it is a first contact with.
    pub contact_ids: Vec<String>,
    pub matter: String,
    pub approvers: Vec<String>,
    /// The contact told the outcome (the requester or the responsible
    /// staff member, when the directory knows them).
    pub tell: Option<String>,
    pub requester: String,
    pub caller: String,
    pub case_id: String,
    pub communication_type: String,
    pub template_id: String,
    pub lane: i32,
    pub requested_at_ms: i64,
    pub deadline_ms: i64,
    pub stage: Stage,
    #[serde(default)]
    pub decided_by: String,
    #[serde(default)]
    pub decided_at_ms: i64,
    #[serde(default)]
    pub reason: String,
    /// What follows from the decision is done.
    #[serde(default)]
    pub done: bool,
}

impl Held {
    /// The decision of `by` at `now_ms`, if the approval is still open and
    /// `by` is one of its approvers.
    pub fn decide(
        &self,
        approve: bool,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Held, Rejected> {
        if self.stage.decided() {
            return Err(reject(
                ErrorCode::InvalidState,
                "decide.approval_id",
                format!(
                    "{} was already {}{}",
                    self.id,
                    self.stage.name().replace('_', " "),
                    if self.decided_by.is_empty() {
                        String::new()
                    } else {
                        format!(" by {}", self.decided_by)
                    }
                ),
            ));
        }
        if !self.approvers.iter().any(|a| a == by) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "decide.by",
                format!(
                    "{by:?} is not an approver of {} (its approvers: {})",
                    self.id,
                    self.approvers.join(", ")
                ),
            ));
        }
        let reason = reason.trim();
        if !approve && reason.is_empty() {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "decide.reason",
                "is required to deny: the requester is told why",
            ));
        }
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "decide.reason",
                "must be at most 500 printable characters",
            ));
        }
        Ok(Held {
            stage: if approve {
                Stage::Approved
            } else {
                Stage::Denied
            },
            decided_by: by.to_string(),
            decided_at_ms: now_ms,
            reason: reason.to_string(),
            ..self.clone()
        })
    }

    /// The refusal of a wait that ran out, if it has by `now_ms`.
    pub fn time_out(&self, now_ms: i64, waited: &str) -> Option<Held> {
        (!self.stage.decided() && now_ms >= self.deadline_ms).then(|| Held {
            stage: Stage::TimedOut,
            decided_at_ms: now_ms,
            reason: format!("nobody decided within {waited}"),
            ..self.clone()
        })
    }

    /// As the contract shows it.
    pub fn to_wire(&self) -> Approval {
        let at = |ms: i64| {
            (ms > 0).then(|| {
                herald_proto::timestamp(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
                )
            })
        };
        Approval {
            approval_id: self.id.clone(),
            state: self.stage.name().into(),
            rule: self.rule.clone(),
            contact_ids: self.contact_ids.clone(),
            matter: self.matter.clone(),
            approvers: self.approvers.clone(),
            communication_type: self.communication_type.clone(),
            template_id: self.template_id.clone(),
            requester: self.requester.clone(),
            caller: self.caller.clone(),
            requested_at: at(self.requested_at_ms),
            deadline: at(self.deadline_ms),
            decided_by: self.decided_by.clone(),
            decided_at: at(self.decided_at_ms),
            reason: self.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Held {
        Held {
            id: "ntf_1".into(),
            rule: "parents".into(),
            contact_ids: vec!["parent-pat".into()],
            matter: "CASE-1".into(),
            approvers: vec!["sup-ana".into(), "sup-ben".into()],
            tell: Some("teacher-tom".into()),
            requester: "teacher-tom".into(),
            caller: "publisher".into(),
            case_id: "CASE-1".into(),
            communication_type: "service_update".into(),
            template_id: "service_update".into(),
            lane: 1,
            requested_at_ms: 1_000,
            deadline_ms: 5_000,
            stage: Stage::Waiting,
            decided_by: String::new(),
            decided_at_ms: 0,
            reason: String::new(),
            done: false,
        }
    }

    #[test]
    fn an_approver_decides_once_and_nobody_else_can() {
        let h = held();
        let r = h.decide(true, "teacher-tom", "", 2_000).unwrap_err();
        assert_eq!(
            (r.code, r.field.as_str()),
            (ErrorCode::InvalidArgument as i32, "decide.by")
        );
        let approved = h.decide(true, "sup-ben", "", 2_000).unwrap();
        assert_eq!(approved.stage, Stage::Approved);
        assert_eq!(approved.decided_by, "sup-ben");
        let again = approved.decide(false, "sup-ana", "no", 3_000).unwrap_err();
        assert_eq!(again.code, ErrorCode::InvalidState as i32);
        assert!(
            again.message.contains("already approved by sup-ben"),
            "{}",
            again.message
        );
    }

    #[test]
    fn a_denial_says_why() {
        let r = held().decide(false, "sup-ana", "  ", 2_000).unwrap_err();
        assert_eq!(r.field, "decide.reason");
        let denied = held().decide(false, "sup-ana", "not yet", 2_000).unwrap();
        assert_eq!(
            (denied.stage, denied.reason.as_str()),
            (Stage::Denied, "not yet")
        );
    }

    #[test]
    fn a_wait_times_out_at_its_deadline_and_never_after_a_decision() {
        assert!(held().time_out(4_999, "1h").is_none());
        let out = held().time_out(5_000, "1h").unwrap();
        assert_eq!(out.stage, Stage::TimedOut);
        assert!(out.reason.contains("within 1h"));
        let approved = held().decide(true, "sup-ana", "", 2_000).unwrap();
        assert!(approved.time_out(9_000, "1h").is_none());
        // A timed-out approval can no longer be approved.
        assert!(out.decide(true, "sup-ana", "", 9_000).is_err());
    }

    #[test]
    fn the_wire_form_names_the_state() {
        let w = held().to_wire();
        assert_eq!(w.state, "pending");
        assert!(w.decided_at.is_none());
        assert_eq!(w.deadline.map(|t| t.seconds), Some(5));
    }
}
