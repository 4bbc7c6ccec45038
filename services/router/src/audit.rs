//! The audit entries routing writes: what was routed where, what was
//! rendered for each job, and who was skipped and why. Kept apart from the
//! routing step so the wording of the trail, and the record ids derived
//! from the notification that let a retried routing write the same entry
//! rather than a second one, are in one place.

use herald_proto::v1::{
    AcceptedNotification, AuditStep, Channel, DeliveryJob, Lane, NotificationRequest,
};
use herald_runtime::audit::Entry;

/// The notification's summary: how many jobs on which channels, for how
/// many recipients, and how many were skipped.
pub(crate) fn routed(
    n: &AcceptedNotification,
    req: &NotificationRequest,
    lane: Lane,
    jobs: &[DeliveryJob],
    people: usize,
    skipped: usize,
) -> Entry {
    let channels: Vec<&str> = jobs
        .iter()
        .map(|j| Channel::try_from(j.channel).unwrap_or_default().name())
        .collect();
    Entry {
        notification_id: n.notification_id.clone(),
        case_id: req.case_id.clone(),
        responsible_staff: req.responsible_staff.clone(),
        lane,
        record_id: Some(format!("{}-routed", n.notification_id)),
        ..Entry::new(
            AuditStep::Routed,
            format!(
                "routed to {} job(s) ({}) for {} recipient(s){}",
                jobs.len(),
                channels.join(", "),
                people,
                if skipped > 0 {
                    format!(", {skipped} skipped")
                } else {
                    String::new()
                }
            ),
        )
    }
}

/// What one job will carry: template, version, language, channel, and
/// whether the content was withheld.
pub(crate) fn rendered(
    n: &AcceptedNotification,
    req: &NotificationRequest,
    job: &DeliveryJob,
    lane: Lane,
) -> Entry {
    let channel = Channel::try_from(job.channel).unwrap_or_default();
    Entry {
        notification_id: n.notification_id.clone(),
        case_id: req.case_id.clone(),
        channel,
        job_id: job.job_id.clone(),
        contact_id: job.contact_id.clone(),
        lane,
        record_id: Some(format!("{}-rendered", job.job_id)),
        ..Entry::new(
            AuditStep::Rendered,
            format!(
                "rendered {} v{} in {} for {}{}",
                job.template_id,
                job.template_version,
                job.language,
                channel.name(),
                if job.content_withheld {
                    " (content withheld: sensitive)"
                } else {
                    ""
                }
            ),
        )
    }
    .attr("fallbacks", job.fallbacks.len())
}

/// A recipient no channel could reach.
pub(crate) fn skipped(
    n: &AcceptedNotification,
    req: &NotificationRequest,
    contact_id: &str,
    index: usize,
    lane: Lane,
    reason: &str,
) -> Entry {
    Entry {
        notification_id: n.notification_id.clone(),
        case_id: req.case_id.clone(),
        contact_id: contact_id.to_string(),
        lane,
        record_id: Some(format!("{}-r{index}-skipped", n.notification_id)),
        ..Entry::new(AuditStep::Skipped, format!("recipient {index}: {reason}"))
    }
}

/// A recipient whose contact was deleted from the directory since intake.
/// Its id is derived like the others', so routing the notification again
/// after a redelivery writes the same record, which the audit stream
/// drops, not a second one.
pub(crate) fn contact_gone(
    notification_id: &str,
    req: &NotificationRequest,
    id: &str,
    index: usize,
    lane: Lane,
) -> Entry {
    Entry {
        notification_id: notification_id.to_string(),
        case_id: req.case_id.clone(),
        contact_id: id.to_string(),
        lane,
        record_id: Some(format!("{notification_id}-r{index}-gone")),
        ..Entry::new(
            AuditStep::Skipped,
            format!("recipient {index}: contact {id} no longer in the directory"),
        )
    }
}
