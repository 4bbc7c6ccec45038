//! The audit trail as operators export it, the same from `herald trail`
//! and intake's `GET /v1/trail`: a span's bounds as people write them (a
//! date or an RFC 3339 time), and CSV, the form a CRM or a spreadsheet
//! imports: one row per record under a header row, SOP 001 §4.1's fields
//! (when, what, who did it, for whom, the responsible staff member, the
//! channel, the summary) in their own columns and every other attribute as
//! a JSON object in the last.

use chrono::{DateTime, NaiveDate, Utc};
use herald_proto::v1::{AuditRecord, AuditStep, Channel};

/// The header row.
pub const HEADER: &str = "at,step,actor,caller,notification_id,case_id,contact_id,responsible_staff,channel,summary,attributes";

/// The media type the export is served as.
pub const MEDIA_TYPE: &str = "text/csv; charset=utf-8";

/// `records` as CSV: the header row, then one row per record, each line
/// ended by CRLF as RFC 4180 has it.
pub fn csv(records: &[AuditRecord]) -> String {
    let mut out = String::with_capacity(128 * (records.len() + 1));
    out.push_str(HEADER);
    out.push_str("\r\n");
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
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v);
        }
        out.push_str("\r\n");
    }
    out
}

/// A span's bound: an RFC 3339 time, or a date (`2026-03-16`) standing for
/// its first instant in UTC, or with `end` its last.
pub fn bound(text: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let t = if end {
        d.and_hms_milli_opt(23, 59, 59, 999)
    } else {
        d.and_hms_opt(0, 0, 0)
    };
    t.map(|t| t.and_utc())
}

/// What a bound that does not parse is told.
pub const BOUND_FORMAT: &str = "a date (2026-03-16) or an RFC 3339 time (2026-03-16T09:30:00Z)";

/// One field as CSV writes it: quoted when it holds a comma, a quote or a
/// line break, quotes doubled.
fn field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> String {
        let mut s = String::new();
        field(&mut s, v);
        s
    }

    #[test]
    fn fields_with_commas_quotes_or_lines_are_quoted() {
        assert_eq!(one("plain"), "plain");
        assert_eq!(one("a, b"), "\"a, b\"");
        assert_eq!(one("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(one("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn a_date_is_its_whole_day() {
        let from = bound("2026-03-16", false).unwrap_or_default();
        let to = bound("2026-03-16", true).unwrap_or_default();
        assert_eq!((to - from).num_milliseconds(), 24 * 3600 * 1000 - 1);
        assert_eq!(
            bound("2026-03-16T09:30:00+01:00", false).map(|t| t.to_rfc3339()),
            Some("2026-03-16T08:30:00+00:00".to_string())
        );
        assert!(bound("16/03/2026", false).is_none());
    }

    #[test]
    fn every_row_has_the_headers_columns() {
        let r = AuditRecord {
            step: AuditStep::Sent as i32,
            summary: "said \"yes\", then left".into(),
            channel: Channel::Sms as i32,
            ..Default::default()
        };
        let text = csv(&[r.clone(), r]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 4, "{text:?}");
        assert!(lines[1].contains(",sent,"), "{}", lines[1]);
        assert!(lines[1].contains(",sms,\"said \"\"yes\"\", then left\","));
    }
}
