//! Intake's cancel desk (`herald.v1.intake.cancel`): whoever gave jobs a
//! cancel key can stop them all by it. The answer comes only once delivery
//! has recorded the stop and a send already past its check has finished,
//! so that nothing carrying the key goes out after it.

use herald_durable::stop::Stop;
use herald_proto::v1::{AuditStep, Lane};
use herald_proto::{
    Message,
    v1::{CancelReply, CancelRequest, ErrorCode, Rejected, cancel_reply},
};
use herald_runtime::audit::Entry;
use tracing::{error, info};

use crate::{Intake, unavailable, validate::reject};

/// Reads a cancel request: the key it cancels (or the breach it releases)
/// and the reason the trail gives. An undecodable payload is refused as a
/// whole, naming no field.
pub fn check(payload: &[u8]) -> Result<Order, Rejected> {
    let req = CancelRequest::decode(payload).map_err(|e| {
        reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.CancelRequest: {e}"),
        )
    })?;
    match (req.cancel_key.is_empty(), req.release_breach.is_empty()) {
        (true, true) => {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "cancel_key",
                "name the key to cancel (or a breach to release)",
            ));
        }
        (false, false) => {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "release_breach",
                "a request either cancels a key or releases a breach, not both",
            ));
        }
        (false, true) => {
            if let Err(why) = herald_proto::cancel_keys::check_key(&req.cancel_key) {
                return Err(reject(ErrorCode::InvalidArgument, "cancel_key", why));
            }
        }
        (true, false) => {
            if !herald_proto::broadcasts::is_breach_id(&req.release_breach) {
                return Err(reject(
                    ErrorCode::InvalidArgument,
                    "release_breach",
                    "is not a data breach's id (breach-…, as herald broadcast list shows it)",
                ));
            }
        }
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
    Ok(match req.release_breach.is_empty() {
        true => Order::Cancel(req.cancel_key, reason),
        false => Order::Release(req.release_breach, reason),
    })
}

/// What a cancel request asks.
#[derive(Debug, PartialEq)]
pub enum Order {
    /// Cancel this key, for this reason.
    Cancel(String, String),
    /// Release this breach's containment.
    Release(String, String),
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

    /// Releases a data breach's containment for `caller`: what it held
    /// goes out again. Documented in the breach's trail.
    async fn release_breach(&self, breach: String, reason: String, caller: &str) -> CancelReply {
        let reason = format!("{reason}; request from {caller}");
        if let Err(e) = Stop::release(breach.clone(), reason.clone())
            .send(&self.bus)
            .await
        {
            error!(error = %e, "delivery could not release the breach's hold");
            return CancelReply {
                result: Some(cancel_reply::Result::Rejected(unavailable())),
            };
        }
        let notification_id = breach.trim_start_matches("breach-").to_string();
        let entry = Entry {
            notification_id: notification_id.clone(),
            lane: Lane::Emergency,
            caller: caller.to_string(),
            record_id: Some(format!("{notification_id}-breach-released")),
            ..Entry::new(
                AuditStep::Held,
                format!("breach {breach} released: held sends go out again ({reason})"),
            )
        }
        .attr("broadcast_id", &breach);
        if let Err(e) = self.auditor.record_durable(entry).await {
            error!(error = %e, "breach release not documented");
        }
        info!(%breach, "breach containment released");
        CancelReply {
            result: Some(cancel_reply::Result::Cancelled(true)),
        }
    }

    /// Cancels a key for `caller`, so that no job carrying it is sent from
    /// now on.
    pub(crate) async fn cancel(&self, payload: &[u8], caller: &str) -> CancelReply {
        let refused = |r: Rejected| CancelReply {
            result: Some(cancel_reply::Result::Rejected(r)),
        };
        let (key, reason) = match check(payload) {
            Ok(Order::Cancel(key, reason)) => (key, reason),
            Ok(Order::Release(breach, reason)) => {
                return self.release_breach(breach, reason, caller).await;
            }
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
