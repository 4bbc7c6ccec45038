//! How far a broadcast got: the status events of its jobs move each job's
//! progress forward, and `herald.v1.emergency.broadcast.status` reads it
//! back for coordinators.

use std::time::Duration;

use async_nats::jetstream;
use herald_directory::coordinators;
use herald_proto::broadcasts;
use herald_proto::{
    Message,
    v1::{
        BroadcastStatusReply, BroadcastStatusRequest, Channel, DeliveryState, DeliveryStatus,
        ErrorCode, Rejected, broadcast_status_reply,
    },
};
use herald_runtime::bus::Disposition;
use tracing::{error, warn};

use crate::{Broadcasts, plan, view};

/// What a delivery status means for a broadcast job's progress.
pub fn progress_of(channel: Channel, state: DeliveryState) -> Option<&'static str> {
    use DeliveryState as S;
    Some(match state {
        // Email has no delivery receipts: a mail server that took the
        // message is as delivered as email gets.
        S::Sent if channel == Channel::Email => "delivered",
        S::Sent | S::Queued | S::Initiated | S::Ringing => "sent",
        S::Delivered | S::Answered | S::Completed => "delivered",
        S::Undelivered | S::Busy | S::NoAnswer => "undelivered",
        S::Failed | S::DeadLettered => "failed",
        S::Cancelled => "cancelled",
        S::Retrying | S::Unspecified => return None,
    })
}

impl Broadcasts {
    /// A delivery status of one of the broadcast's jobs.
    pub(crate) async fn status_event(&self, msg: jetstream::Message) -> Disposition {
        let Ok(status) = DeliveryStatus::decode(msg.payload.clone()) else {
            return Disposition::Reject;
        };
        let channel = Channel::try_from(status.channel).unwrap_or_default();
        let (Some(field), Some(progress)) = (
            plan::progress_field(&status.broadcast_id, &status.job_id),
            progress_of(
                channel,
                DeliveryState::try_from(status.state).unwrap_or_default(),
            ),
        ) else {
            return Disposition::Ack;
        };
        match self
            .store
            .progress(&status.broadcast_id, &field, progress)
            .await
        {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                warn!(error = %e, "broadcast progress not recorded; will retry");
                Disposition::Retry(Duration::from_secs(1))
            }
        }
    }

    /// The status of a broadcast; `None` if there is none by that id.
    pub(crate) async fn view(
        &self,
        id: &str,
        rows: bool,
    ) -> anyhow::Result<herald_proto::v1::BroadcastStatus> {
        let meta = self.store.meta(id).await?.unwrap_or_default();
        let people = self.store.people(id).await?;
        let jobs = self.store.jobs(id).await?;
        let confirmed = self.store.confirmed(id).await?;
        Ok(view::build(id, &meta, &people, &jobs, &confirmed, rows))
    }

    pub(crate) async fn status_reply(&self, payload: &[u8]) -> BroadcastStatusReply {
        let refuse = |code: ErrorCode, field: &str, message: &str| BroadcastStatusReply {
            result: Some(broadcast_status_reply::Result::Rejected(Rejected {
                code: code as i32,
                field: field.into(),
                message: message.into(),
            })),
        };
        let req = match BroadcastStatusRequest::decode(payload) {
            Ok(r) => r,
            Err(_) => {
                return refuse(
                    ErrorCode::Undecodable,
                    "",
                    "not a herald.v1.BroadcastStatusRequest",
                );
            }
        };
        if coordinators::authenticate(&self.cfg.coordinators, &req.credential).is_none() {
            return refuse(
                ErrorCode::Unauthorized,
                "credential",
                "is not a coordinator credential: a broadcast's status is shown to coordinators only",
            );
        }
        if broadcasts::check_id(&req.broadcast_id).is_err() {
            return refuse(
                ErrorCode::InvalidArgument,
                "broadcast_id",
                "is not a broadcast id",
            );
        }
        match self.store.meta(&req.broadcast_id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return refuse(
                    ErrorCode::NotFound,
                    "broadcast_id",
                    "no such broadcast (not started yet, or ended more than 30 days ago)",
                );
            }
            Err(e) => {
                error!(error = %e, "broadcast state unreadable");
                return refuse(
                    ErrorCode::Unavailable,
                    "",
                    "Herald cannot read the broadcast just now; ask again",
                );
            }
        }
        match self.view(&req.broadcast_id, req.recipients).await {
            Ok(status) => BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Status(status)),
            },
            Err(e) => {
                error!(error = %e, "broadcast state unreadable");
                refuse(
                    ErrorCode::Unavailable,
                    "",
                    "Herald cannot read the broadcast just now; ask again",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_onto_progress() {
        assert_eq!(
            progress_of(Channel::Email, DeliveryState::Sent),
            Some("delivered")
        );
        assert_eq!(
            progress_of(Channel::Voice, DeliveryState::Sent),
            Some("sent")
        );
        assert_eq!(
            progress_of(Channel::Voice, DeliveryState::NoAnswer),
            Some("undelivered")
        );
        assert_eq!(
            progress_of(Channel::Voice, DeliveryState::Completed),
            Some("delivered")
        );
        assert_eq!(progress_of(Channel::Sms, DeliveryState::Retrying), None);
    }
}
