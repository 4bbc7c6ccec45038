//! SOP 003 §8, the breach protocol: a side effect of a data-breach
//! notification, not a coordinator's request, so it skips the desk's
//! credential and field checks and goes straight to the broadcast service.

use herald_durable::stop::Stop;
use herald_proto::broadcasts;
use herald_proto::{
    subjects,
    v1::{
        Audience, AuditStep, BroadcastCommand, Cycles, Lane, NotificationRequest, Severity,
        StartBroadcast, broadcast_command::Command,
    },
};
use herald_runtime::{audit::Entry, bus::PublishError};
use tracing::error;

use super::{Desk, command};

impl Desk {
    /// SOP 003 §8: a data-breach notification also reaches the Data
    /// Protection Officer and management at once, by email and phone, each
    /// asked to confirm. Runs before the notification itself is stored, so
    /// a retry of the request (same notification id) repeats it harmlessly.
    pub(crate) async fn breach_protocol(
        &self,
        notification_id: &str,
        req: &NotificationRequest,
        caller: &str,
    ) -> Result<(), PublishError> {
        let broadcast_id = broadcasts::breach_id(notification_id);
        let reference = if req.case_id.is_empty() {
            notification_id.to_string()
        } else {
            req.case_id.clone()
        };
        let start = StartBroadcast {
            broadcast_id: broadcast_id.clone(),
            severity: Severity::Severe as i32,
            audience: Some(Audience {
                roles: self.cfg.breach_roles.clone(),
                ..Default::default()
            }),
            template_id: broadcasts::BREACH_TEMPLATE.into(),
            params: [("reference".to_string(), reference)].into(),
            case_id: req.case_id.clone(),
            cycles: Some(Cycles {
                interval_seconds: self.cfg.interval.as_secs() as u32,
                cycles: self.cfg.cycles,
                duration_seconds: self.cfg.duration.as_secs() as u32,
            }),
            ..Default::default()
        };
        let command = BroadcastCommand {
            notification_id: notification_id.to_string(),
            ..command(
                broadcasts::BREACH_ACTOR,
                caller,
                format!("start-{broadcast_id}"),
                Command::Start(start),
            )
        };
        self.bus
            .publish_durable(
                subjects::BROADCAST_COMMANDS.to_string(),
                &command,
                Some(&command.command_id),
            )
            .await?;
        let entry = entry(
            notification_id,
            req,
            caller,
            "protocol",
            AuditStep::Broadcast,
            format!(
                "breach protocol: broadcast {broadcast_id} to every {} by email and phone",
                self.cfg.breach_roles.join(" and ")
            ),
        )
        .attr("broadcast_id", &broadcast_id);
        if let Err(e) = self.auditor.record_durable(entry).await {
            error!(error = %e, "breach protocol not documented");
        }
        self.contain(notification_id, req, &broadcast_id, caller)
            .await
    }

    /// SOP 003 §8, "contain the breach and prevent further exposure":
    /// nothing sensitive goes to the contacts it affected until the Data
    /// Protection Officer releases it (`herald breach release`). Held in
    /// delivery under the breach's id before the notification is accepted.
    async fn contain(
        &self,
        notification_id: &str,
        req: &NotificationRequest,
        breach_id: &str,
        caller: &str,
    ) -> Result<(), PublishError> {
        if req.affected_contact_ids.is_empty() {
            return Ok(());
        }
        let reason = format!("data breach {breach_id} contained");
        Stop::hold(breach_id, req.affected_contact_ids.clone(), reason)
            .send(&self.bus)
            .await
            .map_err(|e| PublishError {
                subject: subjects::DELIVERY_STOP.to_string(),
                reason: format!("holding the affected contacts: {e}"),
            })?;
        let entry = entry(
            notification_id,
            req,
            caller,
            "contained",
            AuditStep::Held,
            format!(
                "breach contained: sensitive content to {} contact(s) held until the Data Protection Officer releases {breach_id}",
                req.affected_contact_ids.len()
            ),
        )
        .attr("broadcast_id", breach_id)
        .attr("contacts", req.affected_contact_ids.join(","));
        if let Err(e) = self.auditor.record_durable(entry).await {
            error!(error = %e, "breach containment not documented");
        }
        Ok(())
    }
}

/// A record of the breach protocol's step `what` in the breach
/// notification's trail, once per notification and step.
fn entry(
    notification_id: &str,
    req: &NotificationRequest,
    caller: &str,
    what: &str,
    step: AuditStep,
    summary: String,
) -> Entry {
    Entry {
        notification_id: notification_id.to_string(),
        case_id: req.case_id.clone(),
        lane: Lane::Emergency,
        actor: Some(broadcasts::BREACH_ACTOR.into()),
        caller: caller.to_string(),
        record_id: Some(format!("{notification_id}-breach-{what}")),
        ..Entry::new(step, summary)
    }
}
