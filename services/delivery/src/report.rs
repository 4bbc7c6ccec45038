//! How delivery tells the rest of Herald what happened to a job: audit
//! entries, each carrying the `DeliveryStatus` it is, and the documentation of a send,
//! written the same way whether the worker, the hand-on or a status
//! callback is reporting, with record ids that make a repeat harmless.

use herald_proto::{
    subjects,
    v1::{AuditStep, DeliveryJob, DeliveryState, DeliveryStatus, Lane},
};
use herald_runtime::{
    audit::Entry,
    bus::{self, Disposition, PublishError},
    metrics::LaneLabel,
};
use tracing::{info, warn};

use crate::{Delivery, channel_of, transport::Sent};

/// How soon a sent job whose documentation was not stored comes back to be
/// documented again.
pub(crate) const UNDOCUMENTED_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Delivery {
    /// A redelivered job the ledger says was sent: acknowledge it without
    /// sending. The first time may have stopped before documenting the
    /// send; documenting again is harmless (same record ids). It is
    /// acknowledged only once that documentation is stored, and otherwise
    /// comes back to be documented again, never sent again.
    pub(crate) async fn already_sent(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        provider_id: String,
    ) -> Disposition {
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        self.metrics
            .suppressed
            .get_or_create(&LaneLabel {
                lane: lane.name().into(),
            })
            .inc();
        info!("already sent; acknowledged without sending again");
        let documented = self
            .document_sent(
                job,
                attempt,
                &Sent {
                    provider_id,
                    via: String::new(),
                },
            )
            .await;
        if documented {
            Disposition::Ack
        } else {
            Disposition::Retry(UNDOCUMENTED_RETRY)
        }
    }

    /// The documentation of a send: its "sent" record, which is the job's
    /// `Sent` status too, and what a reply to it answers. True once all is
    /// stored. The send is already in the ledger and cannot be taken back,
    /// so a job whose documentation failed is not acknowledged: its
    /// redelivery finds it sent and documents it again ([`Self::already_sent`]).
    pub(crate) async fn document_sent(&self, job: &DeliveryJob, attempt: u32, sent: &Sent) -> bool {
        let channel = channel_of(job);
        let on_attempt = if attempt > 0 {
            format!(" on attempt {attempt}")
        } else {
            String::new()
        };
        let summary = format!(
            "sent by {}{on_attempt}{}",
            channel.name(),
            if job.fallback_of.is_empty() {
                String::new()
            } else {
                format!(" (fallback for {})", job.fallback_of)
            }
        );
        let id = format!("{}-sent", job.job_id);
        let entry = self.entry(job, AuditStep::Sent, summary, id.clone());
        let status = self.status_event(job, DeliveryState::Sent, "", attempt, &sent.provider_id);
        // Both writes are under way before either is awaited.
        let written = self.document(job, entry, status, &id);
        // A reply to it must find it: remembered before the job is
        // acknowledged, as the rest of its documentation is.
        let (written, remembered) = futures::join!(written, self.replies.remember(job));
        let mut stored = true;
        if let Err(e) = remembered {
            warn!(error = %e, "what a reply to this send answers not stored; documenting it again later");
            stored = false;
        }
        if let Err(e) = written {
            warn!(error = %e, "the record of a send not stored; documenting it again later");
            stored = false;
        }
        stored
    }

    /// Writes `entry` to the trail carrying `status`: one record that is
    /// both the step and the job's status event. A broadcast job's status
    /// is also published on the status stream, which the broadcast service
    /// reads, under `event_id`. `Ok` once everything is stored.
    pub(crate) async fn document(
        &self,
        job: &DeliveryJob,
        entry: Entry,
        status: DeliveryStatus,
        event_id: &str,
    ) -> Result<(), PublishError> {
        let for_broadcast = (!job.broadcast_id.is_empty()).then(|| status.clone());
        let subject = subjects::broadcast_delivery_status(channel_of(job));
        let record = self
            .auditor
            .record(Entry {
                status: Some(status),
                ..entry
            })
            .await?;
        let event = match for_broadcast {
            Some(status) => Some(
                self.bus
                    .publish(subject.clone(), &status, Some(event_id))
                    .await?,
            ),
            None => None,
        };
        bus::confirm(subjects::audit_all().to_string(), record).await?;
        if let Some(event) = event {
            bus::confirm(subject, event).await?;
        }
        Ok(())
    }

    /// An audit entry about `job`; `record_id` makes a repeat of the same
    /// occurrence one entry.
    pub(crate) fn entry(
        &self,
        job: &DeliveryJob,
        step: AuditStep,
        summary: String,
        record_id: String,
    ) -> Entry {
        Entry {
            notification_id: job.notification_id.clone(),
            case_id: job.case_id.clone(),
            channel: channel_of(job),
            job_id: job.job_id.clone(),
            contact_id: job.contact_id.clone(),
            lane: Lane::try_from(job.lane).unwrap_or_default(),
            record_id: Some(record_id),
            ..Entry::new(step, summary)
        }
    }

    pub(crate) async fn audit(&self, entry: Entry) {
        if let Err(e) = self.auditor.record_durable(entry).await {
            warn!(error = %e, "audit record not written");
        }
    }

    pub(crate) fn status_event(
        &self,
        job: &DeliveryJob,
        state: DeliveryState,
        detail: &str,
        attempt: u32,
        provider_id: &str,
    ) -> DeliveryStatus {
        DeliveryStatus {
            job_id: job.job_id.clone(),
            notification_id: job.notification_id.clone(),
            case_id: job.case_id.clone(),
            channel: job.channel,
            state: state as i32,
            provider_message_id: provider_id.to_string(),
            detail: detail.to_string(),
            attempt,
            at: Some(herald_proto::now()),
            lane: job.lane,
            broadcast_id: job.broadcast_id.clone(),
        }
    }

    /// Documents a change of the job's state with the step it belongs to
    /// ([`Self::document`]); `tag` makes the event id unique per
    /// occurrence that deserves its own event.
    pub(crate) async fn audit_status(
        &self,
        job: &DeliveryJob,
        entry: Entry,
        state: DeliveryState,
        detail: &str,
        attempt: u32,
        tag: &str,
    ) {
        let event = self.status_event(job, state, detail, attempt, "");
        let id = format!("{}-{tag}", job.job_id);
        if let Err(e) = self.document(job, entry, event, &id).await {
            warn!(error = %e, "status and its audit record not written");
        }
    }
}
