//! Intake's cancel desk (`herald.v1.intake.cancel`): whoever gave jobs a
//! cancel key can stop them all by it. The answer comes only once delivery
//! has recorded the stop and a send already past its check has finished,
//! so that nothing carrying the key goes out after it.

use herald_durable::stop::Stop;
use herald_proto::{
    Message,
    v1::{CancelReply, CancelRequest, ErrorCode, Rejected, cancel_reply},
};
use tracing::{error, info};

use crate::{Intake, unavailable, validate::reject};

/// Reads a cancel request: the key it cancels and the reason the trail
/// gives. An undecodable payload is refused as a whole, naming no field.
pub fn check(payload: &[u8]) -> Result<(String, String), Rejected> {
    let req = CancelRequest::decode(payload).map_err(|e| {
        reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.CancelRequest: {e}"),
        )
    })?;
    if let Err(why) = herald_proto::cancel_keys::check_key(&req.cancel_key) {
        return Err(reject(ErrorCode::InvalidArgument, "cancel_key", why));
    }
    if req.reason.chars().count() > 200 || req.requester.chars().count() > 200 {
        return Err(reject(
            ErrorCode::InvalidArgument,
            if req.reason.chars().count() > 200 {
                "reason"
            } else {
                "requester"
            },
            "is longer than 200 characters",
        ));
    }
    let reason = match (req.reason.trim(), req.requester.trim()) {
        ("", "") => "cancelled".to_string(),
        (r, "") => r.to_string(),
        ("", who) => format!("cancelled by {who}"),
        (r, who) => format!("{r} (by {who})"),
    };
    Ok((req.cancel_key, reason))
}

impl Intake {
    /// Handles one cancel request from NATS.
    pub(crate) async fn cancel_nats(&self, msg: async_nats::Message) -> CancelReply {
        match crate::caller(&msg) {
            Some(caller) => self.cancel(&msg.payload, caller).await,
            None => CancelReply {
                result: Some(cancel_reply::Result::Rejected(crate::unnamed_caller())),
            },
        }
    }

    /// Cancels a key for `caller`, so that no job carrying it is sent from
    /// now on.
    pub(crate) async fn cancel(&self, payload: &[u8], caller: &str) -> CancelReply {
        let refused = |r: Rejected| CancelReply {
            result: Some(cancel_reply::Result::Rejected(r)),
        };
        let (key, reason) = match check(payload) {
            Ok(checked) => checked,
            Err(r) => return refused(r),
        };
        // Who asked, as NATS verified it, beside what the request says.
        let reason = format!("{reason}; request from {caller}");
        // Delivery lets a send that passed its check just before finish, so
        // that once the caller has the answer nothing goes out.
        let stopped = Stop::key(key, reason)
            .and_wait(self.cases.stop_wait())
            .send(&self.bus)
            .await;
        match stopped.map(|s| s.first.first().copied().unwrap_or(false)) {
            Ok(first) => {
                info!(first, "cancel key cancelled");
                CancelReply {
                    result: Some(cancel_reply::Result::Cancelled(first)),
                }
            }
            Err(e) => {
                error!(error = %e, "delivery could not record the cancellation");
                refused(unavailable())
            }
        }
    }
}
