//! Step 2 of the worker: the rate limits, honoured without dropping the
//! job. A short wait is slept with the message kept alive (and an
//! emergency job stepping aside meanwhile); a long one returns the job to
//! JetStream with that delay.

use std::{future::Future, time::Duration};

use async_nats::jetstream::{self, AckKind};
use herald_proto::v1::{Channel, DeliveryJob, Lane};
use herald_runtime::{bus::Disposition, metrics::ReasonLabel};
use tracing::{info, warn};

use super::Step;
use crate::{
    Delivery,
    limits::{self, Connection, Pace},
};

impl Delivery {
    /// Step 2, the person's window on the channel.
    pub(super) async fn contact_limit(
        &self,
        job: &DeliveryJob,
        lane: Lane,
        channel: Channel,
    ) -> Step<()> {
        match self.limits.contact(job, channel).await {
            Ok(Pace::Go(_)) => Ok(()),
            Ok(Pace::Later(wait, hold)) => {
                self.held(lane, hold);
                info!(
                    wait_ms = wait.as_millis() as u64,
                    "contact's window is full; job returns when it has room"
                );
                Err(Disposition::Retry(wait))
            }
            Err(e) => {
                warn!(error = %e, "rate limits unavailable; will retry");
                Err(Disposition::Retry(Duration::from_secs(1)))
            }
        }
    }

    /// Step 2, the provider: a connection, then its pace and any pause it
    /// asked for. The connection is the caller's to give back.
    pub(super) async fn provider_limits(
        &self,
        job: &DeliveryJob,
        msg: &jetstream::Message,
        lane: Lane,
        channel: Channel,
    ) -> Step<Connection> {
        let Some(connection) = self
            .hold(lane, msg, self.limits.connection(channel, lane))
            .await
        else {
            return Err(Disposition::Retry(Duration::ZERO));
        };
        match self.limits.provider(channel, lane).await {
            Ok(Pace::Go(wait)) => {
                if !wait.is_zero() {
                    self.held(lane, limits::Hold::Provider);
                    if self
                        .hold(lane, msg, tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return Err(Disposition::Retry(Duration::ZERO));
                    }
                    if let Ok(pause) = self.limits.paused(channel).await
                        && !pause.is_zero()
                    {
                        self.held(lane, limits::Hold::Paused);
                        return Err(Disposition::Retry(pause));
                    }
                }
                Ok(connection)
            }
            Ok(Pace::Later(wait, hold)) => {
                self.held(lane, hold);
                if hold == limits::Hold::Paused && self.past_time_limit(job, wait) {
                    // A provider that keeps asking for quiet must not hold
                    // a job past its total time limit: hand it on instead.
                    drop(connection);
                    let attempts = self.ledger.attempts(&job.job_id).await.unwrap_or(0);
                    return Err(self
                        .give_up(
                            job,
                            attempts,
                            format!(
                                "the {} provider asked for {:.0}s of quiet, beyond the job's time limit",
                                channel.name(),
                                wait.as_secs_f64()
                            ),
                        )
                        .await);
                }
                Err(Disposition::Retry(wait))
            }
            Err(e) => {
                warn!(error = %e, "rate limits unavailable; will retry");
                Err(Disposition::Retry(Duration::from_secs(1)))
            }
        }
    }

    /// Runs `fut`, telling JetStream now and then that the message is still
    /// being worked on. `None` if shutdown came first. An emergency job
    /// steps aside meanwhile: waiting is not work the normal lane must
    /// yield to.
    async fn hold<F: Future>(
        &self,
        lane: Lane,
        msg: &jetstream::Message,
        fut: F,
    ) -> Option<F::Output> {
        let _parked = (lane == Lane::Emergency).then(|| self.priority.park());
        let mut fut = std::pin::pin!(fut);
        let mut tick = tokio::time::interval(self.keepalive.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = self.shutdown.cancelled() => return None,
                _ = tick.tick() => {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            }
        }
    }

    fn held(&self, lane: Lane, hold: limits::Hold) {
        self.metrics
            .held
            .get_or_create(&ReasonLabel {
                lane: lane.name().into(),
                reason: hold.name().into(),
            })
            .inc();
    }
}
