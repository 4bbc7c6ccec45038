//! The trail of a client, a member of staff or a case over a span, asked
//! of intake (`herald.v1.intake.trail`), and any trail as CSV.

use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{AuditRecord, TrailQuery, TrailReply, trail_reply},
};

use super::TrailArgs;
use crate::{Failure, refused, send::rejected};

pub async fn run(cfg: &Config, args: TrailArgs) -> Result<(), Failure> {
    let case = match (&args.id, args.case) {
        (Some(id), true) => id.clone(),
        (Some(id), false) => {
            return Err(Failure {
                code: 2,
                message: format!(
                    "{id:?}: with --client, --staff or a span, name a case with --case (a notification's trail has no span)"
                ),
            });
        }
        (None, _) => String::new(),
    };
    let q = TrailQuery {
        client_contact_id: args.client.clone().unwrap_or_default(),
        responsible_staff: args.staff.clone().unwrap_or_default(),
        case_id: case,
        since: args
            .since
            .as_deref()
            .map(|t| time(t, "--since", false))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| time(t, "--until", true))
            .transpose()?,
        types: args.types.clone(),
        limit: 0,
    };
    let reply: TrailReply = crate::send::ask_intake(cfg, subjects::INTAKE_TRAIL, &q).await?;
    let found = match reply.result {
        Some(trail_reply::Result::Records(r)) => r,
        Some(trail_reply::Result::Rejected(r)) => return Err(rejected(&r)),
        None => return Err(crate::unexpected()),
    };
    if found.records.is_empty() && !args.csv {
        return Err(refused("no audit records match".into()));
    }
    if args.csv {
        print_csv(&found.records);
    } else {
        super::print(&found.records, args.json);
    }
    if found.truncated {
        eprintln!("more records match: narrow the span (--since, --until)");
    }
    Ok(())
}

/// `text` as a time: RFC 3339, or a date (its first instant, or with
/// `end` its last, in UTC).
fn time(text: &str, flag: &str, end: bool) -> Result<herald_proto::Timestamp, Failure> {
    let t = herald_runtime::trail_export::bound(text, end).ok_or_else(|| Failure {
        code: 2,
        message: format!(
            "{flag} {text:?}: {}",
            herald_runtime::trail_export::BOUND_FORMAT
        ),
    })?;
    Ok(herald_proto::timestamp(t.into()))
}

/// The records as CSV, a header row first (SOP 001 §4.1's fields, the
/// rest as a JSON object in the last column).
pub fn print_csv(records: &[AuditRecord]) {
    print!("{}", herald_runtime::trail_export::csv(records));
}
