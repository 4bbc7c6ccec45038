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
    id: String,
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

/// The file form of a broadcast.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct BroadcastFile {
    severity: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    organisations: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    messages: Vec<FileMessage>,
    default_language: Option<String>,
    #[serde(default)]
    sms: bool,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    cycles: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    case: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileMessage {
    language: String,
    subject: String,
    body: String,
    speak: String,
    sms: Option<String>,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn read_file(path: &PathBuf) -> Result<BroadcastFile, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    serde_saphyr::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// The messages of a file plus the one given by flags, if any.
fn messages(file: &BroadcastFile, flags: &MessageArgs) -> Result<Vec<BroadcastMessage>, Failure> {
    let mut out: Vec<BroadcastMessage> = file
        .messages
        .iter()
        .map(|m| BroadcastMessage {
            language: m.language.clone(),
            subject: m.subject.clone(),
            body: m.body.clone(),
            speak: m.speak.clone(),
            sms: m.sms.clone().unwrap_or_default(),
        })
        .collect();
    let given = [&flags.subject, &flags.body, &flags.speak, &flags.sms_text];
    if given.iter().any(|g| g.is_some()) {
        let (Some(subject), Some(body)) = (&flags.subject, &flags.body) else {
            return Err(usage(
                "a message by flags needs --subject and --body (and --speak for the call)",
            ));
        };
        out.push(BroadcastMessage {
            language: flags.language.clone(),
            subject: subject.clone(),
            body: body.clone(),
            speak: flags.speak.clone().unwrap_or_else(|| body.clone()),
            sms: flags.sms_text.clone().unwrap_or_default(),
        });
    }
    if out.is_empty() {
        return Err(usage(
            "no message: give --subject, --body and --speak, or --file with messages",
        ));
    }
    Ok(out)
}

fn build_start(args: &StartArgs) -> Result<StartBroadcast, Failure> {
    let file = match &args.file {
        Some(p) => read_file(p)?,
        None => BroadcastFile::default(),
    };
    let severity_text = args
        .severity
        .clone()
        .or(file.severity.clone())
        .ok_or_else(|| usage("--severity is required: minor, moderate, severe or extreme"))?;
    let severity = Severity::parse(&severity_text).ok_or_else(|| {
        usage(format!(
            "--severity {severity_text:?}: minor, moderate, severe or extreme"
        ))
    })?;
    let joined =
        |a: &[String], b: &[String]| -> Vec<String> { a.iter().chain(b).cloned().collect() };
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs() as u32).unwrap_or(0);
    Ok(StartBroadcast {
        broadcast_id: args.id.clone(),
        credential: args.credential.token(),
        severity: severity as i32,
        audience: Some(Audience {
            contact_ids: joined(&file.to, &args.to),
            group_ids: joined(&file.groups, &args.groups),
            organisations: joined(&file.organisations, &args.organisations),
            roles: joined(&file.roles, &args.roles),
        }),
        messages: messages(&file, &args.message)?,
        default_language: file.default_language.clone().unwrap_or_default(),
        sms: args.sms || file.sms,
        cycles: Some(Cycles {
            interval_seconds: secs(args.interval.or(file.interval)),
            cycles: args.cycles.or(file.cycles).unwrap_or(0),
            duration_seconds: secs(args.duration.or(file.duration)),
        }),
        case_id: args.case_id.clone().or(file.case).unwrap_or_default(),
        ..Default::default()
    })
}

/// What the coordinator is asked to confirm.
fn describe(req: &StartBroadcast) -> String {
    let a = req.audience.clone().unwrap_or_default();
    let mut who = Vec::new();
    for (label, v) in [
        ("contact", &a.contact_ids),
        ("group", &a.group_ids),
        ("organisation", &a.organisations),
        ("role", &a.roles),
    ] {
        if !v.is_empty() {
            who.push(format!(
                "{label}{} {}",
                if v.len() > 1 { "s" } else { "" },
                v.join(", ")
            ));
        }
    }
    let langs: Vec<&str> = req.messages.iter().map(|m| m.language.as_str()).collect();
    let c = req.cycles.unwrap_or_default();
    let or_default = |n: u32, unit: &str| {
        if n == 0 {
            "the configured default".to_string()
        } else {
            format!("{n}{unit}")
        }
    };
    format!(
        "Broadcast {} (severity {}) to {}\n  by email and phone{}, in {}\n  calls: {} in all, every {}, for {}\n  subject: {}",
        req.broadcast_id,
        Severity::name_of(req.severity),
        who.join("; "),
        if req.sms { " and SMS" } else { "" },
        langs.join(", "),
        or_default(c.cycles, ""),
        or_default(c.interval_seconds, "s"),
        or_default(c.duration_seconds, "s"),
        req.messages
            .first()
            .map(|m| m.subject.as_str())
            .unwrap_or("")
    )
}

/// Asks y/N on the terminal; without one, only --yes starts a broadcast.
fn confirm_on_terminal(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "not starting: confirmation is needed and there is no terminal to ask on (add --yes)",
        ));
    }
    print!("{question}\nSend it now? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
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
            let (token, hash) = herald_directory::coordinators::new_token();
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
    let req = build_start(&args)?;
    if let Err(why) = broadcasts::check_id(&req.broadcast_id) {
        return Err(usage(format!("broadcast id {:?} {why}", req.broadcast_id)));
    }
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
    follow(cfg, &args.id, &args.credential.token()).await
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

fn is_over(s: &BroadcastStatus) -> bool {
    matches!(
        BroadcastState::try_from(s.state).unwrap_or_default(),
        BroadcastState::Finished | BroadcastState::Cancelled
    )
}

/// Shows the status until the broadcast ends or Ctrl-C. On a terminal the
/// block is redrawn in place; otherwise it is printed whenever it changes.
async fn follow(cfg: &Config, id: &str, credential: &str) -> Result<(), Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut shown_lines = 0usize;
    let mut last = String::new();
    let mut missing_since: Option<tokio::time::Instant> = None;
    loop {
        let status = match fetch(cfg, id, credential, false).await {
            Ok(s) => Some(s),
            // Just accepted: the broadcast service may not have read it yet.
            Err(f) if f.code == 3 && f.message.contains("not_found") => {
                let since = *missing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    return Err(f);
                }
                None
            }
            Err(f) => return Err(f),
        };
        if let Some(s) = &status {
            let block = render(s, std::time::SystemTime::now());
            if tty {
                if shown_lines > 0 {
                    print!("\x1b[{shown_lines}F\x1b[J");
                }
                print!("{block}");
                shown_lines = block.lines().count();
            } else if strip_clock(&block) != strip_clock(&last) {
                println!("{block}");
            }
            std::io::stdout().flush()?;
            last = block;
            if is_over(s) {
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("\nstopped watching; the broadcast goes on (herald broadcast status {id})");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The block without its first line (which holds the running clock).
fn strip_clock(block: &str) -> String {
    block.lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done as usize * width) / total as usize).min(width)
    };
    format!("[{}{}]", "█".repeat(filled), "░".repeat(width - filled))
}

/// The status block: a headline, the confirmation bar, one row per
/// channel, and the outcome once it is over.
pub fn render(s: &BroadcastStatus, now: std::time::SystemTime) -> String {
    let started = herald_proto::system_time(s.started_at.as_ref());
    let ends = herald_proto::system_time(s.ends_at.as_ref());
    let elapsed = now.duration_since(started).unwrap_or_default().as_secs();
    let total = ends.duration_since(started).unwrap_or_default().as_secs();
    let mmss = |t: u64| format!("{:02}:{:02}", t / 60, t % 60);
    let mut out = format!(
        "broadcast {} · {} · severity {} · started by {} · {} of {} · call cycle {}/{}\n",
        s.broadcast_id,
        BroadcastState::name_of(s.state),
        Severity::name_of(s.severity),
        s.started_by,
        mmss(elapsed.min(total)),
        mmss(total),
        s.cycles_done,
        s.cycles_total
    );
    let pct = (s.confirmed * 100).checked_div(s.recipients).unwrap_or(0);
    out.push_str(&format!(
        "confirmed {} {}/{} ({pct}%)\n",
        bar(s.confirmed, s.recipients, 30),
        s.confirmed,
        s.recipients
    ));
    out.push_str(&format!(
        "{:<8} {:>9} {:>7} {:>10} {:>10} {:>12} {:>11}\n",
        "channel", "targeted", "sent", "delivered", "confirmed", "unreachable", "no address"
    ));
    for c in &s.channels {
        out.push_str(&format!(
            "{:<8} {:>9} {:>7} {:>10} {:>10} {:>12} {:>11}\n",
            Channel::try_from(c.channel).unwrap_or_default().name(),
            c.targeted,
            c.sent,
            c.delivered,
            c.confirmed,
            c.unreachable,
            s.recipients.saturating_sub(c.targeted)
        ));
    }
    if s.updates > 0 {
        out.push_str(&format!("updates sent: {}\n", s.updates));
    }
    if is_over(s) {
        out.push_str(&format!(
            "outcome: {} confirmed, {} not confirmed, {} unreachable{}\n",
            s.confirmed,
            s.not_confirmed,
            s.unreachable,
            if s.cancelled.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.cancelled)
            }
        ));
    }
    out
}

fn render_rows(s: &BroadcastStatus) -> String {
    let mut out = format!(
        "\n{:<24} {:<11} {:<11} {:<11} {:>5}  {:<10} {}\n",
        "contact", "email", "voice", "sms", "calls", "confirmed", "outcome"
    );
    for r in &s.recipient_rows {
        let via = if r.confirmed {
            Channel::try_from(r.confirmed_via)
                .unwrap_or_default()
                .name()
                .to_string()
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<24} {:<11} {:<11} {:<11} {:>5}  {:<10} {}\n",
            r.contact_id,
            r.email,
            r.voice,
            r.sms,
            r.calls,
            via,
            if r.outcome.is_empty() {
                "pending"
            } else {
                &r.outcome
            }
        ));
    }
    out
}

fn as_json(s: &BroadcastStatus) -> serde_json::Value {
    let ts = |t: &Option<herald_proto::Timestamp>| {
        chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(t.as_ref())).to_rfc3339()
    };
    serde_json::json!({
        "broadcast_id": s.broadcast_id,
        "state": BroadcastState::name_of(s.state),
        "severity": Severity::name_of(s.severity),
        "started_by": s.started_by,
        "started_at": ts(&s.started_at),
        "ends_at": ts(&s.ends_at),
        "recipients": s.recipients,
        "confirmed": s.confirmed,
        "not_confirmed": s.not_confirmed,
        "unreachable": s.unreachable,
        "cycles_done": s.cycles_done,
        "cycles_total": s.cycles_total,
        "updates": s.updates,
        "cancelled": s.cancelled,
        "channels": s.channels.iter().map(|c| serde_json::json!({
            "channel": Channel::try_from(c.channel).unwrap_or_default().name(),
            "targeted": c.targeted,
            "sent": c.sent,
            "delivered": c.delivered,
            "confirmed": c.confirmed,
            "unreachable": c.unreachable,
        })).collect::<Vec<_>>(),
        "recipients_detail": s.recipient_rows.iter().map(|r| serde_json::json!({
            "contact_id": r.contact_id,
            "email": r.email,
            "voice": r.voice,
            "sms": r.sms,
            "calls": r.calls,
            "confirmed": r.confirmed,
            "confirmed_via": if r.confirmed { Channel::try_from(r.confirmed_via).unwrap_or_default().name() } else { "" },
            "confirmed_at": if r.confirmed { ts(&r.confirmed_at) } else { String::new() },
            "outcome": r.outcome,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::ChannelProgress;

    #[test]
    fn a_broadcast_file_reads_with_human_durations() {
        let f: BroadcastFile = serde_saphyr::from_str(
            "severity: extreme\ngroups: [floor-3]\ninterval: 2m\ncycles: 4\nmessages:\n  - language: en\n    subject: Fire\n    body: Leave the building\n    speak: Leave the building now\n",
        )
        .unwrap();
        assert_eq!(f.interval, Some(Duration::from_secs(120)));
        assert_eq!(f.cycles, Some(4));
        assert_eq!(f.messages[0].speak, "Leave the building now");
    }

    #[test]
    fn the_block_shows_the_bar_every_channel_and_the_outcome() {
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = BroadcastStatus {
            broadcast_id: "fire-b".into(),
            state: BroadcastState::Finished as i32,
            severity: Severity::Extreme as i32,
            started_by: "anna".into(),
            started_at: Some(herald_proto::timestamp(t0)),
            ends_at: Some(herald_proto::timestamp(t0 + Duration::from_secs(600))),
            recipients: 4,
            confirmed: 2,
            not_confirmed: 1,
            unreachable: 1,
            cycles_done: 3,
            cycles_total: 3,
            channels: vec![
                ChannelProgress {
                    channel: Channel::Email as i32,
                    targeted: 4,
                    sent: 4,
                    delivered: 4,
                    confirmed: 1,
                    unreachable: 0,
                },
                ChannelProgress {
                    channel: Channel::Voice as i32,
                    targeted: 3,
                    sent: 3,
                    delivered: 2,
                    confirmed: 1,
                    unreachable: 1,
                },
            ],
            ..Default::default()
        };
        let text = render(&s, t0 + Duration::from_secs(75));
        assert!(text.starts_with("broadcast fire-b · finished · severity extreme · started by anna · 01:15 of 10:00 · call cycle 3/3\n"), "{text}");
        assert!(
            text.contains("confirmed [███████████████░░░░░░░░░░░░░░░] 2/4 (50%)"),
            "{text}"
        );
        assert!(
            text.contains(
                "voice            3       3          2          1            1           1"
            ),
            "{text}"
        );
        assert!(
            text.contains("outcome: 2 confirmed, 1 not confirmed, 1 unreachable"),
            "{text}"
        );
    }

    #[test]
    fn flags_make_a_message_and_a_missing_severity_is_named() {
        let Ok(m) = messages(
            &BroadcastFile::default(),
            &MessageArgs {
                subject: Some("Evacuate".into()),
                body: Some("Leave now".into()),
                language: "en".into(),
                ..Default::default()
            },
        ) else {
            panic!("a subject and a body make a message");
        };
        assert_eq!(
            m[0].speak, "Leave now",
            "the body is spoken when --speak is not given"
        );
        assert!(messages(&BroadcastFile::default(), &MessageArgs::default()).is_err());
        assert_eq!(Severity::parse("Extreme"), Some(Severity::Extreme));
        assert_eq!(Severity::parse("loud"), None);
    }
}
