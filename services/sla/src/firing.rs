//! Due timers fired: a clock's warning at the policy's fraction of its
//! target, its breach at the deadline. Each becomes an `SlaEvent` on the
//! case's subject with a fixed id and a line in the trail, and the clocks
//! are swapped in with their next timers.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_durable::timers::Due;
use herald_proto::{
    subjects,
    v1::{AuditStep, CaseChannel, ClockKind, SlaEvent, SlaEventKind},
};
use herald_runtime::{audit::Entry, bus, clock::from_millis};

use crate::metrics::SlaLabel;
use tracing::warn;

use crate::{
    Sla,
    clock::{self, CaseClocks, Fired, clock_letter, parse_timer_id},
    local_time,
    store::Stored,
};

impl Sla {
    /// Fires a batch of due timers; returns the ids finished with. Ids of
    /// cases that failed are left claimed and fire again once their lease
    /// runs out (their events carry fixed ids, so nothing is doubled).
    pub(crate) async fn fire(&self, batch: Vec<Due>) -> Vec<String> {
        let mut by_case: std::collections::BTreeMap<String, Vec<(ClockKind, String)>> =
            Default::default();
        let mut done = Vec::new();
        for d in batch {
            match parse_timer_id(&d.id) {
                Some((case, kind)) => by_case
                    .entry(case.to_string())
                    .or_default()
                    .push((kind, d.id.clone())),
                None => {
                    warn!(timer = %d.id, "not a clock timer; dropped");
                    done.push(d.id);
                }
            }
        }
        let cases: Vec<String> = by_case.keys().cloned().collect();
        let stored = match self.store.get_many(&cases).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "clock states unreadable; the timers fire again after their lease");
                return done;
            }
        };
        let results = futures::stream::iter(by_case.into_iter().zip(stored))
            .map(|((case, timers), stored)| async move {
                let kinds: Vec<ClockKind> = timers.iter().map(|(k, _)| *k).collect();
                match self.fire_case(&case, &kinds, stored).await {
                    Ok(()) => timers.into_iter().map(|(_, id)| id).collect(),
                    Err(e) => {
                        warn!(case_id = %case, error = %e, "firing a clock failed; it fires again after its lease");
                        Vec::new()
                    }
                }
            })
            .buffer_unordered(256)
            .collect::<Vec<Vec<String>>>()
            .await;
        done.extend(results.into_iter().flatten());
        done
    }

    /// Fires whatever is due on one case's clocks, publishes it, and
    /// records it together with the clocks' next timers.
    async fn fire_case(
        &self,
        case_id: &str,
        kinds: &[ClockKind],
        mut stored: Option<Stored>,
    ) -> anyhow::Result<()> {
        loop {
            // The case is gone (expired long after its clocks stopped):
            // the timer is stale.
            let Some(s) = stored else { return Ok(()) };
            let now = self.clock.now();
            let mut next = s.clocks.clone();
            let mut fired = Vec::new();
            for kind in kinds {
                if let Some(c) = next.clock_mut(*kind)
                    && let Some(f) = c.fire(now)
                {
                    fired.push((f, c.clone()));
                }
            }
            if !fired.is_empty() {
                self.publish_fired(case_id, &next, &fired, now).await?;
            }
            if self.store.swap(case_id, Some(&s), &next).await? {
                for (f, c) in &fired {
                    let label = SlaLabel {
                        lane: "normal".into(),
                        channel: CaseChannel::try_from(next.channel)
                            .unwrap_or_default()
                            .name()
                            .into(),
                        clock: c.kind().name().into(),
                    };
                    match f {
                        Fired::Warning => self.metrics.warnings.get_or_create(&label).inc(),
                        Fired::Breach => self.metrics.breaches.get_or_create(&label).inc(),
                    };
                }
                return Ok(());
            }
            stored = self.store.get(case_id).await?;
        }
    }

    /// Publishes an `SlaEvent` for each clock fired and its trail entry,
    /// and waits until all are stored.
    async fn publish_fired(
        &self,
        case_id: &str,
        case: &CaseClocks,
        fired: &[(Fired, clock::Clock)],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let cal = self.calendars.for_team(&case.team);
        let mut acks = Vec::new();
        let mut entries = Vec::new();
        for (f, c) in fired {
            let (kind, stage, step) = match f {
                Fired::Warning => (SlaEventKind::Warning, 'w', AuditStep::SlaWarning),
                Fired::Breach => (SlaEventKind::Breach, 'b', AuditStep::SlaBreach),
            };
            let event_id = format!(
                "{case_id}:{}:{}:{stage}",
                clock_letter(c.kind()),
                c.generation
            );
            let event = SlaEvent {
                event_id: event_id.clone(),
                case_id: case_id.to_string(),
                kind: kind as i32,
                clock: c.kind,
                deadline: Some(herald_proto::timestamp(from_millis(c.deadline_ms).into())),
                fired_at: Some(herald_proto::timestamp(now.into())),
                policy: c.policy.clone(),
                team: case.team.clone(),
                priority: case.priority,
                channel: case.channel,
                generation: c.generation,
            };
            let subject = subjects::sla_event(case_id);
            acks.push((
                subject.clone(),
                self.bus.publish(subject, &event, Some(&event_id)).await?,
            ));
            let summary = match f {
                Fired::Warning => format!(
                    "{} clock warning: {} left, due {}",
                    c.kind().name(),
                    herald_calendar::duration_words(c.seconds_left(now, cal), c.business),
                    local_time(c.deadline_ms, cal)
                ),
                Fired::Breach => format!(
                    "{} clock breached: {} (policy {}) ran out at {}",
                    c.kind().name(),
                    self.policies
                        .written(&c.policy, c.kind(), c.target_s, c.business),
                    c.policy,
                    local_time(c.deadline_ms, cal)
                ),
            };
            entries.push(
                Entry {
                    case_id: case_id.to_string(),
                    record_id: Some(format!("sla-{event_id}")),
                    ..Entry::new(step, summary)
                }
                .attr("clock", c.kind().name())
                .attr("policy", &c.policy)
                .attr("generation", c.generation)
                .attr("deadline", from_millis(c.deadline_ms).to_rfc3339()),
            );
        }
        // One batch per record: the duplicate window drops a batch by its
        // first id, and a retry may fire fewer clocks than this attempt.
        for e in entries {
            acks.push((
                subjects::audit_all().to_string(),
                self.auditor.record(e).await?,
            ));
        }
        for (subject, ack) in acks {
            bus::confirm(subject, ack).await?;
        }
        Ok(())
    }
}
