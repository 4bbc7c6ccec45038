//! `herald feedback update|show|list`: a client's feedback as the
//! department handling it moves it on (SOP 000 §5: the client is told what
//! became of it), where one case's stands, and every case's feedback by
//! department, status and date, as the escalation service keeps it
//! (`herald.v1.escalation.feedback`).

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{
        CaseEvent, CaseEventKind, FeedbackListReply, FeedbackListRequest, FeedbackStatus,
        FeedbackUpdate, feedback_list_reply,
    },
};

use super::{EventArgs, ShowArgs, event, submit_event, usage};
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum FeedbackCommand {
    /// Move a case's feedback on: the client is told.
    Update(UpdateArgs),
    /// Where a case's feedback stands (with the rest of the case).
    Show(ShowArgs),
    /// Every case's feedback, oldest first: by department, status and date.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this department's (its name, as in [[feedback.department]]).
    #[arg(long)]
    department: Option<String>,
    /// Only feedback that stands here: received, in-progress or resolved.
    #[arg(long)]
    status: Option<String>,
    /// Received on or after (a date or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Received on or before (a date, its whole day, or RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// One JSON object a line.
    #[arg(long)]
    json: bool,
}

/// `text` as an instant: RFC 3339, or a date's first (or, with `end`,
/// last) millisecond in UTC.
fn instant(text: &str, flag: &str, end: bool) -> Result<herald_proto::Timestamp, Failure> {
    let t = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| {
                if end {
                    d.and_hms_milli_opt(23, 59, 59, 999)
                } else {
                    d.and_hms_opt(0, 0, 0)
                }
                .map(|t| t.and_utc())
            }),
    };
    t.map(|t| herald_proto::timestamp(t.into()))
        .ok_or_else(|| usage(format!("{flag} {text:?}: a date (YYYY-MM-DD) or RFC 3339")))
}

async fn list(cfg: &Config, a: ListArgs) -> Result<(), Failure> {
    let status = match &a.status {
        None => FeedbackStatus::Unspecified,
        Some(s) => FeedbackStatus::parse(s)
            .ok_or_else(|| usage(format!("--status {s:?}: received, in-progress or resolved")))?,
    };
    let req = FeedbackListRequest {
        department: a.department.clone().unwrap_or_default(),
        status: status as i32,
        since: a
            .since
            .as_deref()
            .map(|t| instant(t, "--since", false))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|t| instant(t, "--until", true))
            .transpose()?,
        limit: 0,
    };
    let reply: FeedbackListReply =
        crate::send::ask(cfg, subjects::ESCALATION_FEEDBACK, &req, "escalation").await?;
    let list = match reply.result {
        Some(feedback_list_reply::Result::List(l)) => l,
        Some(feedback_list_reply::Result::Rejected(r)) => return Err(crate::send::rejected(&r)),
        None => return Err(crate::unexpected()),
    };
    let when = |t: &Option<herald_proto::Timestamp>| {
        DateTime::<Utc>::from(herald_proto::system_time(t.as_ref()))
            .format("%Y-%m-%d %H:%M")
            .to_string()
    };
    if list.entries.is_empty() && !a.json {
        println!("no feedback matches");
    }
    for e in &list.entries {
        let status = FeedbackStatus::name_of(e.status);
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "case_id": e.case_id,
                    "reference": e.reference,
                    "client": e.client_contact_id,
                    "department": e.department,
                    "category": e.category,
                    "rating": e.rating,
                    "status": status,
                    "received_at": when(&e.received_at),
                    "updated_at": when(&e.updated_at),
                })
            );
        } else {
            println!(
                "{}  {:<14} {:<12} {:<18} {:<12} {}/5  {}",
                when(&e.received_at),
                e.reference,
                e.client_contact_id,
                if e.department.is_empty() {
                    "-"
                } else {
                    &e.department
                },
                if e.category.is_empty() {
                    "-"
                } else {
                    &e.category
                },
                e.rating,
                status.replace('_', " ")
            );
        }
    }
    if list.truncated {
        eprintln!("more feedback matches: narrow it (--since, --until, --department)");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    event: EventArgs,
    /// in-progress or resolved.
    #[arg(long)]
    status: String,
    /// What the client is told with it (kept in the trail).
    #[arg(long)]
    note: Option<String>,
}

pub async fn run(cfg: &Config, cmd: FeedbackCommand) -> Result<(), Failure> {
    match cmd {
        FeedbackCommand::Show(args) => super::show(cfg, args).await,
        FeedbackCommand::List(args) => list(cfg, args).await,
        FeedbackCommand::Update(u) => {
            let status = FeedbackStatus::parse(&u.status)
                .filter(|s| matches!(s, FeedbackStatus::InProgress | FeedbackStatus::Resolved))
                .ok_or_else(|| {
                    usage(format!("--status {:?}: in-progress or resolved", u.status))
                })?;
            let kind = CaseEventKind::FeedbackUpdated;
            let ev = CaseEvent {
                feedback_update: Some(FeedbackUpdate {
                    status: status as i32,
                    note: u.note.clone().unwrap_or_default(),
                }),
                ..event(kind, &u.event)?
            };
            submit_event(cfg, &ev, kind).await
        }
    }
}
