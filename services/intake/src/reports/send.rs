//! Sending one client's report for one period: their cases' trails read
//! (the cases from the trail index, each case's records from its own
//! trail), the figures worked out and put in words, the email submitted
//! through intake's own front door with an idempotency key naming the
//! client, the kind and the period, and the send documented in the
//! client's trail.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use herald_directory::contacts::Contact;
use herald_proto::v1::{
    Attachment, AuditStep, CommunicationType, ErrorCode, IntakeReply, Lane, NotificationRequest,
    Priority, Recipient, Rejected, ReportKind, ReportSent, intake_reply,
};
use herald_runtime::{audit::Entry, clock::millis};

use super::{figures, pdf, render};
use crate::Intake;

/// The status update's template (weekly and biweekly).
pub const STATUS_UPDATE: &str = "status_update";
/// The progress report's template (monthly, with the PDF).
pub const PROGRESS_REPORT: &str = "progress_report";

impl Intake {
    /// Sends `contact`'s `kind` report of `[from, until)`, named `period`
    /// (its nominal date, or the instant an on-demand one ends). A refusal
    /// is documented and handed back; a failure of storage is an error,
    /// for the caller to try again.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_report(
        &self,
        contact: &Contact,
        kind: ReportKind,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        period: &str,
        tz: Tz,
        missed: u32,
        requester: &str,
    ) -> anyhow::Result<Result<ReportSent, Rejected>> {
        let (from_ms, until_ms) = (millis(from), millis(until));
        let trails = self
            .trail
            .client_trails(&self.bus, &contact.id, until_ms)
            .await?;
        let f = figures::figures(&trails, from_ms, until_ms);
        let params = render::params(&f, &contact.name, &contact.language, tz);
        let mut attachments = Vec::new();
        let template = if kind == ReportKind::Monthly {
            let (title, lines) = render::document(&f, &contact.name, &contact.language, tz);
            attachments.push(Attachment {
                // A file name holds no ':' (an on-demand period is an
                // instant).
                filename: format!("progress-report-{}.pdf", period.replace(':', "")),
                content_type: "application/pdf".into(),
                content: pdf::document(&title, &lines),
            });
            PROGRESS_REPORT
        } else {
            STATUS_UPDATE
        };
        let req = NotificationRequest {
            idempotency_key: format!("report:{}:{}:{period}", contact.id, kind.name()),
            communication_type: CommunicationType::StatusReport as i32,
            priority: Priority::Normal as i32,
            recipients: vec![Recipient::contact(&contact.id)],
            template_id: template.into(),
            params,
            requester: requester.to_string(),
            attachments,
            ..Default::default()
        };
        let words = render::period(&f, &contact.language, tz);
        let reply: IntakeReply = self.submit_as(req, Lane::Normal, "intake", false).await;
        let accepted = match reply.result {
            Some(intake_reply::Result::Accepted(a)) => a,
            Some(intake_reply::Result::Rejected(r)) if r.code == ErrorCode::Unavailable as i32 => {
                anyhow::bail!("intake could not store the report: {}", r.message)
            }
            Some(intake_reply::Result::Rejected(r)) => {
                self.report_failed(
                    &contact.id,
                    kind,
                    period,
                    &format!("refused: {} {}", r.field, r.message),
                )
                .await?;
                return Ok(Err(r));
            }
            None => anyhow::bail!("no answer to the report's request"),
        };
        let mut summary = format!(
            "{} report sent for {words}: {} cases, {} opened, {} closed, clocks met {}, missed {}",
            kind.name(),
            f.cases.len(),
            f.opened(),
            f.closed(),
            f.met(),
            f.missed()
        );
        if missed > 0 {
            summary.push_str(&format!(
                "; {missed} earlier report(s) fell due while Herald was stopped and were not sent"
            ));
        }
        let entry = Entry {
            notification_id: accepted.notification_id.clone(),
            contact_id: contact.id.clone(),
            record_id: Some(format!("rep-{}-{}-{period}-sent", contact.id, kind.name())),
            actor: Some(requester.to_string()),
            ..Entry::new(AuditStep::ReportSent, summary)
        }
        .attr("report", kind.name())
        .attr("period", period)
        .attr("cases", f.cases.len());
        self.auditor.record(entry).await?.await?;
        Ok(Ok(ReportSent {
            notification_id: accepted.notification_id,
            duplicate: accepted.duplicate,
            period: words,
            cases: f.cases.len() as u32,
        }))
    }
}
