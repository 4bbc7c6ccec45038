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

/// Every message of `stream` naming `person`, read and left where it is.
pub async fn find(
    js: &jetstream::Context,
    stream: &str,
    person: &Person,
) -> anyhow::Result<Vec<StreamMessage>> {
    let mut found = Vec::new();
    let mut scan = Scan::open(js, stream, person).await?;
    while let Some(m) = scan.next_named(person).await? {
        found.push(m);
    }
    Ok(found)
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
    let mut removed = 0;
    let mut scan = Scan::open(js, stream, person).await?;
    while let Some(m) = scan.next_named(person).await? {
        before.before(stream, &m).await?;
        if scan.delete(m.sequence).await? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A stream read by sequence, from its first message to the last one it
/// held when the scan began.
struct Scan {
    stream: Stream,
    name: String,
    next: u64,
    last: u64,
}

impl Scan {
    async fn open(js: &jetstream::Context, name: &str, person: &Person) -> anyhow::Result<Scan> {
        let mut stream: Stream = js
            .get_stream(name)
            .await
            .map_err(|e| anyhow::anyhow!("reading stream {name}: {e}"))?;
        let state = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("reading stream {name}: {e}"))?
            .state
            .clone();
        let empty = state.messages == 0 || person.is_empty();
        Ok(Scan {
            stream,
            name: name.to_string(),
            // Sequences start at 1; an empty stream is read not at all.
            next: state.first_sequence.max(1),
            last: if empty { 0 } else { state.last_sequence },
        })
    }

    /// The next message naming `person`, or `None` at the end.
    async fn next_named(&mut self, person: &Person) -> anyhow::Result<Option<StreamMessage>> {
        while self.next <= self.last {
            let seq = self.next;
            self.next += 1;
            match self.stream.get_raw_message(seq).await {
                Ok(m) if names(person, &m) => return Ok(Some(m)),
                Ok(_) => {}
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => anyhow::bail!("reading {} message {seq}: {e}", self.name),
            }
        }
        Ok(None)
    }

    /// Deletes message `seq`, overwriting it; false if it was gone already
    /// (consumed or aged out since it was read).
    async fn delete(&self, seq: u64) -> anyhow::Result<bool> {
        match self.stream.delete_message(seq).await {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("no message found") => Ok(false),
            Err(e) => anyhow::bail!("erasing {} message {seq}: {e}", self.name),
        }
    }
}
