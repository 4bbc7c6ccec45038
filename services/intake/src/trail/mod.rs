//! The trail by client and by staff (SOP 001 §4.1: every interaction
//! answerable by client, responsible staff and date). The audit stream is
//! filed by case and notification; intake, which owns it, keeps an index
//! beside it in its keyspace, fed by a durable consumer of the whole
//! stream:
//!
//! * `trail:contact:<id>`: the stream positions of the audit writes that
//!   name the person as a record's contact, scored by the record's time;
//! * `trail:staff:<id>`: the same for a responsible staff member;
//! * `trail:cases:<id>`: the cases the person is the client of (from each
//!   case's "opened" record), scored by when it opened: a case's records
//!   (clocks, escalations, logged calls) are read from the case's own
//!   trail, so they need no entry of their own and the writes can be
//!   indexed in any order.
//!
//! Each index keeps what the stream keeps (`nats.audit_retention`): a key
//! no longer written expires, and older positions are dropped from a key
//! on one write in [`TRIM_EVERY`] (on average), which bounds what a busy
//! key holds past the retention without a second command per write.
//! A position not yet dropped points at a write the stream no longer
//! has, which a query skips, and cases are listed from the retention on.
//! A query reads the positions of the span asked for, fetches those writes
//! and keeps the records that match ([`query`]).

mod query;

use std::time::Duration;

use async_nats::jetstream;
use herald_proto::{
    Message,
    v1::{AuditBatch, AuditRecord, AuditStep},
};
use herald_runtime::bus::Disposition;
use redis::aio::ConnectionManager;
use tracing::warn;

/// Audit writes indexed in one Redis round trip, and at once.
pub const BATCH: usize = 256;

/// A key's positions older than the retention are dropped when a write
/// whose stream position is a multiple of this touches it.
pub const TRIM_EVERY: u64 = 16;

#[derive(Clone)]
pub(crate) struct TrailIndex {
    redis: ConnectionManager,
    /// Intake's keyspace prefix.
    prefix: String,
    retention: Duration,
}

/// The key of a person's positions.
fn contact_key(prefix: &str, id: &str) -> String {
    format!("{prefix}trail:contact:{id}")
}

fn staff_key(prefix: &str, id: &str) -> String {
    format!("{prefix}trail:staff:{id}")
}

fn cases_key(prefix: &str, client: &str) -> String {
    format!("{prefix}trail:cases:{client}")
}

/// When a record was written, in ms since the epoch.
pub(crate) fn at_ms(r: &AuditRecord) -> i64 {
    herald_runtime::clock::millis(herald_proto::system_time(r.at.as_ref()).into())
}

/// The client a case's "opened" record names.
fn opened_client(r: &AuditRecord) -> Option<&str> {
    (r.step == AuditStep::CaseEvent as i32
        && !r.case_id.is_empty()
        && !r.contact_id.is_empty()
        && r.attributes.get("kind").map(String::as_str) == Some("opened"))
    .then_some(r.contact_id.as_str())
}

impl TrailIndex {
    pub fn new(redis: ConnectionManager, deployment: &str, retention: Duration) -> TrailIndex {
        TrailIndex {
            redis,
            prefix: herald_proto::keyspace::INTAKE.prefix(deployment),
            retention,
        }
    }

    /// Indexes a batch of audit writes in stream order: one read of the
    /// cases' clients, one pipeline of writes. A failure leaves the whole
    /// batch to be delivered again (indexing a position twice changes
    /// nothing).
    pub async fn index(&self, msgs: Vec<jetstream::Message>) -> Vec<Disposition> {
        match self.try_index(&msgs).await {
            Ok(()) => vec![Disposition::Ack; msgs.len()],
            Err(e) => {
                warn!(error = %e, "trail index not written; retrying");
                vec![Disposition::Retry(Duration::from_secs(1)); msgs.len()]
            }
        }
    }

    async fn try_index(&self, msgs: &[jetstream::Message]) -> anyhow::Result<()> {
        let mut writes: Vec<(u64, Vec<AuditRecord>)> = Vec::with_capacity(msgs.len());
        for m in msgs {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            match AuditBatch::decode(m.payload.clone()) {
                Ok(b) if seq > 0 => writes.push((seq, b.records)),
                // Not an audit write: nothing to index.
                _ => {}
            }
        }
        let mut redis = self.redis.clone();
        let keep = self.retention.as_secs();
        let oldest =
            herald_runtime::clock::millis(chrono::Utc::now()) - self.retention.as_millis() as i64;
        let mut pipe = redis::pipe();
        // Each key written, and whether this batch trims it.
        let mut touched = std::collections::BTreeMap::<String, bool>::new();
        for (seq, records) in &writes {
            for r in records {
                let at = at_ms(r);
                let mut keys = Vec::new();
                if !r.contact_id.is_empty() {
                    keys.push(contact_key(&self.prefix, &r.contact_id));
                }
                if !r.responsible_staff.is_empty() {
                    keys.push(staff_key(&self.prefix, &r.responsible_staff));
                }
                if let Some(client) = opened_client(r) {
                    let cases = cases_key(&self.prefix, client);
                    pipe.zadd(&cases, &r.case_id, at).ignore();
                    *touched.entry(cases).or_default() |= seq % TRIM_EVERY == 0;
                }
                for k in keys {
                    pipe.zadd(&k, *seq, at).ignore();
                    *touched.entry(k).or_default() |= seq % TRIM_EVERY == 0;
                }
            }
        }
        for (k, trim) in &touched {
            if *trim {
                pipe.zrembyscore(k, "-inf", oldest).ignore();
            }
            pipe.expire(k, keep as i64).ignore();
        }
        if !touched.is_empty() {
            let _: () = pipe.query_async(&mut redis).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cases_opened_record_names_its_client() {
        let mut r = AuditRecord {
            step: AuditStep::CaseEvent as i32,
            case_id: "CASE-1".into(),
            contact_id: "alice".into(),
            attributes: [("kind".to_string(), "opened".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(opened_client(&r), Some("alice"));
        r.attributes.insert("kind".into(), "updated".into());
        assert_eq!(opened_client(&r), None);
    }
}
