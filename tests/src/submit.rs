//! Sending requests the way a careful client does: each one retried with
//! the same idempotency key, through timeouts and outages, until intake
//! accepts it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_proto::{
    Message, subjects,
    v1::{ErrorCode, IntakeReply, Lane, NotificationRequest, intake_reply},
};

/// Submits one request until intake accepts it, as the system
/// [`crate::servers::PUBLISHER`] (`client` is that identity's, or the
/// kit's); returns the notification id. Retries what intake answers
/// "unavailable"; panics if intake refuses it otherwise, or has not
/// accepted it in two minutes.
pub async fn submit(client: &async_nats::Client, req: &NotificationRequest, lane: Lane) -> String {
    let payload = req.encode_to_vec();
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(
                subjects::from_caller(subjects::intake_notify(lane), crate::servers::PUBLISHER),
                payload.clone().into(),
            ),
        )
        .await;
        if let Ok(Ok(msg)) = reply
            && let Ok(reply) = IntakeReply::decode(msg.payload)
        {
            match reply.result {
                Some(intake_reply::Result::Accepted(a)) => return a.notification_id,
                // "Retry with the same key": what intake answers while it
                // cannot reach a store, as during a failover.
                Some(intake_reply::Result::Rejected(r)) if r.code() == ErrorCode::Unavailable => {}
                other => panic!("request {} refused: {other:?}", req.idempotency_key),
            }
        }
        assert!(
            Instant::now() < give_up,
            "intake never accepted {}",
            req.idempotency_key
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Submits every request on the normal lane, `parallel` at a time; the ids
/// in request order.
pub async fn submit_all(
    client: &async_nats::Client,
    reqs: Vec<NotificationRequest>,
    parallel: usize,
) -> Vec<String> {
    futures::stream::iter(reqs)
        .map(|r| {
            let c = client.clone();
            async move { submit(&c, &r, Lane::Normal).await }
        })
        .buffered(parallel)
        .collect()
        .await
}
