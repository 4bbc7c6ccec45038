//! Herald's JetStream streams: work queues for jobs consumed once, limits
//! retention for what is read again (status, audit, cases, dead letters).
//!
//! Only the provisioning identity declares them ([`Bus::provision_streams`],
//! `herald provision`); a service waits until the streams it works with
//! exist ([`Bus::await_streams`]), so nobody shapes a stream by connecting
//! first.

use std::time::Duration;

use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use herald_config::{NatsConfig, RetentionConfig};
use herald_proto::{subjects, v1::Lane};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Bus;
use crate::retry::Backoff;

impl Bus {
    /// Declares every Herald stream (creating or updating it) as this
    /// configuration describes it, each kept as long as `retention` says.
    pub async fn provision_streams(&self, retention: &RetentionConfig) -> anyhow::Result<()> {
        for config in stream_configs(&self.cfg, retention) {
            let name = config.name.clone();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
            let mut attempt = 0;
            loop {
                match self.js.create_or_update_stream(config.clone()).await {
                    Ok(_) => break,
                    // Two provisioners at once: the loser retries and
                    // finds it there.
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        debug!(stream = %name, error = %e, "declaring stream; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => anyhow::bail!("declaring stream {name}: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Waits until every stream in `names` exists, saying once a while
    /// which one is missing, until `shutdown` fires.
    pub async fn await_streams(
        &self,
        names: &[&str],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        for name in names {
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
            let mut tries = 0u32;
            loop {
                match self.js.get_stream(*name).await {
                    Ok(_) => break,
                    Err(e) if tries % 20 == 5 => {
                        warn!(stream = %name, error = %e, "waiting for stream; declare Herald's streams with `herald provision`");
                    }
                    Err(e) => debug!(stream = %name, error = %e, "stream not there yet"),
                }
                tries += 1;
                if !backoff.wait(shutdown).await {
                    anyhow::bail!("shut down while waiting for stream {name}");
                }
            }
        }
        Ok(())
    }
}

/// Every stream Herald uses. Work queues for jobs that are consumed once;
/// limits retention for what is read again (status, audit, dead letters).
/// Every stream has a `max_age` (SOP 003 §6.5): what was not consumed by
/// then, or has been read again long enough, is destroyed.
pub fn stream_configs(cfg: &NatsConfig, keep: &RetentionConfig) -> Vec<stream::Config> {
    let base = |name: &str, subjects: Vec<String>, retention, max_age| stream::Config {
        name: name.to_string(),
        subjects,
        retention,
        max_age,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: cfg.duplicate_window,
        ..Default::default()
    };
    let mut out = Vec::new();
    for lane in Lane::ALL {
        out.push(base(
            subjects::notify_stream(lane),
            vec![subjects::notify_accepted(lane).to_string()],
            RetentionPolicy::WorkQueue,
            keep.requests,
        ));
        out.push(base(
            subjects::delivery_stream(lane),
            vec![subjects::delivery_jobs(lane)],
            RetentionPolicy::WorkQueue,
            keep.delivery_jobs,
        ));
    }
    out.push(base(
        subjects::STREAM_STOPS,
        vec![subjects::DELIVERY_STOPS.to_string()],
        RetentionPolicy::WorkQueue,
        keep.delivery_jobs,
    ));
    out.push(base(
        subjects::STREAM_BROADCAST,
        vec![subjects::BROADCAST_COMMANDS.to_string()],
        RetentionPolicy::WorkQueue,
        keep.requests,
    ));
    out.push(base(
        subjects::STREAM_STATUS,
        vec![subjects::delivery_statuses()],
        RetentionPolicy::Limits,
        keep.status,
    ));
    // People's replies hold what they wrote: by default kept as long as
    // the statuses, long enough for a service that was down to read them.
    out.push(base(
        subjects::STREAM_INBOUND,
        vec![subjects::inbound_all().to_string()],
        RetentionPolicy::Limits,
        keep.inbound,
    ));
    out.push(base(
        subjects::STREAM_AUDIT,
        vec![subjects::audit_all().to_string()],
        RetentionPolicy::Limits,
        cfg.audit_retention,
    ));
    // Read by several services (sla, escalation) at their own pace: kept,
    // not consumed, for as long as the trail (it holds feedback comments,
    // which are destroyed with it).
    out.push(base(
        subjects::STREAM_CASES,
        vec![subjects::case_all()],
        RetentionPolicy::Limits,
        cfg.audit_retention,
    ));
    out.push(base(
        subjects::STREAM_DLQ,
        vec![subjects::dlq_all()],
        RetentionPolicy::Limits,
        keep.dead_letters,
    ));
    // Approved template versions: the organisation's wording, naming no
    // person, kept for as long as they may be rendered (a version stays
    // usable until a newer one is approved, and pinned after that), one
    // message per version.
    out.push(stream::Config {
        max_messages_per_subject: 1,
        ..base(
            subjects::STREAM_TEMPLATES,
            vec![subjects::templates_all().to_string()],
            RetentionPolicy::Limits,
            Duration::ZERO,
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_stream_has_an_owner_and_every_owned_stream_is_declared() {
        let declared: std::collections::BTreeSet<String> =
            stream_configs(&NatsConfig::default(), &RetentionConfig::default())
                .into_iter()
                .map(|c| c.name)
                .collect();
        let owned: std::collections::BTreeSet<String> = subjects::STREAMS
            .iter()
            .map(|s| s.stream.to_string())
            .collect();
        assert_eq!(declared, owned);
    }

    #[test]
    fn every_stream_is_kept_only_as_long_as_its_retention_says() {
        let keep = RetentionConfig {
            requests: Duration::from_secs(3601),
            delivery_jobs: Duration::from_secs(3602),
            status: Duration::from_secs(3603),
            inbound: Duration::from_secs(3604),
            dead_letters: Duration::from_secs(3605),
            ..Default::default()
        };
        let nats = NatsConfig {
            audit_retention: Duration::from_secs(3606),
            ..Default::default()
        };
        let age = |name: &str| {
            stream_configs(&nats, &keep)
                .into_iter()
                .find(|c| c.name == name)
                .map(|c| c.max_age.as_secs())
        };
        for (stream, secs) in [
            (subjects::STREAM_NOTIFY, 3601),
            (subjects::STREAM_NOTIFY_EMERGENCY, 3601),
            (subjects::STREAM_BROADCAST, 3601),
            (subjects::STREAM_DELIVERY, 3602),
            (subjects::STREAM_DELIVERY_EMERGENCY, 3602),
            (subjects::STREAM_STOPS, 3602),
            (subjects::STREAM_STATUS, 3603),
            (subjects::STREAM_INBOUND, 3604),
            (subjects::STREAM_DLQ, 3605),
            (subjects::STREAM_AUDIT, 3606),
            (subjects::STREAM_CASES, 3606),
        ] {
            assert_eq!(age(stream), Some(secs), "{stream}");
        }
        // Nothing about people is kept forever; template wording names
        // nobody and stays while it may be rendered.
        for c in stream_configs(&NatsConfig::default(), &RetentionConfig::default()) {
            let people = subjects::STREAMS
                .iter()
                .find(|s| s.stream == c.name)
                .is_some_and(|s| s.may_name_people());
            assert_eq!(c.max_age.is_zero(), !people, "{}", c.name);
        }
    }
}
