//! Services that answer questions over NATS request/reply (`herald case
//! show` asks the sla service for a case's clocks and the escalation
//! service for its escalation), in a queue group so that any instance
//! answers.

use std::future::Future;

use bytes::Bytes;
use futures::StreamExt;
use herald_proto::{
    Message, subjects,
    v1::{CaseQuery, ErrorCode, Rejected},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::bus::Bus;

/// Answers requests on `subject` with `handler` until `shutdown`, one at a
/// time (they are reads of one key or two).
pub async fn serve<F, Fut>(
    bus: &Bus,
    subject: &str,
    queue: &str,
    shutdown: CancellationToken,
    handler: F,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>>
where
    F: Fn(Bytes) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<u8>> + Send,
{
    let mut sub = bus
        .client
        .queue_subscribe(subject.to_string(), queue.to_string())
        .await?;
    let client = bus.client.clone();
    Ok(tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            let reply = handler(msg.payload).await;
            if let Some(to) = msg.reply
                && let Err(e) = client.publish(to, reply.into()).await
            {
                warn!(error = %e, "could not send the reply");
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(())
    }))
}

/// Serves `CaseQuery` requests on `subject`: each case is looked up with
/// `look` and the outcome (a view, or a refusal naming the field) wrapped
/// by `reply`. `what` says what is kept per case ("clocks").
pub async fn serve_case_views<V, L, Fut>(
    bus: &Bus,
    subject: &str,
    queue: &str,
    shutdown: CancellationToken,
    what: &'static str,
    look: L,
    reply: fn(Result<V, Rejected>) -> Vec<u8>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>>
where
    V: Send + 'static,
    L: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Option<V>>> + Send + 'static,
{
    serve(bus, subject, queue, shutdown, move |payload| {
        let look = look.clone();
        async move { reply(case_view(&payload, what, look).await) }
    })
    .await
}

/// Reads a `CaseQuery` and looks the case up with `look`; every refusal
/// names the field. `what` says what is kept per case ("clocks").
pub async fn case_view<V, F, Fut>(payload: &[u8], what: &str, look: F) -> Result<V, Rejected>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<Option<V>>>,
{
    let refused = |code: ErrorCode, field: &str, message: String| Rejected {
        code: code as i32,
        field: field.into(),
        message,
    };
    let q = CaseQuery::decode(payload).map_err(|e| {
        refused(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.CaseQuery: {e}"),
        )
    })?;
    if !subjects::is_subject_token(&q.case_id) {
        return Err(refused(
            ErrorCode::InvalidArgument,
            "case_id",
            "must be letters, digits or - _ : @ + =".into(),
        ));
    }
    let case_id = q.case_id.clone();
    match look(q.case_id).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(refused(
            ErrorCode::NotFound,
            "case_id",
            format!("no {what} for case {case_id}"),
        )),
        Err(e) => {
            warn!(error = %e, "case query failed");
            Err(refused(
                ErrorCode::Unavailable,
                "",
                format!("the {what} could not be read just now"),
            ))
        }
    }
}
