//! `herald broadcast start|update|cancel|status|credential`: the emergency
//! coordinator's command.
//!
//! `start` shows what is about to happen and asks "y/N" (unless `--yes`),
//! then follows the broadcast live (sent, delivered, confirmed and
//! unreachable per channel, with a progress bar of confirmations) until it
//! ends or Ctrl-C stops the watching (the broadcast goes on). `status`
//! prints the same once. Every request carries the coordinator credential
//! (`--credential` or `HERALD_COORDINATOR_TOKEN`); Herald refuses it
//! without one and sends nothing.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Subcommand};
use herald_config::Config;
use herald_proto::broadcasts;
use herald_proto::{
    subjects,
    v1::{
        Audience, BroadcastMessage, BroadcastReply, BroadcastState, BroadcastStatus,
        BroadcastStatusReply, BroadcastStatusRequest, CancelBroadcast, Channel, Cycles, Severity,
        StartBroadcast, UpdateBroadcast, broadcast_reply, broadcast_status_reply,
    },
};
use serde::Deserialize;

use crate::{Failure, send::rejected};

#[derive(Subcommand)]
pub enum BroadcastCommand {
    /// Start a broadcast: everyone named gets an email and a call (and an
    /// SMS with --sms), asked to confirm; the unconfirmed are called again.
    Start(Box<StartArgs>),
    /// Send a new message to every recipient of a running broadcast.
    Update(UpdateArgs),
    /// Stop a broadcast: nothing more is sent, no more calls are made.
    Cancel(CancelArgs),
    /// How far a broadcast got, per channel (and per recipient).
    Status(StatusArgs),
    /// Make a new coordinator credential: the token to give the coordinator
    /// and the line for the configuration.
    Credential {
        /// The coordinator's id, e.g. their user name.
        #[arg(long)]
        id: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Credential {
    /// The coordinator credential (a token from `herald broadcast
    /// credential`).
    #[arg(long, env = "HERALD_COORDINATOR_TOKEN", hide_env_values = true)]
    credential: Option<String>,
}

impl Credential {
    fn token(&self) -> String {
        self.credential.clone().unwrap_or_default()
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct MessageArgs {
    /// Email subject.
    #[arg(long)]
    subject: Option<String>,
    /// Email text.
    #[arg(long)]
    body: Option<String>,
    /// Words spoken on the call.
    #[arg(long)]
    speak: Option<String>,
    /// SMS text (default: the spoken words).
    #[arg(long = "sms-text")]
    sms_text: Option<String>,
    /// Language of the message given by flags.
    #[arg(long, default_value = "en")]
    language: String,
}

#[derive(Args)]
pub struct StartArgs {
    /// The broadcast's id: names it, and makes a repeated start harmless.
    /// Not given with --cap, whose alert names it.
    #[arg(required_unless_present = "cap")]
    id: Option<String>,
    /// An OASIS CAP 1.2 alert (XML): an Alert starts a broadcast to the
    /// audience given by --to/--group/--org/--role, an Update updates the
    /// broadcast of the alert it references, a Cancel cancels it.
    #[arg(long, value_name = "ALERT_XML", conflicts_with_all = ["file", "severity", "subject", "body", "speak"])]
    cap: Option<PathBuf>,
    /// A YAML or JSON file with the messages per language (and optionally
    /// the audience and settings); flags add to it.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// minor, moderate, severe or extreme.
    #[arg(long)]
    severity: Option<String>,
    /// A contact id (repeatable).
    #[arg(long = "to", value_name = "CONTACT_ID")]
    to: Vec<String>,
    /// A recipient group (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Everyone at an organisation or site (repeatable).
    #[arg(long = "org")]
    organisations: Vec<String>,
    /// Everyone with a role, e.g. dpo, management (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    #[command(flatten)]
    message: MessageArgs,
    /// Also send an SMS to everyone with a phone number.
    #[arg(long)]
    sms: bool,
    /// Time between call cycles, e.g. 5m (default: the configuration's).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Calls in all to someone who does not confirm.
    #[arg(long)]
    cycles: Option<u32>,
    /// How long the broadcast runs, e.g. 1h.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long = "case")]
    case_id: Option<String>,
    #[command(flatten)]
    credential: Credential,
    /// Start without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Do not follow the broadcast after starting it.
    #[arg(long)]
    detach: bool,
}

#[derive(Args)]
pub struct UpdateArgs {
    id: String,
    /// A YAML or JSON file with `messages:` (and `default_language:`).
    #[arg(long, short)]
    file: Option<PathBuf>,
    #[command(flatten)]
    message: MessageArgs,
    #[command(flatten)]
    credential: Credential,
}

#[derive(Args)]
pub struct CancelArgs {
    id: String,
    /// Why, for the audit trail.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    credential: Credential,
}

#[derive(Args)]
pub struct StatusArgs {
    id: String,
    /// One row per recipient as well.
    #[arg(long)]
    recipients: bool,
    /// The status as JSON.
    #[arg(long)]
    json: bool,
    /// Keep showing it until the broadcast ends (Ctrl-C stops watching).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    credential: Credential,
}

mod request;
mod watch;

use request::{BroadcastFile, build_start, confirm_on_terminal, describe, messages, read_file};
pub use watch::render;
use watch::{as_json, follow, render_rows};

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

pub async fn run(cfg: &Config, cmd: BroadcastCommand) -> Result<(), Failure> {
    match cmd {
        BroadcastCommand::Start(args) => start(cfg, *args).await,
        BroadcastCommand::Update(args) => update(cfg, args).await,
        BroadcastCommand::Cancel(args) => cancel(cfg, args).await,
        BroadcastCommand::Status(args) => status(cfg, args).await,
        BroadcastCommand::Credential { id } => {
            if !subjects::is_subject_token(&id) {
                return Err(usage(format!(
                    "--id {id:?}: letters, digits or - _ : @ + = (no dots or spaces)"
                )));
            }
            let (token, hash) = herald_directory::coordinators::new_token()?;
            println!("token for {id} (give it to them; Herald keeps only its hash):");
            println!("  {token}");
            println!("add to [broadcast] coordinators in the configuration:");
            println!("  {{ id = \"{id}\", token_sha256 = \"{hash}\" }}");
            Ok(())
        }
    }
}

fn accepted(reply: BroadcastReply, what: &str) -> Result<bool, Failure> {
    match reply.result {
        Some(broadcast_reply::Result::Accepted(a)) => {
            println!(
                "{what} {}{} (coordinator {})",
                a.broadcast_id,
                if a.duplicate { ": already done" } else { "" },
                a.coordinator
            );
            Ok(a.duplicate)
        }
        Some(broadcast_reply::Result::Rejected(r)) => Err(rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

async fn start(cfg: &Config, args: StartArgs) -> Result<(), Failure> {
    if let Some(path) = &args.cap {
        return start_cap(cfg, &args, path).await;
    }
    let req = build_start(&args)?;
    if let Err(why) = broadcasts::check_id(&req.broadcast_id) {
        return Err(usage(format!("broadcast id {:?} {why}", req.broadcast_id)));
    }
    send_start(cfg, &args, req).await
}

/// Asks (unless `--yes`), starts the broadcast and follows it (unless
/// `--detach`).
async fn send_start(cfg: &Config, args: &StartArgs, req: StartBroadcast) -> Result<(), Failure> {
    if !args.yes && !confirm_on_terminal(&describe(&req))? {
        println!("not sent");
        return Ok(());
    }
    let reply: BroadcastReply =
        crate::send::ask_intake(cfg, subjects::BROADCAST_START, &req).await?;
    accepted(reply, "started")?;
    if args.detach {
        return Ok(());
    }
    follow(cfg, &req.broadcast_id, &args.credential.token()).await
}

/// A CAP alert, sent as the start, update or cancel it stands for.
async fn start_cap(cfg: &Config, args: &StartArgs, path: &PathBuf) -> Result<(), Failure> {
    let xml = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--cap {}: {e}", path.display())))?;
    let bad = |e: herald_cap::Invalid| usage(format!("--cap {}: {e}", path.display()));
    let alert = herald_cap::parse(xml.as_bytes()).map_err(bad)?;
    let audience = Audience {
        contact_ids: args.to.clone(),
        group_ids: args.groups.clone(),
        organisations: args.organisations.clone(),
        roles: args.roles.clone(),
    };
    let command = herald_cap::command(&alert, &xml, &args.credential.token(), audience, args.sms)
        .map_err(bad)?;
    match command {
        herald_cap::Command::Start(req) => send_start(cfg, args, req).await,
        herald_cap::Command::Update(req) => {
            let reply: BroadcastReply =
                crate::send::ask_intake(cfg, subjects::BROADCAST_UPDATE, &req).await?;
            accepted(reply, "update sent for").map(|_| ())
        }
        herald_cap::Command::Cancel(req) => {
            let reply: BroadcastReply =
                crate::send::ask_intake(cfg, subjects::BROADCAST_CANCEL, &req).await?;
            accepted(reply, "cancelled").map(|_| ())
        }
    }
}

async fn update(cfg: &Config, args: UpdateArgs) -> Result<(), Failure> {
    let file = match &args.file {
        Some(p) => read_file(p)?,
        None => BroadcastFile::default(),
    };
    let req = UpdateBroadcast {
        broadcast_id: args.id.clone(),
        credential: args.credential.token(),
        messages: messages(&file, &args.message)?,
        default_language: file.default_language.clone().unwrap_or_default(),
        cap: String::new(),
    };
    let reply: BroadcastReply =
        crate::send::ask_intake(cfg, subjects::BROADCAST_UPDATE, &req).await?;
    accepted(reply, "update sent for")?;
    Ok(())
}

async fn cancel(cfg: &Config, args: CancelArgs) -> Result<(), Failure> {
    let req = CancelBroadcast {
        broadcast_id: args.id.clone(),
        credential: args.credential.token(),
        reason: args.reason.clone().unwrap_or_default(),
    };
    let reply: BroadcastReply =
        crate::send::ask_intake(cfg, subjects::BROADCAST_CANCEL, &req).await?;
    accepted(reply, "cancelled")?;
    Ok(())
}

async fn fetch(
    cfg: &Config,
    id: &str,
    credential: &str,
    recipients: bool,
) -> Result<BroadcastStatus, Failure> {
    let req = BroadcastStatusRequest {
        broadcast_id: id.to_string(),
        credential: credential.to_string(),
        recipients,
    };
    let reply: BroadcastStatusReply =
        crate::send::ask(cfg, subjects::BROADCAST_STATUS, &req, "broadcast").await?;
    match reply.result {
        Some(broadcast_status_reply::Result::Status(s)) => Ok(s),
        Some(broadcast_status_reply::Result::Rejected(r)) => Err(rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "the broadcast service sent an empty reply".into(),
        }),
    }
}

async fn status(cfg: &Config, args: StatusArgs) -> Result<(), Failure> {
    if args.follow {
        return follow(cfg, &args.id, &args.credential.token()).await;
    }
    let s = fetch(cfg, &args.id, &args.credential.token(), args.recipients).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&s))?);
    } else {
        print!("{}", render(&s, std::time::SystemTime::now()));
        if args.recipients {
            print!("{}", render_rows(&s));
        }
    }
    Ok(())
}
