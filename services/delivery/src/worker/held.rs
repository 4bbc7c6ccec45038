//! Step 1 of the worker, continued: a job with sensitive content to a
//! contact a data breach holds waits in its stream until every hold on
//! that contact is released ([`crate::holds`]).

use std::time::Duration;

use herald_proto::v1::{AuditStep, Confidentiality, DeliveryJob};
use herald_runtime::{bus::Disposition, telemetry::record_outcome};
use tracing::{info, warn};

use super::Step;
use crate::Delivery;

/// How often a held job looks again.
const RECHECK: Duration = Duration::from_secs(2);

impl Delivery {
    pub(super) async fn not_held(&self, job: &DeliveryJob) -> Step<()> {
        let sensitive = job.confidentiality == Confidentiality::Sensitive as i32;
        if !sensitive || job.content_withheld || job.contact_id.is_empty() {
            return Ok(());
        }
        // A breach's own notification to the people it affected is how they
        // hear of it (SOP 003 §8, "communicate transparently"): its own
        // hold does not stop it.
        let own = herald_proto::broadcasts::breach_id(&job.notification_id);
        let ids = match self.cancellations.holds().on(&job.contact_id).await {
            Ok(mut ids) => {
                ids.retain(|id| *id != own);
                ids
            }
            Err(e) => {
                warn!(error = %e, "holds unreadable; will retry");
                return Err(Disposition::Retry(Duration::from_secs(1)));
            }
        };
        if ids.is_empty() {
            return Ok(());
        }
        record_outcome(&tracing::Span::current(), "held", false);
        info!(holds = %ids.join(","), "sensitive content held by a breach's containment");
        // Once per job and set of holds: the record id makes every recheck
        // the same record.
        let held_by = ids.join(", ");
        let entry = self.entry(
            job,
            AuditStep::Held,
            format!(
                "held: {} is affected by data breach {held_by}; sensitive content waits until the Data Protection Officer releases it",
                job.contact_id
            ),
            format!("{}-held-{}", job.job_id, ids.join("+")),
        );
        self.audit(entry).await;
        Err(Disposition::Retry(RECHECK))
    }
}
