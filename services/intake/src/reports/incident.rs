//! A case's incident report on demand (SOP 002 §5: "Incident Report | Ad
//! hoc | Structured form | Email/Phone notification"): the case as its
//! trail tells it (reference, where it stands, clocks met and missed, the
//! open action items) with the operator's summary of what happened, sent
//! to the case's client by email and by a phone call together. Asking
//! again with the same summary sends nothing new.

use herald_proto::{
    subjects,
    v1::{
        AuditStep, Channel, CommunicationType, ErrorCode, IncidentReport, IntakeReply, Lane,
        NotificationRequest, Priority, Recipient, Rejected, ReportKind, ReportSent, intake_reply,
    },
};
use herald_runtime::audit::Entry;
use sha2::{Digest, Sha256};

use super::{at_ms, figures};
use crate::{Intake, validate::reject};

/// The incident report's template (its email and its call).
pub const INCIDENT_REPORT: &str = "incident_report";
/// The longest summary an incident report takes.
pub const MAX_SUMMARY: usize = 500;

impl Intake {
    /// Sends `ask`'s incident report; a refusal names the field.
    pub(crate) async fn send_incident_report(
        &self,
        ask: &IncidentReport,
        requester: &str,
    ) -> anyhow::Result<Result<ReportSent, Rejected>> {
        let bad =
            |field: &str, why: String| Ok(Err(reject(ErrorCode::InvalidArgument, field, why)));
        if !subjects::is_subject_token(&ask.case_id) {
            return bad("incident.case_id", "is not a case id".into());
        }
        let summary = ask.summary.trim();
        if summary.is_empty() {
            return bad("incident.summary", "is empty: say what happened".into());
        }
        if summary.chars().count() > MAX_SUMMARY {
            return bad(
                "incident.summary",
                format!("is longer than {MAX_SUMMARY} characters"),
            );
        }
        let trail =
            herald_runtime::audit::read_trail(&self.bus, &subjects::audit_of_case(&ask.case_id))
                .await?;
        let opened = trail.iter().find(|r| {
            r.step == AuditStep::CaseEvent as i32
                && r.attributes.get("kind").map(String::as_str) == Some("opened")
        });
        let Some(opened) = opened else {
            return Ok(Err(reject(
                ErrorCode::NotFound,
                "incident.case_id",
                format!("no case {:?} has opened", ask.case_id),
            )));
        };
        let client = opened.contact_id.clone();
        let staff = opened.responsible_staff.clone();
        let Some(contact) = self.directory.get(&client).await? else {
            return Ok(Err(reject(
                ErrorCode::UnknownContact,
                "incident.case_id",
                format!("the case's client {client:?} is not in the directory"),
            )));
        };
        let end = trail.iter().map(at_ms).max().unwrap_or(0) + 1;
        let line = figures::case_line(&ask.case_id, &trail, 0, end);
        let (reference, standing, met, missed, steps) = match &line {
            Some(l) => (
                l.reference.clone(),
                match l.standing {
                    figures::Standing::Open => "open",
                    figures::Standing::Resolved => "resolved",
                },
                l.met,
                l.missed,
                l.open_actions.clone(),
            ),
            None => (ask.case_id.clone(), "open", 0, 0, Vec::new()),
        };
        let digest = hex::encode(&Sha256::digest(summary.as_bytes())[..8]);
        let req = NotificationRequest {
            idempotency_key: format!("report:incident:{}:{digest}", ask.case_id),
            communication_type: CommunicationType::Incident as i32,
            priority: Priority::High as i32,
            recipients: vec![Recipient::contact(&client)],
            template_id: INCIDENT_REPORT.into(),
            // Email and phone, as the SOP's table says, whatever the
            // client's usual channel.
            channel_override: vec![Channel::Email as i32, Channel::Voice as i32],
            params: [
                ("reference", reference.clone()),
                ("summary", summary.to_string()),
                ("status", standing.to_string()),
                ("met", met.to_string()),
                ("missed", missed.to_string()),
                (
                    "next_steps",
                    if steps.is_empty() {
                        "-".to_string()
                    } else {
                        steps
                            .iter()
                            .map(|s| format!("- {s}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    },
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            case_id: ask.case_id.clone(),
            requester: requester.to_string(),
            responsible_staff: staff.clone(),
            ..Default::default()
        };
        let reply: IntakeReply = self.submit_as(req, Lane::Normal, "intake", false).await;
        let accepted = match reply.result {
            Some(intake_reply::Result::Accepted(a)) => a,
            Some(intake_reply::Result::Rejected(r)) if r.code == ErrorCode::Unavailable as i32 => {
                anyhow::bail!("intake could not store the incident report: {}", r.message)
            }
            Some(intake_reply::Result::Rejected(r)) => return Ok(Err(r)),
            None => anyhow::bail!("no answer to the incident report's request"),
        };
        let entry = Entry {
            notification_id: accepted.notification_id.clone(),
            case_id: ask.case_id.clone(),
            contact_id: contact.id.clone(),
            responsible_staff: staff,
            record_id: Some(format!("rep-incident-{}-{digest}-sent", ask.case_id)),
            actor: Some(requester.to_string()),
            ..Entry::new(
                AuditStep::ReportSent,
                format!("incident report on {reference} sent by email and phone"),
            )
        }
        .attr("report", ReportKind::Incident.name())
        .attr("period", &reference);
        self.auditor.record(entry).await?.await?;
        Ok(Ok(ReportSent {
            notification_id: accepted.notification_id,
            duplicate: accepted.duplicate,
            period: reference,
            cases: 1,
        }))
    }
}
