//! The case stream as this service reads it: each lifecycle event, in
//! order within its partition, starts, stops, pauses or resumes the case's
//! clocks (`clock.rs`); what changed goes to the trail, then the clocks
//! and their timers are swapped in together.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use herald_proto::{
    Message, subjects,
    v1::{AcceptedCaseEvent, AuditStep, CaseChannel, CaseEvent, CaseEventKind, Priority},
};
use herald_runtime::{
    audit::Entry,
    bus::{self, Disposition},
    clock::from_millis,
    telemetry::record_outcome,
};
use tracing::{Instrument, error};

use crate::{
    Sla,
    clock::{CaseClocks, Change, Opening, clock_letter},
    local_time,
};

impl Sla {
    /// One lifecycle event; an error is retried in place (see
    /// `bus::consume_case_partitions`).
    pub(crate) async fn on_case_event(
        &self,
        msg: jetstream::Message,
    ) -> anyhow::Result<Disposition> {
        let span = bus::process_span("sla case event", &msg);
        async {
            let span = tracing::Span::current();
            let Some(ev) = AcceptedCaseEvent::decode(msg.payload.clone())
                .ok()
                .and_then(|a| a.event)
            else {
                record_outcome(&span, "undecodable", true);
                error!("undecodable case event dropped");
                return Ok(Disposition::Reject);
            };
            span.record("case_id", ev.case_id.as_str());
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            self.apply(&ev, seq).await?;
            record_outcome(&span, "applied", false);
            Ok(Disposition::Ack)
        }
        .instrument(span)
        .await
    }

    /// Applies one event to the case's clocks: the trail first (record ids
    /// are fixed, so a retry writes nothing new), then state and timers in
    /// one swap.
    async fn apply(&self, ev: &CaseEvent, seq: u64) -> anyhow::Result<()> {
        let kind = ev.kind();
        let at: DateTime<Utc> = match &ev.occurred_at {
            Some(t) => herald_proto::system_time(Some(t)).into(),
            None => self.clock.now(),
        };
        let mut documented = false;
        loop {
            let stored = self.store.get(&ev.case_id).await?;
            if stored.as_ref().is_some_and(|s| s.clocks.last_seq >= seq) {
                return Ok(());
            }
            let (mut next, changes) = match (kind, &stored) {
                (CaseEventKind::Opened, None) => {
                    let d = ev.details.clone().unwrap_or_default();
                    let channel = d.channel();
                    let priority = d.priority();
                    let specs = self.policies.clocks_for(channel, priority, &d.team);
                    let cal = self.calendars.for_team(&d.team);
                    CaseClocks::open(
                        Opening {
                            team: &d.team,
                            channel,
                            priority,
                            specs: &specs,
                        },
                        at,
                        cal,
                    )
                }
                // Opened twice, or an event for a case this service never
                // saw open: nothing to time.
                (CaseEventKind::Opened, Some(_)) | (_, None) => return Ok(()),
                (CaseEventKind::Updated, Some(s)) => {
                    let mut c = s.clocks.clone();
                    if let Some(d) = &ev.details {
                        if !d.team.is_empty() {
                            c.team = d.team.clone();
                        }
                        if d.priority != 0 {
                            c.priority = d.priority;
                        }
                    }
                    (c, Vec::new())
                }
                (_, Some(s)) => {
                    let mut c = s.clocks.clone();
                    let specs = self.policies.clocks_for(
                        CaseChannel::try_from(c.channel).unwrap_or_default(),
                        Priority::try_from(c.priority).unwrap_or_default(),
                        &c.team,
                    );
                    let cal = self.calendars.for_team(&c.team);
                    let changes = c.apply(kind, at, cal, &specs);
                    (c, changes)
                }
            };
            if changes.is_empty() && kind != CaseEventKind::Opened && kind != CaseEventKind::Updated
            {
                return Ok(());
            }
            if !documented && !changes.is_empty() {
                self.document(&ev.case_id, seq, &next, &changes).await?;
                documented = true;
            }
            next.last_seq = seq;
            if self.store.swap(&ev.case_id, stored.as_ref(), &next).await? {
                return Ok(());
            }
        }
    }

    /// The trail entries for what one event did to the clocks, written as
    /// one batch and confirmed stored.
    async fn document(
        &self,
        case_id: &str,
        seq: u64,
        clocks: &CaseClocks,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        let cal = self.calendars.for_team(&clocks.team);
        let entries: Vec<Entry> = changes
            .iter()
            .map(|ch| {
                let kind = ch.kind();
                let clock = clocks.clocks.iter().find(|c| c.kind() == kind);
                let step = match ch {
                    Change::Started { .. } | Change::Resumed { .. } => AuditStep::ClockStarted,
                    Change::Paused { .. } => AuditStep::ClockPaused,
                    Change::Stopped { .. } => AuditStep::ClockStopped,
                };
                let mut summary = ch.describe();
                if let (
                    Change::Started { deadline_ms, .. } | Change::Resumed { deadline_ms, .. },
                    Some(c),
                ) = (ch, clock)
                {
                    summary = format!(
                        "{summary}: {} (policy {}), due {}",
                        self.policies
                            .written(&c.policy, kind, c.target_s, c.business),
                        c.policy,
                        local_time(*deadline_ms, cal)
                    );
                }
                let mut e = Entry {
                    case_id: case_id.to_string(),
                    record_id: Some(format!("sla-{case_id}-{seq}-{}", clock_letter(kind))),
                    ..Entry::new(step, summary)
                }
                .attr("clock", kind.name());
                if let Some(c) = clock {
                    e = e
                        .attr("policy", &c.policy)
                        .attr("generation", c.generation)
                        .attr("deadline", from_millis(c.deadline_ms).to_rfc3339());
                }
                e
            })
            .collect();
        let ack = self.auditor.record_all(entries).await?;
        bus::confirm(subjects::audit_all().to_string(), ack).await?;
        Ok(())
    }
}
