//! The worker: one delivery job from JetStream through the four steps in
//! the crate docs (ledger, limits, claim and send, record/retry/hand on)
//! to the answer JetStream gets. Each step is its own function, so the
//! order they run in can be read in `process`.

mod held;
mod wait;

use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use herald_proto::{
    Message,
    v1::{AuditStep, Channel, DeliveryJob, DeliveryState, Lane},
};
use herald_runtime::{
    bus::{self, Disposition},
    metrics::{ChannelOutcome, LaneLabel},
    retry::Backoff,
    telemetry::record_outcome,
};
use tracing::{Instrument, error, info, warn};

use crate::{
    Delivery, channel_of,
    ledger::{Claim, InFlight, Peek, Recorded},
    retry::history_line,
    transport::{SendError, Sent},
};

/// A step's result: `Err` ends the job's turn there, with the answer
/// JetStream is to get.
type Step<T> = Result<T, Disposition>;

impl Delivery {
    pub(crate) async fn handle(&self, msg: jetstream::Message) -> Disposition {
        let span = bus::process_span("delivery send", &msg);
        async {
            let job = match DeliveryJob::decode(msg.payload.clone()) {
                Ok(j) => j,
                Err(e) => {
                    error!(error = %e, "undecodable delivery job dropped");
                    return Disposition::Reject;
                }
            };
            let span = tracing::Span::current();
            span.record("notification_id", job.notification_id.as_str());
            span.record("case_id", job.case_id.as_str());
            span.record("job_id", job.job_id.as_str());
            span.record("channel", channel_of(&job).name());
            match self.process(&job, &msg).await {
                Ok(answer) | Err(answer) => answer,
            }
        }
        .instrument(span)
        .await
    }

    async fn process(&self, job: &DeliveryJob, msg: &jetstream::Message) -> Step<Disposition> {
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        let channel = channel_of(job);

        // 1. A redelivery of a finished job ends here, before any limit.
        self.not_finished(job, msg).await?;
        // A breach's containment holds sensitive content to its contacts.
        self.not_held(job).await?;

        // 2. Limits: the person, then the provider.
        self.contact_limit(job, lane, channel).await?;
        let connection = self.provider_limits(job, msg, lane, channel).await?;

        // 3. Claim and send. From the claim to the end of this turn the
        // job is marked as in flight here, so a claim this process holds
        // is known for what it is (see `Ledger::claim`).
        let here = self.ledger.in_flight(&job.job_id);
        let attempt = self.claim(job, &here, lane, channel).await?;
        self.not_cancelled(job, attempt).await?;
        let result = self.send(job, lane, channel).await;
        // The provider has answered, so its connection slot goes back now,
        // not after the ledger write and the acks of step 4; only a request
        // for quiet is published first, so the slot cannot pass to a
        // worker that has not seen it.
        if let Err(SendError::Transient {
            retry_after: Some(pause),
            ..
        }) = &result
            && !pause.is_zero()
        {
            // The provider asked everyone to hold off, not just this job:
            // tell the other workers before anything else.
            if let Err(e) = self.limits.pause(channel, *pause).await {
                warn!(error = %e, "could not record the provider's Retry-After");
            }
        }
        drop(connection);

        // 4. Record, retry or hand on.
        Ok(match result {
            Ok(sent) => self.record(job, here, lane, channel, attempt, sent).await,
            Err(SendError::Transient {
                reason,
                retry_after,
            }) => {
                self.retry(job, lane, channel, attempt, reason, retry_after)
                    .await
            }
            Err(SendError::Permanent { reason }) => {
                let _ = self
                    .ledger
                    .note_attempt(&job.job_id, history_line(attempt, "permanent", &reason))
                    .await;
                self.give_up(job, attempt, reason).await
            }
        })
    }

    /// Step 1. A first delivery skips the question: the claim answers it
    /// too, and a job is almost never finished before it is delivered.
    async fn not_finished(&self, job: &DeliveryJob, msg: &jetstream::Message) -> Step<()> {
        let peek = if bus::delivery_count(msg) > 1 {
            self.ledger.peek(&job.job_id).await
        } else {
            Ok(Peek::Open)
        };
        match peek {
            Ok(Peek::Sent {
                provider_id,
                attempts,
            }) => Err(self.already_sent(job, attempts, provider_id).await),
            Ok(Peek::Failed) => {
                record_outcome(&tracing::Span::current(), "already_failed", false);
                Err(Disposition::Ack)
            }
            Ok(Peek::Open | Peek::Sending) => Ok(()),
            Err(e) => {
                warn!(error = %e, "send ledger unavailable; will retry");
                Err(Disposition::Retry(Duration::from_secs(1)))
            }
        }
    }

    /// Whether the provider reports on this channel's sends (status
    /// callbacks): then a job is kept with its claim, and a sent one may
    /// still fail and be handed on.
    fn reports_come(&self, channel: Channel) -> bool {
        self.cfg.status_callback_base.is_some()
            && self.cfg.provider_token.is_some()
            && channel != Channel::Email
    }

    /// Step 3, the claim: this worker's attempt number, or the answer for
    /// a job another worker holds or that is already finished.
    async fn claim(
        &self,
        job: &DeliveryJob,
        here: &InFlight,
        lane: Lane,
        channel: Channel,
    ) -> Step<u32> {
        let callbacks = self.reports_come(channel);
        let stored = callbacks.then(|| (job.encode_to_vec(), meta_of(job).encode_to_vec()));
        let claim = self
            .ledger
            .claim(
                here,
                stored.as_ref().map(|(j, _)| j.as_slice()),
                stored.as_ref().map(|(_, m)| m.as_slice()),
            )
            .await;
        match claim {
            Ok(Claim::Claimed {
                attempt,
                interrupted,
            }) => {
                if interrupted {
                    self.metrics
                        .interrupted
                        .get_or_create(&LaneLabel {
                            lane: lane.name().into(),
                        })
                        .inc();
                    warn!(
                        attempt,
                        "an earlier attempt was interrupted; sending again under the same idempotency key"
                    );
                }
                Ok(attempt)
            }
            Ok(Claim::Busy(wait)) => {
                record_outcome(&tracing::Span::current(), "busy", false);
                Err(Disposition::Retry(wait.max(Duration::from_millis(200))))
            }
            Ok(Claim::Sent(provider_id)) => Err(self.already_sent(job, 0, provider_id).await),
            Ok(Claim::Failed) => {
                record_outcome(&tracing::Span::current(), "already_failed", false);
                Err(Disposition::Ack)
            }
            Err(e) => {
                record_outcome(&tracing::Span::current(), "ledger_unavailable", false);
                warn!(error = %e, "send ledger unavailable; will retry");
                Err(Disposition::Retry(Duration::from_secs(1)))
            }
        }
    }

    /// Step 3, the last moment a job can still be stopped: a cancel key
    /// that was cancelled while it waited (an acknowledged escalation, a
    /// cancelled broadcast, a confirmed recipient) ends it here. The check
    /// also records the send as under way until the provider answers, so a
    /// canceller can wait for it and know nothing carrying the key goes out
    /// after that (`Cancellations::wait_idle`).
    async fn not_cancelled(&self, job: &DeliveryJob, attempt: u32) -> Step<()> {
        if job.cancel_keys.is_empty() {
            return Ok(());
        }
        let hold = self.cfg.attempt_timeout + Duration::from_secs(5);
        match self
            .cancellations
            .enter(&job.job_id, &job.cancel_keys, hold)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some((key, reason))) => Err(self.cancelled(job, attempt, &key, &reason).await),
            Err(e) => {
                let _ = self.ledger.release(&job.job_id).await;
                warn!(error = %e, "cancel keys unreadable; will retry");
                Err(Disposition::Retry(Duration::from_secs(1)))
            }
        }
    }

    /// Step 3, the send itself, within `attempt_timeout`.
    async fn send(
        &self,
        job: &DeliveryJob,
        lane: Lane,
        channel: Channel,
    ) -> Result<Sent, SendError> {
        let started = std::time::Instant::now();
        let provider = herald_runtime::telemetry::provider_span(channel.name());
        let result = self
            .transports
            .send(job, self.cfg.attempt_timeout)
            .instrument(provider.clone())
            .await;
        if !job.cancel_keys.is_empty()
            && let Err(e) = self
                .cancellations
                .leave(&job.job_id, &job.cancel_keys)
                .await
        {
            // The hold runs out by itself; a canceller waits that long.
            warn!(error = %e, "could not record the end of a send under cancel keys");
        }
        match &result {
            Ok(_) => record_outcome(&provider, "sent", false),
            Err(e) => record_outcome(&provider, error_kind(e), true),
        }
        self.metrics
            .attempt
            .get_or_create(&label(
                lane,
                channel,
                if result.is_ok() { "sent" } else { "failed" },
            ))
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Step 4 for a send the provider took: in the ledger, then documented,
    /// and JetStream acknowledged only once both are stored.
    async fn record(
        &self,
        job: &DeliveryJob,
        here: InFlight,
        lane: Lane,
        channel: Channel,
        attempt: u32,
        sent: Sent,
    ) -> Disposition {
        // The history is read only by a dead letter, which a sent job gets
        // only from a failure status: without one to come, no line.
        let line = self
            .reports_come(channel)
            .then(|| history_line(attempt, "sent", &sent.via));
        match self
            .record_sent(&job.job_id, &sent.provider_id, line.as_deref())
            .await
        {
            Some(Recorded::Sent) => {}
            Some(Recorded::AlreadyFailed) => {
                // A failure status beat the provider's answer here and has
                // settled the job: it is handed on (or being handed on by
                // the callback), and stays failed. Documenting a success
                // now would give the trail both.
                record_outcome(&tracing::Span::current(), "already_failed", false);
                info!(
                    attempt,
                    "the provider answered after reporting this job failed; it stays failed"
                );
                return Disposition::Ack;
            }
            None => {
                // Redis stayed away for half the lease. The claim stands;
                // once its lease runs out a later delivery takes the job
                // over and, unable to know better, sends it again under
                // the same idempotency key: the same window as a crash
                // after the provider answered. The job stays marked as in
                // flight here, so this process does not take its own claim
                // back as one that sent nothing.
                here.keep_marked();
                return Disposition::Retry(self.ledger.lease());
            }
        }
        // Counted once, when the send is in the ledger; a redelivery that
        // only documents it again counts as a suppressed duplicate.
        self.metrics
            .deliveries
            .get_or_create(&label(lane, channel, "sent"))
            .inc();
        if let Some(accepted) = &job.accepted_at {
            let e2e = SystemTime::now()
                .duration_since(herald_proto::system_time(Some(accepted)))
                .unwrap_or_default();
            self.metrics
                .end_to_end
                .get_or_create(&LaneLabel {
                    lane: lane.name().into(),
                })
                .observe(e2e.as_secs_f64());
        }
        if !self.document_sent(job, attempt, &sent).await {
            // Sent and in the ledger, but the trail or the status stream
            // does not have it: not acknowledged, so the redelivery (which
            // the ledger stops from sending) documents it again.
            record_outcome(&tracing::Span::current(), "undocumented", false);
            return Disposition::Retry(crate::report::UNDOCUMENTED_RETRY);
        }
        record_outcome(&tracing::Span::current(), "sent", false);
        Disposition::Ack
    }

    /// Writes `sent` to the ledger, trying again for as long as half the
    /// lease (a Redis restart), because until it is written a redelivery
    /// would send the job again. `None` if it could not be written.
    async fn record_sent(
        &self,
        job_id: &str,
        provider_id: &str,
        line: Option<&str>,
    ) -> Option<Recorded> {
        let deadline = tokio::time::Instant::now() + self.ledger.lease() / 2;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let e = match self.ledger.sent(job_id, provider_id, line).await {
                Ok(recorded) => return Some(recorded),
                Err(e) => e,
            };
            let pause = backoff.next_delay();
            if tokio::time::Instant::now() + pause >= deadline {
                error!(error = %e, "sent but not recorded; holding the job under its lease");
                return None;
            }
            warn!(error = %e, "sent but not yet recorded; trying again");
            tokio::time::sleep(pause).await;
        }
    }

    /// Step 4 for a transient failure: back to JetStream after the next
    /// delay of the schedule, or handed on once that is used up.
    async fn retry(
        &self,
        job: &DeliveryJob,
        lane: Lane,
        channel: Channel,
        attempt: u32,
        reason: String,
        retry_after: Option<Duration>,
    ) -> Disposition {
        let _ = self
            .ledger
            .note_attempt(&job.job_id, history_line(attempt, "transient", &reason))
            .await;
        let Some(delay) = self.next_delay(job, attempt, retry_after) else {
            return self
                .give_up(
                    job,
                    attempt,
                    format!("gave up after {attempt} attempt(s); last: {reason}"),
                )
                .await;
        };
        let _ = self.ledger.release(&job.job_id).await;
        self.metrics
            .retries
            .get_or_create(&label(lane, channel, "transient"))
            .inc();
        record_outcome(&tracing::Span::current(), "retry", false);
        info!(attempt, delay_ms = delay.as_millis() as u64, %reason, "transient failure; retrying");
        let entry = self
            .entry(
                job,
                AuditStep::RetryScheduled,
                format!(
                    "attempt {attempt} failed ({reason}); next attempt in {:.1}s",
                    delay.as_secs_f64()
                ),
                format!("{}-a{attempt}-retry", job.job_id),
            )
            .attr("attempt", attempt)
            .attr("delay_ms", delay.as_millis());
        self.audit_status(
            job,
            entry,
            DeliveryState::Retrying,
            &reason,
            attempt,
            &format!("a{attempt}"),
        )
        .await;
        Disposition::Retry(delay)
    }
}

fn label(lane: Lane, channel: Channel, outcome: &str) -> ChannelOutcome {
    ChannelOutcome {
        lane: lane.name().into(),
        channel: channel.name().into(),
        outcome: outcome.into(),
    }
}

/// The identifiers of a job without its address or content: what the
/// ledger keeps to document status callbacks.
fn meta_of(job: &DeliveryJob) -> DeliveryJob {
    DeliveryJob {
        job_id: job.job_id.clone(),
        notification_id: job.notification_id.clone(),
        case_id: job.case_id.clone(),
        channel: job.channel,
        lane: job.lane,
        priority: job.priority,
        contact_id: job.contact_id.clone(),
        fallback_of: job.fallback_of.clone(),
        communication_type: job.communication_type,
        broadcast_id: job.broadcast_id.clone(),
        ..Default::default()
    }
}

fn error_kind(e: &SendError) -> &'static str {
    match e {
        SendError::Transient { .. } => "transient_failure",
        SendError::Permanent { .. } => "permanent_failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_identifiers_carry_no_address_or_content() {
        let job = DeliveryJob {
            job_id: "j".into(),
            notification_id: "n".into(),
            address: "+447700900123".into(),
            body: "secret".into(),
            subject: "s".into(),
            ..Default::default()
        };
        let meta = meta_of(&job);
        assert_eq!(meta.job_id, "j");
        assert!(meta.address.is_empty() && meta.body.is_empty() && meta.subject.is_empty());
    }
}
