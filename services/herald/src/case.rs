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
        ClockState, ClockView, ErrorCode, EscalationQueryReply, EscalationView, Feedback, Priority,
        SlaQueryReply, SlaView, case_reply, escalation_query_reply, sla_query_reply,
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
    /// Show the case's clocks and escalation.
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
    let (kind, args, details, feedback) = match cmd {
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
    let occurred_at = match &args.at {
        None => None,
        Some(t) => Some(herald_proto::timestamp(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| usage(format!("--at {t:?}: {e} (e.g. 2026-03-16T09:30:00Z)")))?
                .with_timezone(&Utc)
                .into(),
        )),
    };
    let ev = CaseEvent {
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
        details,
        feedback,
        reason: args.reason.clone().unwrap_or_default(),
    };
    let reply: CaseReply = crate::send::ask_intake(cfg, subjects::INTAKE_CASE, &ev).await?;
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

fn kind_words(k: CaseEventKind) -> &'static str {
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
        CaseEventKind::Unspecified => "event",
    }
}

/// Asks one service about the case. Outer error: not answering.
async fn query<R: Message + Default>(
    bus: &herald_runtime::bus::Bus,
    subject: &str,
    case_id: &str,
) -> Result<R, String> {
    let q = CaseQuery {
        case_id: case_id.to_string(),
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        bus.client
            .request(subject.to_string(), q.encode_to_vec().into()),
    )
    .await
    {
        Ok(Ok(msg)) => R::decode(msg.payload).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5s".into()),
    }
}

async fn show(cfg: &Config, args: ShowArgs) -> Result<(), Failure> {
    if !subjects::is_subject_token(&args.case_id) {
        return Err(usage(format!(
            "{:?} is not a case id (letters, digits, - _ : @ + =)",
            args.case_id
        )));
    }
    let bus = crate::connect_bus(cfg).await?;
    let (sla, esc) = tokio::join!(
        query::<SlaQueryReply>(&bus, subjects::SLA_QUERY, &args.case_id),
        query::<EscalationQueryReply>(&bus, subjects::ESCALATION_QUERY, &args.case_id),
    );
    let not_found = |code: i32| code == ErrorCode::NotFound as i32;
    let sla: Result<Option<SlaView>, String> = match sla {
        Err(e) => Err(format!("the sla service did not answer ({e})")),
        Ok(r) => match r.result {
            Some(sla_query_reply::Result::View(v)) => Ok(Some(v)),
            Some(sla_query_reply::Result::Rejected(r)) if not_found(r.code) => Ok(None),
            Some(sla_query_reply::Result::Rejected(r)) => Err(r.message),
            None => Err("empty reply".into()),
        },
    };
    let esc: Result<Option<EscalationView>, String> = match esc {
        Err(e) => Err(format!("the escalation service did not answer ({e})")),
        Ok(r) => match r.result {
            Some(escalation_query_reply::Result::View(v)) => Ok(Some(v)),
            Some(escalation_query_reply::Result::Rejected(r)) if not_found(r.code) => Ok(None),
            Some(escalation_query_reply::Result::Rejected(r)) => Err(r.message),
            None => Err("empty reply".into()),
        },
    };
    match (&sla, &esc) {
        (Ok(None), Ok(None)) => {
            return Err(crate::refused(format!(
                "no case {} (neither the sla nor the escalation service knows it)",
                args.case_id
            )));
        }
        (Err(a), Err(b)) => {
            return Err(Failure {
                code: 1,
                message: format!("{a}; {b} (is Herald running? see `make run`)"),
            });
        }
        _ => {}
    }
    let now = Utc::now();
    if args.json {
        let v = serde_json::json!({
            "case_id": args.case_id,
            "clocks": match &sla { Ok(Some(v)) => clocks_json(v), _ => serde_json::Value::Null },
            "escalation": match &esc { Ok(Some(v)) => escalation_json(v), _ => serde_json::Value::Null },
        });
        println!("{v}");
        return Ok(());
    }
    let tz: chrono_tz::Tz = match &sla {
        Ok(Some(v)) => v.time_zone.parse().unwrap_or(chrono_tz::UTC),
        _ => chrono_tz::UTC,
    };
    let local = |t: Option<&herald_proto::Timestamp>| -> String {
        match t {
            None => "-".into(),
            Some(t) => DateTime::<Utc>::from(herald_proto::system_time(Some(t)))
                .with_timezone(&tz)
                .format("%a %d %b %Y %H:%M %Z")
                .to_string(),
        }
    };
    println!("case {}", args.case_id);
    match &sla {
        Ok(Some(v)) => {
            println!(
                "  team {} (calendar {}, {}), channel {}, priority {}",
                if v.team.is_empty() { "-" } else { &v.team },
                v.calendar,
                v.time_zone,
                CaseChannel::try_from(v.channel).unwrap_or_default().name(),
                Priority::try_from(v.priority).unwrap_or_default().name()
            );
            println!("clocks");
            if v.clocks.is_empty() {
                println!("  none (no SLA policy sets a clock for this case)");
            }
            for c in &v.clocks {
                println!("  {}", clock_line(c, &local));
            }
        }
        Ok(None) => println!("clocks\n  none"),
        Err(e) => println!("clocks\n  unknown: {e}"),
    }
    println!("escalation");
    match &esc {
        Ok(Some(e)) => {
            for line in escalation_lines(e, &local, now) {
                println!("  {line}");
            }
        }
        Ok(None) => println!("  none"),
        Err(e) => println!("  unknown: {e}"),
    }
    Ok(())
}

fn clock_line(c: &ClockView, local: &dyn Fn(Option<&herald_proto::Timestamp>) -> String) -> String {
    let kind = ClockKind::try_from(c.clock).unwrap_or_default().name();
    let state = ClockState::try_from(c.state).unwrap_or_default();
    let target = format!("{} ({})", c.target, c.policy);
    match state {
        ClockState::Stopped => format!(
            "{kind:<16} stopped  {target}; {} at {}",
            if c.breached || c.seconds_left < 0 {
                "missed its deadline, stopped"
            } else {
                "met, stopped"
            },
            local(c.stopped_at.as_ref())
        ),
        ClockState::Paused => format!(
            "{kind:<16} paused   {target}; {} left when it resumes (due {} if it resumed now)",
            herald_calendar::duration_words(c.seconds_left, c.business_hours),
            local(c.deadline.as_ref())
        ),
        _ => {
            let left = if c.seconds_left == i64::MAX {
                "no working time ahead".to_string()
            } else if c.seconds_left >= 0 {
                format!(
                    "{} left",
                    herald_calendar::duration_words(c.seconds_left, c.business_hours)
                )
            } else {
                format!(
                    "BREACHED {} ago",
                    herald_calendar::duration_words(-c.seconds_left, c.business_hours)
                )
            };
            format!(
                "{kind:<16} running  {target}; due {}, {left}{}",
                local(c.deadline.as_ref()),
                if c.warned && !c.breached {
                    " (warned)"
                } else {
                    ""
                }
            )
        }
    }
}

fn escalation_lines(
    e: &EscalationView,
    local: &dyn Fn(Option<&herald_proto::Timestamp>) -> String,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut out = Vec::new();
    match e.state.as_str() {
        "none" => out.push("none".to_string()),
        state => {
            out.push(format!(
                "{state}: level {} ({}), notice {}, started {} by {} (policy {})",
                e.level,
                e.level_name.replace('_', " "),
                e.round,
                local(e.started_at.as_ref()),
                e.trigger,
                e.policy
            ));
            if !e.notified.is_empty() {
                out.push(format!("notified: {}", e.notified.join(", ")));
            }
            if let Some(next) = &e.next_at {
                let at = DateTime::<Utc>::from(herald_proto::system_time(Some(next)));
                let secs = (at - now).num_seconds();
                out.push(format!(
                    "next level or repeat: {} (in {})",
                    local(Some(next)),
                    herald_calendar::duration_words(secs.max(0), false)
                ));
            }
            if e.stopped_at.is_some() {
                out.push(format!(
                    "stopped {}: {}",
                    local(e.stopped_at.as_ref()),
                    e.stopped_by
                ));
            }
        }
    }
    if e.escalations > 1 {
        out.push(format!(
            "escalations of this case so far: {}",
            e.escalations
        ));
    }
    let follow = match e.follow_up.as_str() {
        "none" => "none".to_string(),
        "answered" => format!("answered, rating {}/5", e.rating),
        s => match &e.follow_up_at {
            Some(t) => format!("{} (next step {})", s.replace('_', " "), local(Some(t))),
            None => s.replace('_', " "),
        },
    };
    out.push(format!("follow-up: {follow}"));
    out
}

fn ts_json(t: Option<&herald_proto::Timestamp>) -> serde_json::Value {
    match t {
        None => serde_json::Value::Null,
        Some(t) => DateTime::<Utc>::from(herald_proto::system_time(Some(t)))
            .to_rfc3339()
            .into(),
    }
}

fn clocks_json(v: &SlaView) -> serde_json::Value {
    serde_json::json!({
        "team": v.team,
        "calendar": v.calendar,
        "time_zone": v.time_zone,
        "channel": CaseChannel::try_from(v.channel).unwrap_or_default().name(),
        "priority": Priority::try_from(v.priority).unwrap_or_default().name(),
        "clocks": v.clocks.iter().map(|c| serde_json::json!({
            "clock": ClockKind::try_from(c.clock).unwrap_or_default().name(),
            "state": ClockState::name_of(c.state),
            "policy": c.policy,
            "target": c.target,
            "started_at": ts_json(c.started_at.as_ref()),
            "deadline": ts_json(c.deadline.as_ref()),
            "seconds_left": c.seconds_left,
            "business_hours": c.business_hours,
            "warned": c.warned,
            "breached": c.breached,
            "stopped_at": ts_json(c.stopped_at.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

fn escalation_json(e: &EscalationView) -> serde_json::Value {
    serde_json::json!({
        "state": e.state,
        "policy": e.policy,
        "trigger": e.trigger,
        "level": e.level,
        "level_name": e.level_name,
        "round": e.round,
        "started_at": ts_json(e.started_at.as_ref()),
        "next_at": ts_json(e.next_at.as_ref()),
        "notified": e.notified,
        "stopped_at": ts_json(e.stopped_at.as_ref()),
        "stopped_by": e.stopped_by,
        "follow_up": e.follow_up,
        "follow_up_at": ts_json(e.follow_up_at.as_ref()),
        "rating": e.rating,
        "escalations": e.escalations,
    })
}
