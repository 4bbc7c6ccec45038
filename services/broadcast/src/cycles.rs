//! A broadcast's time: the durable timers of its call cycles and its end,
//! what each does when it fires, and the end itself, however it comes
//! (duration over, everyone confirmed, cancelled).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_durable::{stop::Stop, timers::Due};
use herald_proto::broadcasts;
use herald_proto::{
    Message, subjects,
    v1::{AuditStep, BroadcastState, StartBroadcast, UpdateBroadcast},
};
use herald_runtime::{audit::Entry, bus};
use tracing::{info, warn};

use crate::{
    Broadcasts,
    commands::fields,
    plan::{self, Broadcast, Content, Wave},
};

/// The timers of a broadcast: call cycles 2.. at `interval` steps from the
/// start (the first cycle is the start), and the end after `duration`.
pub fn schedule(
    broadcast_id: &str,
    started: DateTime<Utc>,
    interval: Duration,
    cycles: u32,
    duration: Duration,
) -> Vec<(String, DateTime<Utc>)> {
    let step = TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX);
    let mut out: Vec<(String, DateTime<Utc>)> = (2..=cycles)
        .map(|k| {
            (
                format!("{broadcast_id}|c{k}"),
                started + step * (k as i32 - 1),
            )
        })
        .collect();
    out.push((
        format!("{broadcast_id}|end"),
        started + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX),
    ));
    out
}

/// What a timer id asks for.
#[derive(Debug, PartialEq, Eq)]
enum TimerKind<'a> {
    Cycle(&'a str, u32),
    End(&'a str),
}

fn parse_timer(id: &str) -> Option<TimerKind<'_>> {
    let (b, what) = id.rsplit_once('|')?;
    if what == "end" {
        return Some(TimerKind::End(b));
    }
    Some(TimerKind::Cycle(b, what.strip_prefix('c')?.parse().ok()?))
}

/// Why a broadcast ended early, with nothing left to stop.
pub(crate) const EVERYONE_CONFIRMED: &str = "everyone confirmed";

impl Broadcasts {
    /// Ends a broadcast once: stops its timers, stops what is still waiting
    /// in delivery (unless it ended because everyone confirmed), forgets
    /// its phone numbers, and documents every recipient's outcome.
    pub(crate) async fn end(
        &self,
        id: &str,
        state: BroadcastState,
        why: &str,
        actor: Option<&str>,
    ) -> anyhow::Result<()> {
        let now = self.clock.now();
        let reason = if state == BroadcastState::Cancelled {
            why
        } else {
            ""
        };
        if !self.store.finish(id, state, now, reason).await? {
            return Ok(());
        }
        let meta = self.store.meta(id).await?.unwrap_or_default();
        for (timer, _) in schedule(
            id,
            now,
            Duration::from_secs(1),
            meta.cycles_total,
            Duration::ZERO,
        ) {
            self.timers.cancel(&timer).await?;
        }
        let everyone_confirmed = why == EVERYONE_CONFIRMED;
        if !everyone_confirmed {
            Stop::key(broadcasts::cancel_key(id), why)
                .send(&self.bus)
                .await?;
        }
        self.store.retire(id).await?;
        self.metrics.event(state.name());
        let status = self.view(id, true).await?;
        let mut entries = vec![
            Entry {
                actor: actor.map(str::to_string),
                record_id: Some(format!("{id}-ended")),
                ..self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Broadcast,
                    format!(
                        "{} ({why}): {} of {} confirmed, {} not confirmed, {} unreachable",
                        state.name(),
                        status.confirmed,
                        status.recipients,
                        status.not_confirmed,
                        status.unreachable
                    ),
                )
            }
            .attr("confirmed", status.confirmed)
            .attr("not_confirmed", status.not_confirmed)
            .attr("unreachable", status.unreachable),
        ];
        for (i, r) in status.recipient_rows.iter().enumerate() {
            if r.confirmed {
                continue;
            }
            entries.push(Entry {
                contact_id: r.contact_id.clone(),
                record_id: Some(format!("{id}-r{i}-outcome")),
                ..self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Broadcast,
                    format!(
                        "recipient r{i}: {} (email {}, calls {} ({}), sms {})",
                        r.outcome.replace('_', " "),
                        r.email,
                        r.calls,
                        r.voice,
                        r.sms
                    ),
                )
            });
        }
        for chunk in entries.chunks(500) {
            let ack = self.auditor.record_all(chunk.to_vec()).await?;
            bus::confirm(subjects::audit_all().into(), ack).await?;
        }
        info!(broadcast_id = id, state = state.name(), "broadcast ended");
        Ok(())
    }

    /// Fires due timers: call cycles and ends. Returns the ids handled.
    pub(crate) async fn fire(&self, batch: Vec<Due>) -> Vec<String> {
        let _busy = self.precedence.busy();
        let mut done = Vec::new();
        for due in batch {
            let result = match parse_timer(&due.id) {
                Some(TimerKind::Cycle(id, k)) => self.recall(id, k).await,
                Some(TimerKind::End(id)) => {
                    self.end(id, BroadcastState::Finished, "its duration is over", None)
                        .await
                }
                None => Ok(()),
            };
            match result {
                Ok(()) => done.push(due.id),
                Err(e) => {
                    warn!(timer = %due.id, error = %e, "broadcast timer failed; it fires again")
                }
            }
        }
        done
    }

    /// Call cycle `k`: everyone who has not confirmed is called again.
    async fn recall(&self, id: &str, k: u32) -> anyhow::Result<()> {
        let Some(meta) = self.store.meta(id).await? else {
            return Ok(());
        };
        if meta.state != BroadcastState::Active {
            return Ok(());
        }
        let confirmed = self.store.confirmed(id).await?;
        let people = plan::lookup(&self.directory, &self.store.people(id).await?).await?;
        let (start, update) = self.store.content(id).await?;
        let content = match update {
            Some(u) => Content::of_update(&UpdateBroadcast::decode(u.as_slice())?),
            None => Content::of_start(&StartBroadcast::decode(start.as_slice())?),
        };
        let b = Broadcast {
            id,
            case_id: &meta.case_id,
            communication_type: meta.communication_type,
            accepted_at: None,
            content: &content,
        };
        let (jobs, problems) = self.plan(
            &b,
            &people,
            |i| !confirmed.contains_key(&i),
            Wave::Recall(k),
        );
        self.store.queued(id, &fields(id, &jobs), &[]).await?;
        self.publish(&jobs).await?;
        self.store.cycle_begun(id, k).await?;
        self.metrics.event("recalled");
        self.audit(Entry {
            record_id: Some(format!("{id}-c{k}")),
            ..self.entry(
                id,
                &meta.case_id,
                AuditStep::Broadcast,
                format!(
                    "call cycle {k} of {}: {} unconfirmed recipient(s) called again, {} confirmed{}",
                    meta.cycles_total,
                    jobs.len(),
                    confirmed.len(),
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", problems.join("; "))
                    }
                ),
            )
        })
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cycles_follow_the_start_at_each_interval_and_the_end_follows_the_duration() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 6, 17, 0, 0).unwrap();
        let s = schedule(
            "fire",
            t0,
            Duration::from_secs(300),
            3,
            Duration::from_secs(3600),
        );
        let want = vec![
            ("fire|c2".to_string(), t0 + TimeDelta::minutes(5)),
            ("fire|c3".to_string(), t0 + TimeDelta::minutes(10)),
            ("fire|end".to_string(), t0 + TimeDelta::hours(1)),
        ];
        assert_eq!(s, want);
        assert_eq!(
            schedule("x", t0, Duration::from_secs(60), 1, Duration::from_secs(60)).len(),
            1
        );
        assert_eq!(parse_timer("fire|c3"), Some(TimerKind::Cycle("fire", 3)));
        assert_eq!(parse_timer("a|b|end"), Some(TimerKind::End("a|b")));
        assert_eq!(parse_timer("fire|x"), None);
    }
}
