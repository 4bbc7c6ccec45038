//! `herald report send|incident|schedule show`: a client's status update or
//! progress report sent now, a case's incident report by email and phone
//! (SOP 002 §5), and a client's agreed report schedule with when each
//! report is next due, all asked of intake (`herald.v1.intake.reports`).

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{
        IncidentReport, ReportKind, ReportReply, ReportRequest, ReportSent, SendReport,
        report_reply, report_request::Ask,
    },
};

use crate::{Failure, send::rejected};

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Send a client's report now, for the period ending now (or --until).
    Send(SendArgs),
    /// Send a case's incident report to its client, by email and phone.
    Incident(IncidentArgs),
    /// A client's agreed report schedule.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// The client, by contact id.
    pub client: String,
    /// weekly, biweekly (the status update) or monthly (with the PDF).
    #[arg(long, default_value = "weekly")]
    pub kind: String,
    /// The end of the period (RFC 3339; default: now, to the minute). The
    /// same end sends the same report once, however often asked.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
pub struct IncidentArgs {
    /// The case.
    pub case: String,
    /// What happened, in a line: the client is told it by email and phone.
    #[arg(long)]
    pub summary: String,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// The client's agreed reports and when each is next due.
    Show { client: String },
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

async fn ask(cfg: &Config, ask: Ask) -> Result<report_reply::Result, Failure> {
    let req = ReportRequest {
        ask: Some(ask),
        requester: crate::send::requester(),
    };
    let reply: ReportReply = crate::send::ask_intake(cfg, subjects::INTAKE_REPORTS, &req).await?;
    match reply.result {
        Some(report_reply::Result::Rejected(r)) => Err(rejected(&r)),
        Some(r) => Ok(r),
        None => Err(crate::unexpected()),
    }
}

fn print_sent(what: &str, s: &ReportSent) {
    if s.duplicate {
        println!(
            "{what} for {} had already been sent ({}); nothing sent again",
            s.period, s.notification_id
        );
    } else {
        println!(
            "{what} for {} sent: {} case(s) ({})",
            s.period, s.cases, s.notification_id
        );
    }
}

pub async fn run(cfg: &Config, cmd: ReportCommand) -> Result<(), Failure> {
    match cmd {
        ReportCommand::Send(a) => {
            let kind = ReportKind::parse(&a.kind)
                .filter(|k| {
                    matches!(
                        k,
                        ReportKind::Weekly | ReportKind::Biweekly | ReportKind::Monthly
                    )
                })
                .ok_or_else(|| {
                    usage(format!("--kind {:?}: weekly, biweekly or monthly", a.kind))
                })?;
            let until: DateTime<Utc> = match &a.until {
                Some(t) => DateTime::parse_from_rfc3339(t)
                    .map_err(|e| {
                        usage(format!(
                            "--until {t:?}: {e} (RFC 3339, e.g. 2026-12-04T09:00:00Z)"
                        ))
                    })?
                    .with_timezone(&Utc),
                // To the minute, so that running it again at once is the
                // same report.
                None => {
                    let now = Utc::now().timestamp();
                    DateTime::from_timestamp(now - now % 60, 0).unwrap_or_default()
                }
            };
            let r = ask(
                cfg,
                Ask::Send(SendReport {
                    client_contact_id: a.client.clone(),
                    kind: kind as i32,
                    until: Some(herald_proto::timestamp(until.into())),
                }),
            )
            .await?;
            match r {
                report_reply::Result::Sent(s) => {
                    print_sent(&format!("{} report to {}", kind.name(), a.client), &s);
                    Ok(())
                }
                _ => Err(crate::unexpected()),
            }
        }
        ReportCommand::Incident(a) => {
            let r = ask(
                cfg,
                Ask::Incident(IncidentReport {
                    case_id: a.case.clone(),
                    summary: a.summary,
                }),
            )
            .await?;
            match r {
                report_reply::Result::Sent(s) => {
                    print_sent(
                        &format!("incident report on {} (email and phone)", a.case),
                        &s,
                    );
                    Ok(())
                }
                _ => Err(crate::unexpected()),
            }
        }
        ReportCommand::Schedule(ScheduleCommand::Show { client }) => {
            match ask(cfg, Ask::ScheduleOf(client.clone())).await? {
                report_reply::Result::Schedules(s) if s.schedules.is_empty() => {
                    println!("{client} has no agreed reports ([[reports.client]] names none)");
                    Ok(())
                }
                report_reply::Result::Schedules(s) => {
                    for r in s.schedules {
                        let next = r
                            .next_due
                            .as_ref()
                            .map(|t| {
                                let at = DateTime::<Utc>::from(herald_proto::system_time(Some(t)));
                                match r.time_zone.parse::<chrono_tz::Tz>() {
                                    Ok(tz) => at
                                        .with_timezone(&tz)
                                        .format("%Y-%m-%d %H:%M %Z")
                                        .to_string(),
                                    Err(_) => at.to_rfc3339(),
                                }
                            })
                            .unwrap_or_else(|| "not yet arranged".into());
                        println!(
                            "{:<9} {} ({}); next {next}, covering {}",
                            ReportKind::name_of(r.kind),
                            r.cadence,
                            r.time_zone,
                            if r.next_period.is_empty() {
                                "-"
                            } else {
                                &r.next_period
                            }
                        );
                    }
                    Ok(())
                }
                _ => Err(crate::unexpected()),
            }
        }
    }
}
