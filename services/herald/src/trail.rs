//! `herald trail <id>`: the audit trail of a notification or a case.

use clap::Args;
use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{AuditRecord, AuditStep, Channel},
};

use crate::{Failure, refused};

#[derive(Args, Debug)]
pub struct TrailArgs {
    /// A notification id (ntf_…), a case id, or a broadcast id.
    id: String,
    /// The id is a case: print every step of the case and its notifications.
    #[arg(long)]
    case: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn run(cfg: &Config, args: TrailArgs) -> Result<(), Failure> {
    if !subjects::is_subject_token(&args.id) {
        return Err(Failure {
            code: 2,
            message: format!("{:?} is not an id (letters, digits, - _ : @ + =)", args.id),
        });
    }
    let trail_of = if args.case || !args.id.starts_with("ntf_") {
        subjects::audit_of_case(&args.id)
    } else {
        subjects::audit_of_notification(&args.id)
    };
    let bus = crate::connect_bus(cfg, herald_proto::access::Role::Operator).await?;
    let mut trail = herald_runtime::audit::read_trail(&bus, &trail_of).await?;
    if trail.is_empty() && !args.case && !args.id.starts_with("ntf_") {
        // Not a case: a broadcast, whose id names its trail as a
        // notification id does.
        let by_id = subjects::audit_of_notification(&args.id);
        trail = herald_runtime::audit::read_trail(&bus, &by_id).await?;
    }
    if trail.is_empty() {
        return Err(refused(format!("no audit records for {}", args.id)));
    }
    print(&trail, args.json);
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
