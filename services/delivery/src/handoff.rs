//! Where a job goes when this channel will not send it: on to the
//! recipient's next channel, or, with nowhere left to go, to the
//! dead-letter stream with its history; or, when its cancel key was
//! cancelled, nowhere. Failed sends and failure status callbacks hand on
//! through the same code and with derived ids, so handing the same job on
//! twice yields one fallback job or one dead letter.

use std::time::Duration;

use herald_proto::{
    subjects,
    v1::{AuditStep, Channel, DeadLetter, DeliveryJob, DeliveryState, DeliveryStatus, Lane},
};
use herald_runtime::{
    bus::{Disposition, PublishError},
    metrics::ChannelOutcome,
    telemetry::record_outcome,
};
use tracing::{error, info, warn};

use crate::{Delivery, channel_of, retry::parse_history_line};

/// The id of the job that replaces `job` on its next channel. Derived, so
/// handing the same job on twice (a worker and a status callback, or a
/// repeated callback) yields one job, which JetStream and the ledger then
/// send once.
pub fn fallback_job_id(job_id: &str, next: Channel) -> String {
    format!("{job_id}-fb-{}", next.name())
}

impl Delivery {
    /// A job whose cancel key was cancelled: settled for good without a
    /// send, no fallback, documented.
    pub(crate) async fn cancelled(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        key: &str,
        reason: &str,
    ) -> Disposition {
        let why = format!("cancelled ({key}): {reason}");
        if let Err(e) = self.ledger.failed(&job.job_id, &why).await {
            let _ = self.ledger.release(&job.job_id).await;
            warn!(error = %e, "send ledger unavailable; will retry");
            return Disposition::Retry(Duration::from_secs(1));
        }
        record_outcome(&tracing::Span::current(), "cancelled", false);
        info!(cancel_key = key, "job cancelled before it was sent");
        self.metrics
            .deliveries
            .get_or_create(&ChannelOutcome {
                lane: Lane::try_from(job.lane).unwrap_or_default().name().into(),
                channel: channel_of(job).name().into(),
                outcome: "cancelled".into(),
            })
            .inc();
        let entry = self
            .entry(
                job,
                AuditStep::Cancelled,
                format!("not sent: {why}"),
                format!("{}-cancelled", job.job_id),
            )
            .attr("cancel_key", key);
        self.audit_status(
            job,
            entry,
            DeliveryState::Cancelled,
            &why,
            attempt,
            "cancelled",
        )
        .await;
        Disposition::Ack
    }

    /// A permanent failure: the next channel if there is one, else the
    /// dead-letter stream. Acked only once that hand-off is stored.
    pub(crate) async fn give_up(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        reason: String,
    ) -> Disposition {
        let failed = self.status_event(job, DeliveryState::Failed, &reason, attempt, "");
        match self.hand_on(job, attempt, &reason, Some(failed)).await {
            Ok(()) => {
                let _ = self.ledger.failed(&job.job_id, &reason).await;
                Disposition::Ack
            }
            Err(e) => {
                error!(error = %e, "could not hand the failed job on; will retry");
                let _ = self.ledger.release(&job.job_id).await;
                Disposition::Retry(Duration::from_secs(2))
            }
        }
    }

    /// Hands a failed job to the recipient's next channel, or to the
    /// dead-letter stream with its history, and documents which, with the
    /// job's `Failed` status if `failed` carries it (a status callback has
    /// documented its own). Used by failed sends and by failure status
    /// callbacks alike.
    pub(crate) async fn hand_on(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        reason: &str,
        failed: Option<DeliveryStatus>,
    ) -> Result<(), PublishError> {
        let channel = channel_of(job);
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        let (step, summary, outcome, mut entry_attrs) =
            if let Some((next, rest)) = job.fallbacks.split_first() {
                let next_channel = Channel::try_from(next.channel).unwrap_or_default();
                let fallback = DeliveryJob {
                    job_id: fallback_job_id(&job.job_id, next_channel),
                    channel: next.channel,
                    address: next.address.clone(),
                    subject: next.subject.clone(),
                    body: next.body.clone(),
                    content_withheld: next.content_withheld,
                    fallbacks: rest.to_vec(),
                    fallback_of: job.job_id.clone(),
                    created_at: Some(herald_proto::now()),
                    ..job.clone()
                };
                self.bus
                    .publish_durable(
                        subjects::delivery_job(lane, next_channel),
                        &fallback,
                        Some(&fallback.job_id),
                    )
                    .await?;
                (
                    AuditStep::Fallback,
                    format!(
                        "{} failed ({reason}); falling back to {}",
                        channel.name(),
                        next_channel.name()
                    ),
                    "fallback",
                    vec![
                        ("fallback_job_id", fallback.job_id.clone()),
                        ("fallback_channel", next_channel.name().to_string()),
                    ],
                )
            } else if !job.broadcast_id.is_empty() {
                // The broadcast calls again in its next cycle and reports the
                // person unreachable at its end; a dead letter would invite a
                // replay after the emergency is over.
                (
                    AuditStep::Failed,
                    format!(
                        "{} failed ({reason}); broadcast {} tries again in its next cycle",
                        channel.name(),
                        job.broadcast_id
                    ),
                    "failed",
                    Vec::new(),
                )
            } else {
                let history = self.ledger.history(&job.job_id).await.unwrap_or_default();
                let letter = DeadLetter {
                    job: Some(job.clone()),
                    reason: reason.to_string(),
                    history: history
                        .iter()
                        .filter_map(|l| parse_history_line(l))
                        .collect(),
                    at: Some(herald_proto::now()),
                };
                self.bus
                    .publish_durable(
                        subjects::dlq(channel),
                        &letter,
                        Some(&format!("{}-dead", job.job_id)),
                    )
                    .await?;
                (
                    AuditStep::DeadLettered,
                    format!(
                        "{} failed ({reason}); no fallback left, moved to the dead-letter stream",
                        channel.name()
                    ),
                    "dead_lettered",
                    Vec::new(),
                )
            };
        warn!(attempt, outcome, %reason, "job failed for good; handed on");
        record_outcome(&tracing::Span::current(), outcome, true);
        let mut entry = self
            .entry(job, step, summary, format!("{}-{outcome}", job.job_id))
            .attr("attempt", attempt);
        for (k, v) in entry_attrs.drain(..) {
            entry = entry.attr(k, v);
        }
        match failed {
            Some(status) => {
                let id = format!("{}-failed", job.job_id);
                if let Err(e) = self.document(job, entry, status, &id).await {
                    warn!(error = %e, "the failure and its audit record not written");
                }
            }
            None => self.audit(entry).await,
        }
        self.metrics
            .deliveries
            .get_or_create(&ChannelOutcome {
                lane: lane.name().into(),
                channel: channel.name().into(),
                outcome: outcome.into(),
            })
            .inc();
        Ok(())
    }
}
