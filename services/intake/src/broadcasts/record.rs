//! Storing an accepted coordinator command in the broadcast stream and
//! documenting it, so the broadcast service acts on it and the trail says
//! who asked.

use super::*;

impl Desk {
    /// Stores an accepted command and answers "accepted", or "unavailable"
    /// if it could not be stored (the coordinator may send it again).
    pub(super) async fn accept(
        &self,
        attempt: &Attempt<'_>,
        command: BroadcastCommand,
        summary: String,
        duplicate: bool,
    ) -> BroadcastReply {
        let who = attempt.coordinator.unwrap_or_default();
        if let Err(e) = self
            .store(
                &command,
                attempt.broadcast_id,
                attempt.case_id,
                who,
                summary,
            )
            .await
        {
            error!(error = %e, action = attempt.action, "broadcast command not stored");
            return self.refuse(attempt, unavailable()).await;
        }
        self.count(
            attempt.action,
            if duplicate { "duplicate" } else { "accepted" },
        );
        herald_runtime::telemetry::record_outcome(&tracing::Span::current(), "accepted", false);
        accepted(attempt.broadcast_id, duplicate, who)
    }

    /// Documents the command in the trail, then writes it to the stream;
    /// `Err` means the caller must hear "unavailable" and may retry.
    pub(super) async fn store(
        &self,
        command: &BroadcastCommand,
        broadcast_id: &str,
        case_id: &str,
        who: &str,
        summary: String,
    ) -> Result<(), PublishError> {
        let entry = Entry {
            notification_id: broadcast_id.to_string(),
            case_id: trail_case(case_id),
            lane: Lane::Emergency,
            actor: Some(who.to_string()),
            caller: command.caller.clone(),
            record_id: Some(format!("{}-accepted", command.command_id)),
            ..Entry::new(AuditStep::Broadcast, summary)
        }
        .attr("command", &command.command_id);
        let audit = self.auditor.record(entry).await;
        self.bus
            .publish_durable(
                subjects::BROADCAST_COMMANDS.to_string(),
                command,
                Some(&command.command_id),
            )
            .await?;
        match audit {
            Ok(ack) => {
                if let Err(e) =
                    herald_runtime::bus::confirm(subjects::audit_all().into(), ack).await
                {
                    error!(error = %e, "broadcast command not documented");
                }
            }
            Err(e) => error!(error = %e, "broadcast command not documented"),
        }
        info!(command = %command.command_id, "broadcast command accepted");
        Ok(())
    }
}
