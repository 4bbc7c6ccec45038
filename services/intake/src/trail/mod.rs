//! The trail by client and by staff (SOP 001 §4.1: every interaction
//! answerable by client, responsible staff and date). The audit stream is
//! filed by case and notification; intake, which owns it, keeps an index
//! beside it in its keyspace, fed by a durable consumer of the whole
//! stream:
//!
//! * `trail:contact:<id>`: the stream positions of the audit writes that
//!   name the person (as the record's contact, or as the client of the
//!   record's case), scored by the record's time;
//! * `trail:staff:<id>`: the same for a responsible staff member;
//! * `trail:case-client:<case>`: a case's client, from its "opened" record,
//!   so that a case's later records (clocks, escalations, logged calls)
//!   file under its client too.
//!
//! Each index keeps what the stream keeps (`nats.audit_retention`): older
//! positions are dropped on each write and a key no longer written expires.
//! A query reads the positions of the span asked for, fetches those writes
//! and keeps the records that match ([`query`]).

mod query;

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream;
use herald_proto::{
    Message,
    v1::{AuditBatch, AuditRecord, AuditStep},
};
use herald_runtime::bus::Disposition;
use redis::aio::ConnectionManager;
use tracing::warn;

/// Audit writes indexed in one Redis round trip.
pub const BATCH: usize = 256;

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

fn case_client_key(prefix: &str, case: &str) -> String {
    format!("{prefix}trail:case-client:{case}")
}

/// When a record was written, in ms since the epoch.
fn at_ms(r: &AuditRecord) -> i64 {
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
        // The clients of the cases these writes concern: from an "opened"
        // record among them, else as indexed before.
        let mut clients: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (_, records) in &writes {
            for r in records {
                if let Some(client) = opened_client(r) {
                    clients.insert(r.case_id.clone(), Some(client.to_string()));
                }
            }
        }
        let unknown: Vec<String> = writes
            .iter()
            .flat_map(|(_, rs)| rs.iter())
            .filter(|r| !r.case_id.is_empty() && !clients.contains_key(&r.case_id))
            .map(|r| r.case_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut redis = self.redis.clone();
        if !unknown.is_empty() {
            let keys: Vec<String> = unknown
                .iter()
                .map(|c| case_client_key(&self.prefix, c))
                .collect();
            let found: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut redis)
                .await?;
            clients.extend(unknown.into_iter().zip(found));
        }
        let keep = self.retention.as_secs();
        let oldest =
            herald_runtime::clock::millis(chrono::Utc::now()) - self.retention.as_millis() as i64;
        let mut pipe = redis::pipe();
        let mut touched = std::collections::BTreeSet::new();
        for (seq, records) in &writes {
            for r in records {
                let at = at_ms(r);
                let mut keys = Vec::new();
                if !r.contact_id.is_empty() {
                    keys.push(contact_key(&self.prefix, &r.contact_id));
                }
                if let Some(Some(client)) = clients.get(&r.case_id)
                    && *client != r.contact_id
                {
                    keys.push(contact_key(&self.prefix, client));
                }
                if !r.responsible_staff.is_empty() {
                    keys.push(staff_key(&self.prefix, &r.responsible_staff));
                }
                if let Some(client) = opened_client(r) {
                    pipe.set_ex(case_client_key(&self.prefix, &r.case_id), client, keep)
                        .ignore();
                }
                for k in keys {
                    pipe.zadd(&k, *seq, at).ignore();
                    touched.insert(k);
                }
            }
        }
        for k in &touched {
            pipe.zrembyscore(k, "-inf", oldest).ignore();
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
