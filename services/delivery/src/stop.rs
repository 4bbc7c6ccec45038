//! Delivery's stop desk: the one door to the cancel keys, which only
//! delivery keeps. Intake (a caller's cancel, an acknowledgement stopping a
//! case's escalations), escalation and the broadcast service write each
//! stop to the stops stream and then ask here (`herald.v1.delivery.stop`);
//! every request is checked field by field. The stream is applied too, so
//! a stop asked for while no delivery ran is in force before delivery
//! sends anything again ([`catch_up`] runs before the job consumers).

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use herald_proto::{
    Message,
    cancel_keys::{self, MAX_KEYS},
    subjects,
    v1::{ErrorCode, Rejected, StopReply, StopRequest, Stopped, stop_reply},
};
use herald_runtime::bus::{self, Bus, ConsumerSpec, Disposition};
use tracing::{error, info, warn};

use crate::cancel::Cancellations;

/// The longest a stop may ask to wait for sends under way.
const MAX_WAIT: Duration = Duration::from_secs(120);
const MAX_REASON: usize = 500;
/// The most contacts one stop may hold.
const MAX_HOLD: usize = 10_000;

/// Answers one stop request.
pub(crate) async fn answer(cancellations: &Cancellations, payload: &[u8]) -> StopReply {
    let refused = |r: Rejected| StopReply {
        result: Some(stop_reply::Result::Rejected(r)),
    };
    let req = match StopRequest::decode(payload) {
        Ok(r) => r,
        Err(e) => {
            return refused(Rejected::new(
                ErrorCode::Undecodable,
                "",
                format!("not a herald.v1.StopRequest: {e}"),
            ));
        }
    };
    if let Err(r) = check(&req) {
        return refused(r);
    }
    match stop(cancellations, &req).await {
        Ok(s) => StopReply {
            result: Some(stop_reply::Result::Stopped(s)),
        },
        Err(e) => {
            error!(error = %e, "could not record a stop");
            refused(Rejected::new(
                ErrorCode::Unavailable,
                "",
                "the stop could not be recorded just now; ask again",
            ))
        }
    }
}

/// The durable consumer of the stops stream.
pub(crate) fn stream_consumer(ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        stream: subjects::STREAM_STOPS.into(),
        durable: "delivery-stops".into(),
        filter: subjects::DELIVERY_STOPS.into(),
        concurrency: 16,
        ack_wait,
        max_deliver: -1,
    }
}

/// Applies one stop from the stream. Applying twice changes nothing, so
/// the copy the desk already applied is simply acknowledged.
pub(crate) async fn from_stream(
    cancellations: &Cancellations,
    msg: jetstream::Message,
) -> Disposition {
    let Ok(mut req) = StopRequest::decode(msg.payload.clone()) else {
        error!("undecodable stop dropped");
        return Disposition::Reject;
    };
    if let Err(r) = check(&req) {
        error!(field = %r.field, "invalid stop dropped");
        return Disposition::Reject;
    }
    req.wait_ms = 0;
    match stop(cancellations, &req).await {
        Ok(_) => Disposition::Ack,
        Err(e) => {
            warn!(error = %e, "stop not applied yet; retrying");
            Disposition::Retry(Duration::from_secs(1))
        }
    }
}

/// Applies every stop waiting in the stream, before delivery takes a job.
/// Stops handed to another instance and not yet acknowledged are that
/// instance's to apply (or come back to one after `ack_wait`).
pub(crate) async fn catch_up(
    bus: &Bus,
    cancellations: &Cancellations,
    spec: &ConsumerSpec,
) -> anyhow::Result<usize> {
    let mut consumer = bus::bind_consumer(bus, spec).await?;
    let mut applied = 0;
    loop {
        if consumer.info().await?.num_pending == 0 {
            break;
        }
        let mut batch = consumer
            .fetch()
            .max_messages(256)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("reading the stops stream: {e}"))?;
            let d = from_stream(cancellations, m.clone()).await;
            bus::settle(&m, d).await;
            applied += 1;
        }
    }
    if applied > 0 {
        info!(
            applied,
            "stops asked for while delivery was away are in force"
        );
    }
    Ok(applied)
}

fn check(req: &StopRequest) -> Result<(), Rejected> {
    let bad = |field: String, why: String| Rejected::new(ErrorCode::InvalidArgument, field, why);
    let holding = !req.hold_contacts.is_empty() || !req.release_hold.is_empty();
    if req.keys.is_empty() && req.families.is_empty() && !holding {
        return Err(bad(
            "keys".into(),
            "name at least one key or family, or contacts to hold or a hold to release".into(),
        ));
    }
    if !req.hold_contacts.is_empty() {
        cancel_keys::check_key(&req.hold_id).map_err(|why| bad("hold_id".into(), why))?;
    }
    if req.hold_contacts.len() > MAX_HOLD {
        return Err(bad(
            "hold_contacts".into(),
            format!("at most {MAX_HOLD} contacts per request"),
        ));
    }
    for (i, c) in req.hold_contacts.iter().enumerate() {
        cancel_keys::check_key(c).map_err(|why| bad(format!("hold_contacts[{i}]"), why))?;
    }
    if !req.release_hold.is_empty() {
        cancel_keys::check_key(&req.release_hold).map_err(|why| bad("release_hold".into(), why))?;
    }
    if req.keys.len() + req.families.len() > 4 * MAX_KEYS {
        return Err(bad(
            "keys".into(),
            format!("at most {} keys and families together", 4 * MAX_KEYS),
        ));
    }
    for (i, k) in req.keys.iter().enumerate() {
        cancel_keys::check_key(k).map_err(|why| bad(format!("keys[{i}]"), why))?;
    }
    if req.check_only && !req.families.is_empty() {
        return Err(bad("families".into(), "a check names keys only".into()));
    }
    for (i, f) in req.families.iter().enumerate() {
        cancel_keys::check_key(&f.family)
            .map_err(|why| bad(format!("families[{i}].family"), why))?;
        if f.before == 0 {
            return Err(bad(
                format!("families[{i}].before"),
                "must be a position after the first".into(),
            ));
        }
    }
    if req.reason.chars().count() > MAX_REASON || req.reason.chars().any(char::is_control) {
        return Err(bad(
            "reason".into(),
            format!("must be at most {MAX_REASON} printable characters"),
        ));
    }
    if Duration::from_millis(u64::from(req.wait_ms)) > MAX_WAIT {
        return Err(bad(
            "wait_ms".into(),
            format!("must be at most {} ms", MAX_WAIT.as_millis()),
        ));
    }
    Ok(())
}

async fn stop(cancellations: &Cancellations, req: &StopRequest) -> redis::RedisResult<Stopped> {
    if req.check_only {
        let found = cancellations.first_cancelled(&req.keys).await?;
        let (stopped_key, stopped_reason) = found.unwrap_or_default();
        return Ok(Stopped {
            idle: true,
            stopped_key,
            stopped_reason,
            ..Default::default()
        });
    }
    let reason = match req.reason.trim() {
        "" => "stopped",
        r => r,
    };
    // A release is applied before a holding of the same request, so a
    // request cannot hold what it releases.
    if !req.release_hold.is_empty() {
        let released = cancellations.holds().release(&req.release_hold).await?;
        info!(hold = %req.release_hold, released, "hold released");
    }
    if !req.hold_contacts.is_empty() {
        let held = cancellations
            .holds()
            .hold(&req.hold_id, &req.hold_contacts)
            .await?;
        info!(hold = %req.hold_id, contacts = req.hold_contacts.len(), held, "contacts held");
    }
    let mut first = Vec::with_capacity(req.keys.len());
    for k in &req.keys {
        first.push(cancellations.cancel(k, reason).await?);
    }
    for f in &req.families {
        cancellations
            .stop_before(&f.family, f.before, reason)
            .await?;
    }
    // A send that passed the check just before is let finish, so that once
    // the asker has the answer nothing carrying the keys goes out.
    let mut idle = true;
    if req.wait_ms > 0 {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(req.wait_ms));
        let watched = req
            .keys
            .iter()
            .map(String::as_str)
            .chain(req.families.iter().map(|f| f.family.as_str()));
        for k in watched {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !cancellations.wait_idle(k, left).await? {
                idle = false;
            }
        }
    }
    info!(
        keys = req.keys.len(),
        families = req.families.len(),
        idle,
        "stop recorded"
    );
    Ok(Stopped {
        first,
        idle,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::FamilyStop;

    #[test]
    fn every_bad_field_is_named() {
        let base = StopRequest {
            keys: vec!["inq-8".into()],
            ..Default::default()
        };
        assert!(check(&base).is_ok());
        let hold = StopRequest {
            hold_contacts: vec!["ria".into()],
            hold_id: "breach-ntf_1".into(),
            ..Default::default()
        };
        assert!(check(&hold).is_ok(), "a hold alone is a stop");
        let cases = [
            (StopRequest::default(), "keys"),
            (
                StopRequest {
                    keys: vec!["a.b".into()],
                    ..Default::default()
                },
                "keys[0]",
            ),
            (
                StopRequest {
                    families: vec![FamilyStop {
                        family: "esc-C".into(),
                        before: 0,
                    }],
                    ..Default::default()
                },
                "families[0].before",
            ),
            (
                StopRequest {
                    reason: "x\u{7}".into(),
                    ..base.clone()
                },
                "reason",
            ),
            (
                StopRequest {
                    wait_ms: 10 * 60 * 1000,
                    ..base.clone()
                },
                "wait_ms",
            ),
            (
                StopRequest {
                    check_only: true,
                    families: vec![FamilyStop {
                        family: "esc-C".into(),
                        before: 3,
                    }],
                    ..base.clone()
                },
                "families",
            ),
            (
                StopRequest {
                    hold_contacts: vec!["ria".into()],
                    ..Default::default()
                },
                "hold_id",
            ),
            (
                StopRequest {
                    hold_contacts: vec!["r i a".into()],
                    hold_id: "breach-ntf_1".into(),
                    ..Default::default()
                },
                "hold_contacts[0]",
            ),
            (
                StopRequest {
                    release_hold: "a.b".into(),
                    ..Default::default()
                },
                "release_hold",
            ),
        ];
        for (req, field) in cases {
            assert_eq!(check(&req).unwrap_err().field, field, "{req:?}");
        }
    }
}
