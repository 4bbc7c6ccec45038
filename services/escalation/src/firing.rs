//! The durable timers of a case come due: the next repeat or level of its
//! escalation (`e:<case>`), the follow-up survey or its reminder
//! (`f:<case>`), the next reminder of an open action (`a:<case>`) or of a
//! meeting (`m:<case>`). Each is run through the reducer on the stored state, its
//! effects carried out, and the state swapped in with its next timers.

use futures::StreamExt;
use herald_durable::timers::Due;
use herald_runtime::clock::millis;
use tracing::warn;

use crate::{
    Escalator, decide,
    state::{Timer, parse_timer},
};

impl Escalator {
    /// Fires due escalation and follow-up timers.
    pub(crate) async fn fire(&self, batch: Vec<Due>) -> Vec<String> {
        let results = futures::stream::iter(batch)
            .map(|d| async move {
                let Some((which, case_id)) = parse_timer(&d.id) else {
                    warn!(timer = %d.id, "not an escalation timer; dropped");
                    return Some(d.id);
                };
                match self.on_timer(case_id, which).await {
                    Ok(()) => Some(d.id),
                    Err(e) => {
                        warn!(case_id, error = %e, "escalation timer failed; it fires again after its lease");
                        None
                    }
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        results.into_iter().flatten().collect()
    }

    async fn on_timer(&self, case_id: &str, which: Timer) -> anyhow::Result<()> {
        loop {
            let Some(stored) = self.store.get(case_id).await? else {
                return Ok(());
            };
            let now = millis(self.clock.now());
            let (mut st, effects) = decide::on_timer(&self.policies, &stored.state, which, now)?;
            let counted = self.perform(case_id, &mut st, effects).await?;
            // Written even when nothing was due: the swap also puts the
            // timers back where the state says they belong.
            if self.store.swap(case_id, Some(&stored), &st).await? {
                self.count(&counted);
                return Ok(());
            }
        }
    }
}
