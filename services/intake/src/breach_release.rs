//! The Data Protection Officer's desk (`herald.v1.intake.breach`): the
//! release of a data breach's containment. Only the `dpo` identity may
//! send here (the permission table says so), so what intake verifies is
//! who asks, not what the request claims.

use herald_durable::stop::Stop;
use herald_proto::{
    Message, broadcasts,
    v1::{AuditStep, BreachRelease, BreachReply, ErrorCode, Lane, Rejected, breach_reply},
};
use herald_runtime::audit::Entry;
use tracing::{error, info};

use crate::{Intake, unavailable, validate::reject};

/// Reads a release: the breach and the reason the trail gives. An
/// undecodable payload is refused as a whole, naming no field.
pub fn check(payload: &[u8]) -> Result<(String, String), Rejected> {
    let req = BreachRelease::decode(payload).map_err(|e| {
        reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.BreachRelease: {e}"),
        )
    })?;
    if !broadcasts::is_breach_id(&req.breach_id) {
        return Err(reject(
            ErrorCode::InvalidArgument,
            "breach_id",
            "is not a data breach's id (breach-<notification id>, as its trail names it)",
        ));
    }
    for (field, value) in [("reason", &req.reason), ("requester", &req.requester)] {
        if value.chars().count() > 200 || value.chars().any(char::is_control) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                field,
                "must be at most 200 printable characters",
            ));
        }
    }
    let reason = match (req.reason.trim(), req.requester.trim()) {
        ("", "") => "released".to_string(),
        (r, "") => r.to_string(),
        ("", who) => format!("released by {who}"),
        (r, who) => format!("{r} (by {who})"),
    };
    Ok((req.breach_id, reason))
}

impl Intake {
    /// Handles one release from NATS.
    pub(crate) async fn release_breach_nats(&self, msg: async_nats::Message) -> BreachReply {
        let refused = |r: Rejected| BreachReply {
            result: Some(breach_reply::Result::Rejected(r)),
        };
        let Some(caller) = crate::caller(&msg) else {
            return refused(crate::unnamed_caller());
        };
        let (breach, reason) = match check(&msg.payload) {
            Ok(checked) => checked,
            Err(r) => return refused(r),
        };
        let reason = format!("{reason}; request from {caller}");
        if let Err(e) = Stop::release(breach.clone(), reason.clone())
            .send(&self.bus)
            .await
        {
            error!(error = %e, "delivery could not release the breach's hold");
            return refused(unavailable());
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
        info!(%breach, caller, "breach containment released");
        BreachReply {
            result: Some(breach_reply::Result::Released(true)),
        }
    }
}
