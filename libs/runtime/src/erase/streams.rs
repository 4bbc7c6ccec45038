//! Removing a person's messages from a JetStream stream: every message is
//! read by its sequence number and the ones that name the person are
//! deleted with the server's secure erase (their bytes overwritten on
//! disk, not only unlinked).
//!
//! JetStream cannot rewrite a message, so a message that names the person
//! goes whole. Deleting by scan was chosen over crypto-shredding (a key per
//! person, destroyed at erasure): it needs no key store beside every
//! message nor any reader able to decrypt, and it leaves nothing to
//! trust in a key's destruction. It costs one request per message in the
//! stream (`$JS.API.STREAM.MSG.GET`), a few thousand a second: minutes for
//! a trail of millions, acceptable for an act as rare as an erasure, and
//! the price is paid by the erasure alone. Reading by sequence works the
//! same on work queues, where a second consumer is not allowed.

use std::{future::Future, pin::Pin};

use async_nats::jetstream::{
    self,
    message::StreamMessage,
    stream::{LastRawMessageErrorKind, Stream},
};

use super::Person;

/// What is done with a message naming the person just before it is
/// deleted: nothing ([`Nothing`]), or keeping what in it is about others.
pub trait BeforeErase: Send {
    /// Done with `msg` of `stream`; an error keeps the message, and ends
    /// the stream's erasure with it.
    fn before<'a>(
        &'a mut self,
        stream: &'a str,
        msg: &'a StreamMessage,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;
}

/// Deletes without looking further.
pub struct Nothing;

impl BeforeErase for Nothing {
    fn before<'a>(
        &'a mut self,
        _: &'a str,
        _: &'a StreamMessage,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }
}

/// Whether `msg` (its subject, headers and payload) names `person`.
pub fn names(person: &Person, msg: &StreamMessage) -> bool {
    person.named_in(msg.subject.as_bytes())
        || msg.headers.iter().any(|(name, values)| {
            person.named_in(name.to_string().as_bytes())
                || values
                    .iter()
                    .any(|v| person.named_in(v.as_str().as_bytes()))
        })
        || person.named_in(&msg.payload)
}

/// Deletes every message of `stream` naming `person`, handing each to
/// `before` first (to collect the ids it carries, or to write again what
/// in it is about others); returns how many were deleted. A message is
/// deleted only once `before` succeeded with it. A message gone meanwhile
/// (consumed from a work queue, aged out) is skipped.
pub async fn erase(
    js: &jetstream::Context,
    stream: &str,
    person: &Person,
    before: &mut dyn BeforeErase,
) -> anyhow::Result<u64> {
    let mut s: Stream = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow::anyhow!("reading stream {stream}: {e}"))?;
    let state = s
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("reading stream {stream}: {e}"))?
        .state
        .clone();
    if state.messages == 0 || person.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    for seq in state.first_sequence..=state.last_sequence {
        let msg = match s.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
            Err(e) => anyhow::bail!("reading {stream} message {seq}: {e}"),
        };
        if !names(person, &msg) {
            continue;
        }
        before.before(stream, &msg).await?;
        match s.delete_message(seq).await {
            Ok(_) => removed += 1,
            // Consumed or aged out between the read and the delete.
            Err(e) if e.to_string().contains("no message found") => {}
            Err(e) => anyhow::bail!("erasing {stream} message {seq}: {e}"),
        }
    }
    Ok(removed)
}
