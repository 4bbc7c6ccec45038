//! `herald approvals list|show|approve|deny`: the first contacts an
//! approval rule holds (SOP 004), as an approver sees and decides them.
//! Connects as an approver identity (`approver` unless `--identity` says
//! otherwise).

use clap::Subcommand;
use herald_config::Config;
use herald_proto::subjects;
use herald_proto::v1::{
    Approval, ApprovalDecision, ApprovalReply, ApprovalRequest, approval_reply,
    approval_request::Op,
};

use crate::{Failure, send};

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Every first contact waiting for a decision, oldest first.
    List,
    /// One approval (the held notification's id), decided or not.
    Show { id: String },
    /// Let the held notification go out, as one of its approvers.
    Approve {
        id: String,
        /// The approver deciding, by contact id.
        #[arg(long)]
        by: String,
        /// A note for the trail and the requester.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse it: nothing is sent, and the requester is told why.
    Deny {
        id: String,
        #[arg(long)]
        by: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(cfg: &Config, cmd: ApprovalsCommand) -> Result<(), Failure> {
    let op = match cmd {
        ApprovalsCommand::List => Op::ListPending(true),
        ApprovalsCommand::Show { id } => Op::Show(id),
        ApprovalsCommand::Approve { id, by, reason } => Op::Decide(ApprovalDecision {
            approval_id: id,
            approve: true,
            by,
            reason: reason.unwrap_or_default(),
        }),
        ApprovalsCommand::Deny { id, by, reason } => Op::Decide(ApprovalDecision {
            approval_id: id,
            approve: false,
            by,
            reason,
        }),
    };
    let deciding = matches!(op, Op::Decide(_));
    let req = ApprovalRequest { op: Some(op) };
    let reply: ApprovalReply = send::ask_intake(cfg, subjects::INTAKE_APPROVALS, &req).await?;
    match reply.result {
        Some(approval_reply::Result::List(list)) => {
            if list.approvals.is_empty() {
                println!("nothing is waiting for approval");
            }
            for a in &list.approvals {
                println!(
                    "{:<32} {:<10} {:<20} to {} about {} (approvers {}; refused after {})",
                    a.approval_id,
                    a.state,
                    a.communication_type,
                    a.contact_ids.join(","),
                    a.matter,
                    a.approvers.join(","),
                    time(&a.deadline)
                );
            }
            Ok(())
        }
        Some(approval_reply::Result::Approval(a)) if deciding => {
            println!(
                "{} {}: {}",
                a.approval_id,
                a.state,
                if a.state == "approved" {
                    "the message goes out now"
                } else {
                    "nothing is sent; the requester is told"
                }
            );
            Ok(())
        }
        Some(approval_reply::Result::Approval(a)) => {
            show(&a);
            Ok(())
        }
        Some(approval_reply::Result::Rejected(r)) => Err(send::rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

fn time(t: &Option<herald_proto::Timestamp>) -> String {
    match t {
        None => "-".into(),
        Some(t) => chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(Some(t)))
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
    }
}

fn show(a: &Approval) {
    for (label, value) in [
        ("approval", a.approval_id.clone()),
        ("state", a.state.clone()),
        ("rule", a.rule.clone()),
        ("first contact with", a.contact_ids.join(", ")),
        ("matter", a.matter.clone()),
        ("type", a.communication_type.clone()),
        ("template", a.template_id.clone()),
        (
            "requested by",
            format!("{} (via {})", a.requester, a.caller),
        ),
        ("requested at", time(&a.requested_at)),
        ("approvers", a.approvers.join(", ")),
        ("deadline", time(&a.deadline)),
        ("decided by", a.decided_by.clone()),
        ("decided at", time(&a.decided_at)),
        ("reason", a.reason.clone()),
    ] {
        if !value.is_empty() && value != "-" {
            println!("{label:<20} {value}");
        }
    }
}
