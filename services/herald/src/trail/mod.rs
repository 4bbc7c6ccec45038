//! `herald trail <id>`: the audit trail of a notification or a case; and
//! `herald trail --client|--staff|--case … [--since] [--until] [--type]`:
//! the records of a client, a member of staff or a case over a span, as
//! intake's index finds them, printed, as JSON lines or as CSV for a CRM.

use clap::Args;
use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{AuditRecord, AuditStep, Channel},
};

use crate::{Failure, refused};

mod search;

#[derive(Args, Debug)]
pub struct TrailArgs {
    /// A notification id (ntf_…), a case id, or a broadcast id.
    id: Option<String>,
    /// The id is a case: print every step of the case and its notifications.
    #[arg(long)]
    case: bool,
    /// Every record of this client: naming them, or of their cases.
    #[arg(long, value_name = "CONTACT_ID")]
    client: Option<String>,
    /// Every record whose responsible staff member this is.
    #[arg(long, value_name = "CONTACT_ID")]
    staff: Option<String>,
    /// From this time (RFC 3339, or a date: its start in UTC).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Up to this time (RFC 3339, or a date: its end in UTC).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only records of this kind: a step (sent, case_event, …), a
    /// communication type (service_update, …) or an interaction (call, …).
    /// Repeat for several.
    #[arg(long = "type", value_name = "KIND")]
    types: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// CSV with a header row, for a CRM or a spreadsheet.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
}

pub async fn run(cfg: &Config, args: TrailArgs) -> Result<(), Failure> {
    let query = args.client.is_some()
        || args.staff.is_some()
        || args.since.is_some()
        || args.until.is_some()
        || !args.types.is_empty();
    if query {
        return search::run(cfg, args).await;
    }
    let Some(id) = args.id.clone() else {
        return Err(Failure {
            code: 2,
            message: "give an id, or --client, --staff or --case with a span".into(),
        });
    };
    let args = TrailArgs {
        id: Some(id.clone()),
        ..args
    };
    let id = &id;
    if !subjects::is_subject_token(id) {
        return Err(Failure {
            code: 2,
            message: format!("{id:?} is not an id (letters, digits, - _ : @ + =)"),
        });
    }
    let trail_of = if args.case || !id.starts_with("ntf_") {
        subjects::audit_of_case(id)
    } else {
        subjects::audit_of_notification(id)
    };
    let bus = crate::connect_bus(cfg, herald_proto::access::Role::Operator).await?;
    let mut trail = herald_runtime::audit::read_trail(&bus, &trail_of).await?;
    if trail.is_empty() && !args.case && !id.starts_with("ntf_") {
        // Not a case: a broadcast, whose id names its trail as a
        // notification id does.
        let by_id = subjects::audit_of_notification(id);
        trail = herald_runtime::audit::read_trail(&bus, &by_id).await?;
    }
    if trail.is_empty() {
        return Err(refused(format!("no audit records for {id}")));
    }
    if args.csv {
        search::print_csv(&trail);
    } else {
        print(&trail, args.json);
    }
    Ok(())
}

pub fn print(trail: &[AuditRecord], json: bool) {
    for r in trail {
        let at = herald_proto::system_time(r.at.as_ref());
        let at = chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%d %H:%M:%S%.3fZ");
        let step = AuditStep::name_of(r.step);
        let channel = Channel::try_from(r.channel).unwrap_or_default();
        if json {
            let v = serde_json::json!({
                "at": at.to_string(),
                "step": step,
                "actor": r.actor,
                "notification_id": r.notification_id,
                "case_id": r.case_id,
                "contact_id": r.contact_id,
                "responsible_staff": r.responsible_staff,
                "caller": r.caller,
                "job_id": r.job_id,
                "channel": if channel == Channel::Unspecified { "" } else { channel.name() },
                "summary": r.summary,
                "attributes": r.attributes,
            });
            println!("{v}");
        } else {
            println!(
                "{at}  {step:<16} {actor:<10} {summary}",
                actor = r.actor,
                summary = r.summary
            );
        }
    }
}
