//! `herald meeting schedule|reschedule|cancel|list`: meetings about a case
//! (SOP 004, scheduling and confirming meetings), each a case event to
//! intake, which refuses one that overlaps another meeting of the same
//! organiser; the escalation service invites, updates, cancels and
//! reminds, and `list` shows what it keeps, with each attendee's answer.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::{Args, Subcommand};
use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{
        CaseEvent, CaseEventKind, ErrorCode, EscalationQueryReply, Meeting, MeetingView,
        escalation_query_reply,
    },
};

use super::{submit_event, usage};
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum MeetingCommand {
    /// Arrange a meeting about a case: every attendee is invited by email
    /// with a calendar file, and reminded before it.
    Schedule(ScheduleArgs),
    /// Move a meeting (or change its place): attendees get the update.
    Reschedule(RescheduleArgs),
    /// Call a meeting off: attendees get the cancellation.
    Cancel(CancelArgs),
    /// The meetings of a case, with each attendee's answer.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct When {
    /// When it starts: RFC 3339, or "YYYY-MM-DD HH:MM" in --tz.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The zone of a local --at (IANA, e.g. Europe/Paris); default UTC.
    #[arg(long)]
    tz: Option<String>,
    /// How long, e.g. 45m or 1h30m.
    #[arg(long)]
    duration: Option<String>,
    /// Where it takes place.
    #[arg(long, conflicts_with = "video_link")]
    location: Option<String>,
    /// Or the video call's address (https).
    #[arg(long)]
    video_link: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// The case id.
    case_id: String,
    /// Who is invited, by contact id (comma-separated or repeated).
    #[arg(long = "with", value_delimiter = ',', required = true)]
    with: Vec<String>,
    /// What it is about.
    #[arg(long)]
    title: String,
    /// The organiser, by contact id (a staff member).
    #[arg(long)]
    by: String,
    #[command(flatten)]
    when: When,
    /// The meeting's id (the event id); reuse it to retry safely.
    #[arg(long)]
    id: Option<String>,
    /// Invite an interpreter for each attendee whose language is not the
    /// organiser's: a free one from the directory (role interpreter).
    #[arg(long)]
    interpreter: bool,
}

#[derive(Args, Debug)]
pub struct RescheduleArgs {
    case_id: String,
    /// The meeting's id (`herald meeting list` shows it).
    meeting_id: String,
    #[command(flatten)]
    when: When,
    /// Who moved it, for the trail.
    #[arg(long)]
    by: Option<String>,
    /// A new title.
    #[arg(long)]
    title: Option<String>,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    case_id: String,
    meeting_id: String,
    #[arg(long)]
    by: Option<String>,
    /// Why (kept in the trail: no personal data).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    case_id: String,
    /// Times in this zone (IANA); default UTC.
    #[arg(long)]
    tz: Option<String>,
}

fn zone(tz: Option<&str>) -> Result<Tz, Failure> {
    match tz {
        None => Ok(Tz::UTC),
        Some(z) => z.parse().map_err(|_| {
            usage(format!(
                "--tz {z:?}: not an IANA time zone (e.g. Europe/Paris)"
            ))
        }),
    }
}

fn start(at: &str, tz: Option<&str>) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(at) {
        return Ok(t.with_timezone(&Utc));
    }
    let z = zone(tz)?;
    NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M")
        .ok()
        .and_then(|n| z.from_local_datetime(&n).earliest())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            usage(format!(
                "--at {at:?}: RFC 3339 (2026-12-10T10:00:00+01:00) or \"YYYY-MM-DD HH:MM\" in --tz"
            ))
        })
}

fn minutes(d: &str) -> Result<u32, Failure> {
    let bad = || usage(format!("--duration {d:?}: e.g. 45m, 1h or 1h30m"));
    let t = humantime::parse_duration(d).map_err(|_| bad())?;
    let m = t.as_secs() / 60;
    if m == 0 || t.as_secs() % 60 != 0 {
        return Err(bad());
    }
    u32::try_from(m).map_err(|_| bad())
}

impl When {
    fn fill(&self, m: &mut Meeting) -> Result<(), Failure> {
        if let Some(at) = &self.at {
            m.at = Some(herald_proto::timestamp(
                start(at, self.tz.as_deref())?.into(),
            ));
        }
        if let Some(d) = &self.duration {
            m.duration_minutes = minutes(d)?;
        }
        m.location = self.location.clone().unwrap_or_default();
        m.video_link = self.video_link.clone().unwrap_or_default();
        Ok(())
    }
}

fn event(case_id: &str, id: Option<String>, kind: CaseEventKind, by: Option<String>) -> CaseEvent {
    CaseEvent {
        event_id: id
            .unwrap_or_else(|| format!("mtg-{}", ulid::Ulid::new().to_string().to_lowercase())),
        case_id: case_id.to_string(),
        kind: kind as i32,
        actor: by.unwrap_or_else(crate::send::requester),
        ..Default::default()
    }
}

pub async fn run(cfg: &Config, cmd: MeetingCommand) -> Result<(), Failure> {
    let ev = match cmd {
        MeetingCommand::List(l) => return list(cfg, &l).await,
        MeetingCommand::Schedule(s) => {
            if s.when.at.is_none() || s.when.duration.is_none() {
                return Err(usage("schedule needs --at and --duration"));
            }
            let mut m = Meeting {
                title: s.title.clone(),
                attendees: s.with.clone(),
                interpreter: s.interpreter,
                ..Default::default()
            };
            s.when.fill(&mut m)?;
            let ev = event(
                &s.case_id,
                s.id,
                CaseEventKind::MeetingScheduled,
                Some(s.by),
            );
            CaseEvent {
                meeting: Some(m),
                ..ev
            }
        }
        MeetingCommand::Reschedule(r) => {
            if r.when.at.is_none() {
                return Err(usage("reschedule needs --at (and --duration to change it)"));
            }
            let mut m = Meeting {
                meeting_id: r.meeting_id.clone(),
                title: r.title.clone().unwrap_or_default(),
                ..Default::default()
            };
            r.when.fill(&mut m)?;
            CaseEvent {
                meeting: Some(m),
                ..event(&r.case_id, None, CaseEventKind::MeetingRescheduled, r.by)
            }
        }
        MeetingCommand::Cancel(c) => CaseEvent {
            meeting: Some(Meeting {
                meeting_id: c.meeting_id.clone(),
                ..Default::default()
            }),
            reason: c.reason.clone().unwrap_or_default(),
            ..event(&c.case_id, None, CaseEventKind::MeetingCancelled, c.by)
        },
    };
    submit_event(cfg, &ev, ev.kind()).await
}

async fn list(cfg: &Config, args: &ListArgs) -> Result<(), Failure> {
    if !subjects::is_subject_token(&args.case_id) {
        return Err(usage(format!("{:?} is not a case id", args.case_id)));
    }
    let tz = zone(args.tz.as_deref())?;
    let bus = crate::connect_bus(cfg, herald_proto::access::Role::Operator).await?;
    let reply: EscalationQueryReply =
        super::show::query(&bus, subjects::ESCALATION_QUERY, &args.case_id)
            .await
            .map_err(|e| Failure {
                code: 1,
                message: format!("the escalation service did not answer ({e})"),
            })?;
    let view = match reply.result {
        Some(escalation_query_reply::Result::View(v)) => v,
        Some(escalation_query_reply::Result::Rejected(r))
            if r.code == ErrorCode::NotFound as i32 =>
        {
            return Err(crate::refused(format!("no case {}", args.case_id)));
        }
        Some(escalation_query_reply::Result::Rejected(r)) => return Err(crate::send::rejected(&r)),
        None => {
            return Err(Failure {
                code: 1,
                message: "empty reply".into(),
            });
        }
    };
    if view.meetings.is_empty() {
        println!("no meetings on case {}", args.case_id);
    }
    for m in &view.meetings {
        print!("{}", words(m, tz));
    }
    Ok(())
}

fn words(m: &MeetingView, tz: Tz) -> String {
    let at = |t: &Option<herald_proto::Timestamp>| {
        t.as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let place = if m.location.is_empty() {
        &m.video_link
    } else {
        &m.location
    };
    let mut out = format!(
        "{}  {}  {} to {} ({})  organiser {}  sequence {}{}\n",
        m.meeting_id,
        m.title,
        at(&m.start),
        at(&m.end),
        tz.name(),
        m.organizer,
        m.sequence,
        if m.cancelled { "  CANCELLED" } else { "" }
    );
    if !place.is_empty() {
        out.push_str(&format!("  where: {place}\n"));
    }
    for a in &m.attendees {
        out.push_str(&format!(
            "  {}{}: {} (reminded {})\n",
            a.contact_id,
            if a.interpreter { " (interpreter)" } else { "" },
            a.answer,
            a.reminded
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_people_write_them() {
        let t = start("2026-12-10 10:00", Some("Europe/Paris"))
            .unwrap_or_else(|f| panic!("{}", f.message));
        assert_eq!(t.to_rfc3339(), "2026-12-10T09:00:00+00:00");
        assert!(start("tomorrow", None).is_err());
        assert!(start("2026-12-10 10:00", Some("Mars/Base")).is_err());
        assert_eq!(minutes("1h30m").ok(), Some(90));
        assert!(minutes("30s").is_err());
        assert!(minutes("soon").is_err());
    }
}
