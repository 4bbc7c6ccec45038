//! The templates a service renders or checks with, kept current while it
//! runs: the shipped files, and every version an approver approved, read
//! from the approved-templates stream at start and followed from then on.
//! Each new version swaps in a rebuilt store; a reader takes the store of
//! the moment ([`LiveTemplates::current`]) and renders with it unchanged.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt;
use herald_content::templates::{Source, TemplateStore};
use herald_proto::{Message, subjects, v1::ApprovedTemplate};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{bus::Bus, retry::Backoff};

/// The current store, and how far into the stream it reaches.
pub struct LiveTemplates {
    current: RwLock<Arc<TemplateStore>>,
    /// The stream sequence of the last version applied (0: none).
    seen: watch::Sender<u64>,
}

impl LiveTemplates {
    /// A store that never changes (a service or test without the stream).
    pub fn fixed(store: TemplateStore) -> Arc<LiveTemplates> {
        Arc::new(LiveTemplates {
            current: RwLock::new(Arc::new(store)),
            seen: watch::Sender::new(0),
        })
    }

    /// The store of this moment.
    pub fn current(&self) -> Arc<TemplateStore> {
        match self.current.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The stream sequence of the newest version the store holds.
    pub fn seen(&self) -> u64 {
        *self.seen.borrow()
    }

    /// Waits until the store holds every version up to stream sequence
    /// `seq`, for at most `within`: whether it does.
    pub async fn reach(&self, seq: u64, within: Duration) -> bool {
        let mut rx = self.seen.subscribe();
        tokio::time::timeout(within, rx.wait_for(|s| *s >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Adds the versions read up to stream sequence `seq`.
    fn apply(&self, seq: u64, added: Vec<Source>) {
        if !added.is_empty() {
            let (next, problems) = self.current().with_approved(added);
            for p in problems {
                warn!(problem = %p, "approved template version not used");
            }
            match self.current.write() {
                Ok(mut s) => *s = Arc::new(next),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
            }
        }
        self.seen.send_if_modified(|s| {
            let moved = seq > *s;
            *s = (*s).max(seq);
            moved
        });
    }
}

/// Reads every approved version into `base` (the shipped files) before it
/// returns, and hands back the live store with the loop that follows the
/// stream until `shutdown`, for the service to run.
pub async fn follow(
    bus: &Bus,
    base: TemplateStore,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    Arc<LiveTemplates>,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
)> {
    let live = LiveTemplates::fixed(base);
    let stream = bus.js.get_stream(subjects::STREAM_TEMPLATES).await?;
    let consumer = reader(&stream, 1).await?;
    let pending = consumer.cached_info().num_pending;
    let mut read = 0;
    let mut added = Vec::new();
    let mut last = 0;
    while read < pending {
        let before = read;
        let mut batch = consumer
            .fetch()
            .max_messages((pending - read).min(500) as usize)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("reading approved templates: {e}"))?;
            read += 1;
            let (seq, src) = version_of(&m);
            last = last.max(seq);
            added.extend(src);
        }
        if read == before {
            break;
        }
    }
    let count = added.len();
    live.apply(last, added);
    info!(
        versions = count,
        "approved template versions read from the stream"
    );
    let following = live.clone();
    let run = async move {
        tail(stream, consumer, following, shutdown).await;
        Ok(())
    };
    Ok((live, run))
}

/// A reader of the stream from sequence `from`, acking nothing.
async fn reader(
    stream: &jetstream::stream::Stream,
    from: u64,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let deliver_policy = if from <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: from,
        }
    };
    Ok(stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?)
}

/// The stream sequence of `m` and the version it carries (none when it
/// cannot be read: logged and passed over).
fn version_of(m: &jetstream::Message) -> (u64, Option<Source>) {
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    match ApprovedTemplate::decode(m.payload.clone()) {
        Ok(t) => (
            seq,
            Some(Source::approved(&t.template_id, t.version, &t.source)),
        ),
        Err(e) => {
            warn!(error = %e, seq, "unreadable approved template passed over");
            (seq, None)
        }
    }
}

/// Applies each version as it is stored, until `shutdown`. When the
/// reader is lost (nats-server restarted, the connection dropped) a new
/// one starts after the last version applied.
async fn tail(
    stream: jetstream::stream::Stream,
    first: jetstream::consumer::Consumer<pull::Config>,
    live: Arc<LiveTemplates>,
    shutdown: CancellationToken,
) {
    let mut consumer = Some(first);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let c = match consumer.take() {
            Some(c) => c,
            None => match reader(&stream, live.seen() + 1).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "approved templates not followed; retrying");
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut messages = match c.messages().await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "approved templates not followed; retrying");
                if !backoff.wait(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = messages.next() => m,
            };
            match next {
                Some(Ok(m)) => {
                    let (seq, src) = version_of(&m);
                    if seq > live.seen() {
                        if let Some(s) = &src {
                            info!(template = %s.id, version = s.version, "approved template version now in use");
                        }
                        live.apply(seq, src.into_iter().collect());
                    }
                    backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
                }
                Some(Err(e)) => {
                    warn!(error = %e, "approved templates reader lost; starting another");
                    break;
                }
                None => break,
            }
        }
        if !backoff.wait(&shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_waits_until_the_store_reaches_a_sequence() {
        let (store, problems) = TemplateStore::build(Vec::new());
        assert!(problems.is_empty());
        let live = LiveTemplates::fixed(store);
        assert!(!live.reach(3, Duration::from_millis(20)).await);
        live.apply(
            3,
            vec![Source::approved("ack", 1, "[lang.en]\nsms = \"Hi\"\n")],
        );
        assert!(live.reach(3, Duration::from_millis(20)).await);
        assert_eq!(live.seen(), 3);
        assert_eq!(live.current().newest_version("ack"), 1);
        // An older sequence never moves it back.
        live.apply(2, Vec::new());
        assert_eq!(live.seen(), 3);
    }
}
