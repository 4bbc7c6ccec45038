//! `herald case`: report case events as another system would, and show a
//! case's clocks and escalation.
//!
//! Events go to intake over NATS request/reply (`herald.v1.intake.case`);
//! `show` asks the sla and escalation services (`herald.v1.sla.query`,
//! `herald.v1.escalation.query`) rather than reading their storage, and
//! prints deadlines in the local time of the team's calendar.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use herald_config::Config;
use herald_proto::{
    Message, subjects,
    v1::{
        CaseChannel, CaseDetails, CaseEvent, CaseEventKind, CaseQuery, CaseReply, ClockKind,
        ClockState, ClockView, ErrorCode, EscalationQueryReply, EscalationView, Feedback,
        FeedbackStatus, Priority, SlaQueryReply, SlaView, case_reply, escalation_query_reply,
        sla_query_reply,
    },
};

use crate::{Failure, send::rejected};

#[derive(Subcommand, Debug)]
pub enum CaseCommand {
    /// Open a case: its clocks start.
    Open(OpenArgs),
    /// Someone took the case on: stops the acknowledgement clock and any
    /// escalation.
    Ack(EventArgs),
    /// A full response went out: stops the acknowledgement and response
    /// clocks and any escalation.
    Respond(EventArgs),
    /// The case is resolved: every clock stops, the follow-up starts.
    Resolve(EventArgs),
    /// Open a resolved case again.
    Reopen(EventArgs),
    /// Escalate now (or one level further up if already escalating).
    Escalate(EventArgs),
    /// The case waits on the client: its clocks pause.
    Pause(EventArgs),
    /// The client answered: paused clocks run again.
    Resume(EventArgs),
    /// Record the client's answer to the follow-up survey.
    Feedback(FeedbackArgs),
    /// Change the priority, responsible staff, team or reference.
    Update(UpdateArgs),
    /// Log a call, meeting, email or conversation that happened outside
    /// Herald, with its summary, outcome and action items (each owner is
    /// reminded when one falls due).
    Log(log::LogArgs),
    /// An action item of a logged interaction is done.
    Done(log::DoneArgs),
    /// Show the case's clocks, escalation and action items.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct EventArgs {
    /// The case id.
    case_id: String,
    /// Who did it, for the trail (default: cli:$USER).
    #[arg(long)]
    by: Option<String>,
    /// Why (kept in the trail: no personal data).
    #[arg(long)]
    reason: Option<String>,
    /// When it happened (RFC 3339); default now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The event id; reuse it to retry safely (default: a new one).
    #[arg(long)]
    event_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    #[command(flatten)]
    event: EventArgs,
    /// The client, by contact id.
    #[arg(long)]
    client: String,
    /// email, live_chat, phone, support_ticket or portal.
    #[arg(long)]
    channel: String,
    /// low, normal, high or critical.
    #[arg(long)]
    priority: Option<String>,
    /// The team handling it (picks the calendar and escalation policy).
    #[arg(long)]
    team: Option<String>,
    /// The responsible staff member, by contact id.
    #[arg(long)]
    staff: Option<String>,
    /// The reference the client knows the case by.
    #[arg(long)]
    reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    event: EventArgs,
    #[arg(long)]
    priority: Option<String>,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    staff: Option<String>,
    #[arg(long)]
    reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct FeedbackArgs {
    #[command(flatten)]
    event: EventArgs,
    /// 1 (poor) to 5 (excellent).
    #[arg(long)]
    rating: u32,
    /// The client's words (stored with the case, never logged).
    #[arg(long)]
    comment: Option<String>,
    /// What it is about (billing, service, staff, ...): picks the
    /// department it goes to.
    #[arg(long)]
    category: Option<String>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    case_id: String,
    /// One JSON object with the clocks and the escalation.
    #[arg(long)]
    json: bool,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

pub async fn run(cfg: &Config, cmd: CaseCommand) -> Result<(), Failure> {
    let (mut interaction, mut action_done) = (None, None);
    let (kind, args, details, feedback) = match cmd {
        CaseCommand::Log(l) => {
            interaction = Some(l.interaction()?);
            (CaseEventKind::InteractionLogged, l.event, None, None)
        }
        CaseCommand::Done(d) => {
            action_done = Some(d.done());
            (CaseEventKind::ActionDone, d.event, None, None)
        }
        CaseCommand::Show(args) => return show(cfg, args).await,
        CaseCommand::Open(o) => {
            let channel = CaseChannel::parse(&o.channel).ok_or_else(|| {
                usage(format!(
                    "--channel {:?}: email, live_chat, phone, support_ticket or portal",
                    o.channel
                ))
            })?;
            let details = CaseDetails {
                channel: channel as i32,
                priority: priority(o.priority.as_deref())? as i32,
                client_contact_id: o.client,
                responsible_staff: o.staff.unwrap_or_default(),
                team: o.team.unwrap_or_default(),
                reference: o.reference.unwrap_or_default(),
            };
            (CaseEventKind::Opened, o.event, Some(details), None)
        }
        CaseCommand::Update(u) => {
            let details = CaseDetails {
                priority: priority(u.priority.as_deref())? as i32,
                responsible_staff: u.staff.unwrap_or_default(),
                team: u.team.unwrap_or_default(),
                reference: u.reference.unwrap_or_default(),
                ..Default::default()
            };
            (CaseEventKind::Updated, u.event, Some(details), None)
        }
        CaseCommand::Feedback(f) => (
            CaseEventKind::FeedbackReceived,
            f.event,
            None,
            Some(Feedback {
                rating: f.rating,
                comment: f.comment.unwrap_or_default(),
                category: f.category.unwrap_or_default(),
            }),
        ),
        CaseCommand::Ack(a) => (CaseEventKind::Acknowledged, a, None, None),
        CaseCommand::Respond(a) => (CaseEventKind::Responded, a, None, None),
        CaseCommand::Resolve(a) => (CaseEventKind::Resolved, a, None, None),
        CaseCommand::Reopen(a) => (CaseEventKind::Reopened, a, None, None),
        CaseCommand::Escalate(a) => (CaseEventKind::EscalateNow, a, None, None),
        CaseCommand::Pause(a) => (CaseEventKind::WaitingOnClient, a, None, None),
        CaseCommand::Resume(a) => (CaseEventKind::ClientReplied, a, None, None),
    };
    let ev = CaseEvent {
        details,
        feedback,
        interaction,
        action_done,
        ..event(kind, &args)?
    };
    submit_event(cfg, &ev, kind).await
}

/// The event `args` describe, of `kind`, with nothing kind-specific yet.
pub(crate) fn event(kind: CaseEventKind, args: &EventArgs) -> Result<CaseEvent, Failure> {
    let occurred_at = match &args.at {
        None => None,
        Some(t) => Some(herald_proto::timestamp(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| usage(format!("--at {t:?}: {e} (e.g. 2026-03-16T09:30:00Z)")))?
                .with_timezone(&Utc)
                .into(),
        )),
    };
    Ok(CaseEvent {
        event_id: args
            .event_id
            .clone()
            .unwrap_or_else(|| format!("cli-{}", ulid::Ulid::new())),
        case_id: args.case_id.clone(),
        kind: kind as i32,
        occurred_at,
        actor: args.by.clone().unwrap_or_else(|| {
            format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "operator".into())
            )
        }),
        reason: args.reason.clone().unwrap_or_default(),
        ..Default::default()
    })
}

/// Sends `ev` to intake and says what became of it.
pub(crate) async fn submit_event(
    cfg: &Config,
    ev: &CaseEvent,
    kind: CaseEventKind,
) -> Result<(), Failure> {
    let reply: CaseReply = crate::send::ask_intake(cfg, subjects::INTAKE_CASE, ev).await?;
    match reply.result {
        Some(case_reply::Result::Accepted(a)) => {
            println!(
                "{} {} {} (event {}, position {})",
                if a.duplicate {
                    "already accepted:"
                } else {
                    "accepted:"
                },
                a.case_id,
                kind_words(kind),
                a.event_id,
                a.sequence
            );
            Ok(())
        }
        Some(case_reply::Result::Rejected(r)) => Err(rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

fn priority(p: Option<&str>) -> Result<Priority, Failure> {
    match p {
        None => Ok(Priority::Unspecified),
        Some(p) => Priority::parse(p)
            .ok_or_else(|| usage(format!("--priority {p:?}: low, normal, high or critical"))),
    }
}

pub(crate) fn kind_words(k: CaseEventKind) -> &'static str {
    match k {
        CaseEventKind::Opened => "opened",
        CaseEventKind::Acknowledged => "acknowledged",
        CaseEventKind::Responded => "responded",
        CaseEventKind::Updated => "updated",
        CaseEventKind::Resolved => "resolved",
        CaseEventKind::Reopened => "reopened",
        CaseEventKind::EscalateNow => "escalation requested",
        CaseEventKind::FeedbackReceived => "feedback recorded",
        CaseEventKind::WaitingOnClient => "paused (waiting on the client)",
        CaseEventKind::ClientReplied => "resumed (the client replied)",
        CaseEventKind::InteractionLogged => "interaction logged",
        CaseEventKind::ActionDone => "action done",
        CaseEventKind::FeedbackUpdated => "feedback moved on",
        CaseEventKind::MeetingScheduled => "meeting scheduled",
        CaseEventKind::MeetingRescheduled => "meeting rescheduled",
        CaseEventKind::MeetingCancelled => "meeting cancelled",
        CaseEventKind::MeetingAnswered => "meeting answered",
        CaseEventKind::Unspecified => "event",
    }
}

pub mod feedback;
mod log;
pub mod meeting;
mod show;

use show::show;
