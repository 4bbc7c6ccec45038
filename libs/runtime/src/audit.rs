//! Writing the audit trail: every step a service takes on a notification or
//! a case becomes an `AuditRecord` in the audit stream (SOP 001 §4.1, SOP
//! 000 §6: document every action and escalation).
//!
//! Records carry identifiers, channels and outcomes, never message content
//! or addresses, so the trail can be kept for its full retention period.

use std::collections::BTreeMap;

use async_nats::jetstream::context::PublishAckFuture;
use herald_proto::{
    subjects,
    v1::{AuditBatch, AuditRecord, AuditStep, Channel, DeliveryStatus, Lane},
};

use crate::bus::{Bus, PublishError};

/// Builds and publishes audit records on behalf of one actor (a service
/// name or a person).
#[derive(Clone)]
pub struct Auditor {
    bus: Bus,
    actor: String,
}

/// The parts of a record that vary; the rest is filled in.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    pub notification_id: String,
    pub case_id: String,
    pub step: AuditStep,
    pub summary: String,
    pub channel: Channel,
    pub job_id: String,
    pub contact_id: String,
    pub responsible_staff: String,
    pub lane: Lane,
    pub attributes: BTreeMap<String, String>,
    /// Overrides the auditor's actor (a person acting through a service).
    pub actor: Option<String>,
    /// Who submitted what this step documents, as Herald verified it
    /// (`AuditRecord.caller`).
    pub caller: String,
    /// A deterministic id, for steps that may be repeated after a crash: the
    /// audit stream then keeps one record, not two.
    pub record_id: Option<String>,
    /// The delivery status this step is (`AuditRecord.status`).
    pub status: Option<DeliveryStatus>,
}

impl Entry {
    pub fn new(step: AuditStep, summary: impl Into<String>) -> Entry {
        Entry {
            step,
            summary: summary.into(),
            ..Default::default()
        }
    }

    pub fn attr(mut self, key: &str, value: impl ToString) -> Entry {
        self.attributes.insert(key.to_string(), value.to_string());
        self
    }
}

impl Auditor {
    pub fn new(bus: Bus, actor: impl Into<String>) -> Auditor {
        Auditor {
            bus,
            actor: actor.into(),
        }
    }

    /// Publishes a record; await the returned future to know it is stored.
    pub async fn record(&self, entry: Entry) -> Result<PublishAckFuture, PublishError> {
        self.record_all(vec![entry]).await
    }

    /// Publishes the records of one step together. They must all concern
    /// the same case and notification (they share a subject); the batch is
    /// written once, and JetStream drops a repeat of it (same first record
    /// id) inside its duplicate window.
    pub async fn record_all(&self, entries: Vec<Entry>) -> Result<PublishAckFuture, PublishError> {
        self.record_after(Vec::new(), entries).await
    }

    /// The same, after `earlier`: records another service built and handed
    /// on for this step to write (intake's "accepted", which travels with
    /// the notification to the router).
    pub async fn record_after(
        &self,
        earlier: Vec<AuditRecord>,
        entries: Vec<Entry>,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut records = earlier;
        records.extend(entries.into_iter().map(|e| self.build(e)));
        let Some(first) = records.first() else {
            return Err(PublishError {
                subject: subjects::audit_all().into(),
                reason: "no records".into(),
            });
        };
        let subject = subjects::audit(&first.case_id, &first.notification_id);
        debug_assert!(
            records
                .iter()
                .all(|r| subjects::audit(&r.case_id, &r.notification_id) == subject),
            "one batch, one subject"
        );
        let id = format!("{}+{}", first.record_id, records.len());
        self.bus
            .publish(subject, &AuditBatch { records }, Some(&id))
            .await
    }

    /// The record `entry` makes, stamped now with this auditor's actor.
    pub fn build(&self, entry: Entry) -> AuditRecord {
        AuditRecord {
            record_id: entry.record_id.unwrap_or_else(herald_proto::ids::record_id),
            notification_id: entry.notification_id,
            case_id: entry.case_id,
            step: entry.step as i32,
            at: Some(herald_proto::now()),
            actor: entry.actor.unwrap_or_else(|| self.actor.clone()),
            summary: entry.summary,
            channel: entry.channel as i32,
            job_id: entry.job_id,
            contact_id: entry.contact_id,
            responsible_staff: entry.responsible_staff,
            lane: entry.lane as i32,
            attributes: entry.attributes.into_iter().collect(),
            caller: entry.caller,
            status: entry.status,
        }
    }

    /// Publishes a record and waits until it is stored.
    pub async fn record_durable(&self, entry: Entry) -> Result<(), PublishError> {
        let ack = self.record(entry).await?;
        crate::bus::confirm(subjects::audit_all().to_string(), ack).await
    }
}

/// Reads a trail ([`subjects::audit_of_notification`] or
/// [`subjects::audit_of_case`]) in the order it was written: the messages
/// of its bucket, from the earliest moment the trail can have begun, less
/// the records of other ids that share the bucket.
pub async fn read_trail(bus: &Bus, trail: &subjects::Trail) -> anyhow::Result<Vec<AuditRecord>> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    use futures::StreamExt;
    use prost::Message;

    // Clocks of the machine that minted the id and of nats-server may
    // differ; a margin keeps a record stored "before" the id from being
    // skipped.
    const CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);
    let deliver_policy = match trail
        .not_before()
        .and_then(|t| t.checked_sub(CLOCK_MARGIN))
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| time::OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos() as i128).ok())
    {
        Some(start_time) => DeliverPolicy::ByStartTime { start_time },
        None => DeliverPolicy::All,
    };
    let stream = bus.js.get_stream(subjects::STREAM_AUDIT).await?;
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: trail.filter.clone(),
            ack_policy: AckPolicy::None,
            deliver_policy,
            inactive_threshold: std::time::Duration::from_secs(10),
            ..Default::default()
        })
        .await?;
    let total = consumer.info().await?.num_pending as usize;
    let mut out = Vec::with_capacity(total);
    let mut read = 0;
    while read < total {
        let before = read;
        let mut batch = consumer
            .fetch()
            .max_messages((total - read).min(500))
            .expires(std::time::Duration::from_secs(2))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("reading the trail: {e}"))?;
            read += 1;
            out.extend(
                AuditBatch::decode(m.payload.clone())?
                    .records
                    .into_iter()
                    .filter(|r| trail.holds(r)),
            );
        }
        if read == before {
            break;
        }
    }
    let name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    Ok(out)
}
