//! Publishing: to JetStream with a producer span whose trace context rides
//! in the headers, confirmed or not; core NATS; and asking another service
//! over request/reply.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        context::{PublishAckFuture, PublishErrorKind},
    },
};
use prost::Message;
use tracing::Instrument;

use super::{AskError, Bus, PublishError};
use crate::telemetry::spans::publish_span;

impl Bus {
    /// Publishes to JetStream inside a producer span whose trace context
    /// rides in the headers. `msg_id` makes a repeated publish within the
    /// duplicate window a no-op. Returns once the message is sent; await the
    /// future for the stream's confirmation.
    pub async fn publish<M: Message>(
        &self,
        subject: String,
        msg: &M,
        msg_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let span = publish_span(&subject, msg_id);
        let mut headers = HeaderMap::new();
        crate::telemetry::inject_from(&span, &mut headers);
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(msg.encode_to_vec().into())
            .headers(headers);
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        self.js
            .send_publish(subject.clone(), publish)
            .instrument(span.clone())
            .await
            .map_err(|e| {
                span.record("error.type", "publish_failed");
                span.record("otel.status_code", "error");
                PublishError {
                    subject,
                    reason: e.to_string(),
                }
            })
    }

    /// Publishes and waits for JetStream to confirm the message is stored.
    pub async fn publish_durable<M: Message>(
        &self,
        subject: String,
        msg: &M,
        msg_id: Option<&str>,
    ) -> Result<(), PublishError> {
        let ack = self.publish(subject.clone(), msg, msg_id).await?;
        confirm(subject, ack).await
    }

    /// Publishes a core NATS message (no persistence) inside a producer
    /// span, with its trace context.
    pub async fn publish_core<M: Message>(&self, subject: String, msg: &M) -> anyhow::Result<()> {
        let span = publish_span(&subject, None);
        let mut headers = HeaderMap::new();
        crate::telemetry::inject_from(&span, &mut headers);
        self.client
            .publish_with_headers(subject, headers, msg.encode_to_vec().into())
            .instrument(span)
            .await?;
        Ok(())
    }

    /// Asks another service over NATS request/reply and decodes its
    /// answer, waiting at most `within`. The error says whether nobody
    /// answered (the service is not running) or the answer was garbled.
    pub async fn ask<Req: Message, Rep: Message + Default>(
        &self,
        subject: &str,
        req: &Req,
        within: Duration,
    ) -> Result<Rep, AskError> {
        let answer = tokio::time::timeout(
            within,
            self.client
                .request(subject.to_string(), req.encode_to_vec().into()),
        )
        .await
        .map_err(|_| AskError::NoAnswer(format!("no answer on {subject} within {within:?}")))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                AskError::NoResponders(format!("nothing answers on {subject}"))
            }
            _ => AskError::NoAnswer(format!("{subject}: {e}")),
        })?;
        Rep::decode(answer.payload)
            .map_err(|e| AskError::Garbled(format!("the answer on {subject} does not decode: {e}")))
    }
}

/// Waits for a publish confirmation.
pub async fn confirm(subject: String, ack: PublishAckFuture) -> Result<(), PublishError> {
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) => Err(PublishError {
            subject,
            reason: match e.kind() {
                PublishErrorKind::TimedOut => "timed out".into(),
                _ => e.to_string(),
            },
        }),
    }
}
