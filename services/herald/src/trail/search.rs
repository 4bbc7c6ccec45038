//! The trail of a client, a member of staff or a case over a span, asked
//! of intake (`herald.v1.intake.trail`), and any trail as CSV.

use chrono::{DateTime, NaiveDate, Utc};
use herald_config::Config;
use herald_proto::{
    subjects,
    v1::{AuditRecord, AuditStep, Channel, TrailQuery, TrailReply, trail_reply},
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
    let t: DateTime<Utc> = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| {
                if end {
                    d.and_hms_milli_opt(23, 59, 59, 999)
                } else {
                    d.and_hms_opt(0, 0, 0)
                }
            })
            .map(|t| t.and_utc())
            .ok_or_else(|| Failure {
                code: 2,
                message: format!("{flag} {text:?}: a date (2026-03-16) or RFC 3339 time"),
            })?,
    };
    Ok(herald_proto::timestamp(t.into()))
}

/// One field as CSV writes it: quoted when it holds a comma, a quote or a
/// line break, quotes doubled.
fn field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

pub const CSV_HEADER: &str = "at,step,actor,caller,notification_id,case_id,contact_id,responsible_staff,channel,summary,attributes";

/// The records as CSV, a header row first (SOP 001 §4.1's fields, the
/// rest as a JSON object in the last column).
pub fn print_csv(records: &[AuditRecord]) {
    println!("{CSV_HEADER}");
    for r in records {
        let at = DateTime::<Utc>::from(herald_proto::system_time(r.at.as_ref()))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let channel = Channel::try_from(r.channel).unwrap_or_default();
        let attributes = serde_json::to_string(&r.attributes).unwrap_or_default();
        let row = [
            at.as_str(),
            AuditStep::name_of(r.step),
            &r.actor,
            &r.caller,
            &r.notification_id,
            &r.case_id,
            &r.contact_id,
            &r.responsible_staff,
            if channel == Channel::Unspecified {
                ""
            } else {
                channel.name()
            },
            &r.summary,
            &attributes,
        ];
        println!(
            "{}",
            row.iter().map(|v| field(v)).collect::<Vec<_>>().join(",")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_quotes_or_lines_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn a_date_is_its_whole_day() {
        let from = time("2026-03-16", "--since", false).unwrap_or_default();
        let to = time("2026-03-16", "--until", true).unwrap_or_default();
        assert_eq!(to.seconds - from.seconds, 24 * 3600 - 1);
        assert!(time("16/03/2026", "--since", false).is_err());
    }
}
