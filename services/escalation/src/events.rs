//! The case stream as this service reads it: each lifecycle event or clock
//! event, in stream order, run through the reducer on the stored state,
//! its effects carried out, and the new state swapped in. A message at or
//! before the position already applied is a redelivery and changes
//! nothing.

use async_nats::jetstream;
use herald_proto::{
    Message, subjects,
    v1::{AcceptedCaseEvent, CaseEvent, SlaEvent},
};
use herald_runtime::{
    bus::{self, Disposition},
    clock::millis,
    telemetry::record_outcome,
};
use tracing::{Instrument, error};

use crate::{Escalator, decide};

/// A lifecycle event or a clock event, as read from the stream.
enum Input {
    Event(Box<CaseEvent>),
    Sla(SlaEvent),
}

impl Input {
    fn case_id(&self) -> &str {
        match self {
            Input::Event(e) => &e.case_id,
            Input::Sla(e) => &e.case_id,
        }
    }
}

impl Escalator {
    /// One message of the case stream: a lifecycle event or a clock event.
    /// An error is retried in place (see `bus::consume_case_partitions`).
    pub(crate) async fn on_message(&self, msg: jetstream::Message) -> anyhow::Result<Disposition> {
        let span = bus::process_span("escalation case message", &msg);
        async {
            let span = tracing::Span::current();
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            let input = match subjects::parse_case_subject(&msg.subject) {
                Some(subjects::CaseSubject::Event(_)) => {
                    AcceptedCaseEvent::decode(msg.payload.clone())
                        .ok()
                        .and_then(|a| a.event)
                        .map(|e| Input::Event(Box::new(e)))
                }
                Some(subjects::CaseSubject::Sla(_)) => {
                    SlaEvent::decode(msg.payload.clone()).ok().map(Input::Sla)
                }
                None => None,
            };
            let Some(input) = input else {
                record_outcome(&span, "undecodable", true);
                error!(subject = %msg.subject, "undecodable case message dropped");
                return Ok(Disposition::Reject);
            };
            span.record("case_id", input.case_id());
            self.apply(&input, seq).await?;
            record_outcome(&span, "applied", false);
            Ok(Disposition::Ack)
        }
        .instrument(span)
        .await
    }

    async fn apply(&self, input: &Input, seq: u64) -> anyhow::Result<()> {
        let case_id = input.case_id();
        loop {
            let stored = self.store.get(case_id).await?;
            if stored.as_ref().is_some_and(|s| s.state.last_seq >= seq) {
                return Ok(());
            }
            let now = millis(self.clock.now());
            let state = stored.as_ref().map(|s| &s.state);
            let decided = match input {
                Input::Event(ev) => decide::on_event(&self.policies, ev, seq, state, now),
                Input::Sla(ev) => decide::on_sla(&self.policies, ev, seq, state, now),
            };
            let Some((mut next, effects)) = decided else {
                return Ok(());
            };
            next.last_seq = seq;
            let counted = self.perform(case_id, &mut next, effects).await?;
            if self.store.swap(case_id, stored.as_ref(), &next).await? {
                self.count(&counted);
                return Ok(());
            }
        }
    }
}
