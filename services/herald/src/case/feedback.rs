//! `herald feedback update|show`: a client's feedback as the department
//! handling it moves it on (SOP 000 §5: the client is told what became of
//! it), and where it stands.

use clap::{Args, Subcommand};
use herald_config::Config;
use herald_proto::v1::{CaseEvent, CaseEventKind, FeedbackStatus, FeedbackUpdate};

use super::{EventArgs, ShowArgs, event, submit_event, usage};
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum FeedbackCommand {
    /// Move a case's feedback on: the client is told.
    Update(UpdateArgs),
    /// Where a case's feedback stands (with the rest of the case).
    Show(ShowArgs),
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
