//! The reports desk (`herald.v1.intake.reports`, operators): a client's
//! report sent now for the period ending at a given moment, a case's
//! incident report, and a client's agreed schedules with when each report
//! is next due. Every refusal names the field.

use chrono::{DateTime, Months, TimeDelta, Utc};
use herald_proto::{
    Message, subjects,
    v1::{
        ErrorCode, Rejected, ReportKind, ReportReply, ReportRequest, ReportSchedule,
        ReportSchedules, SendReport, report_reply, report_request,
    },
};
use tracing::error;

use crate::{Intake, unavailable, validate::reject};

/// The start of the period of a `kind` report ending at `until`.
pub(crate) fn period_start(kind: ReportKind, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match kind {
        ReportKind::Weekly => Some(until - TimeDelta::days(7)),
        ReportKind::Biweekly => Some(until - TimeDelta::days(14)),
        ReportKind::Monthly => until.checked_sub_months(Months::new(1)),
        _ => None,
    }
}

impl Intake {
    /// Answers one request from NATS.
    pub(crate) async fn answer_reports(&self, msg: async_nats::Message) -> ReportReply {
        let refused = |r: Rejected| ReportReply {
            result: Some(report_reply::Result::Rejected(r)),
        };
        let Some(caller) = crate::caller(&msg) else {
            return refused(crate::unnamed_caller());
        };
        let req = match ReportRequest::decode(msg.payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                return refused(reject(
                    ErrorCode::Undecodable,
                    "",
                    format!("not a herald.v1.ReportRequest: {e}"),
                ));
            }
        };
        let requester = if req.requester.trim().is_empty() {
            caller.to_string()
        } else {
            req.requester.trim().to_string()
        };
        let result = match req.ask {
            None => Err(reject(
                ErrorCode::InvalidArgument,
                "ask",
                "is required: send, incident or schedule_of",
            )),
            Some(report_request::Ask::Send(s)) => self.send_now(&s, &requester).await,
            Some(report_request::Ask::Incident(i)) => self
                .send_incident_report(&i, &requester)
                .await
                .unwrap_or_else(|e| {
                    error!(error = %e, "incident report not sent");
                    Err(unavailable())
                })
                .map(report_reply::Result::Sent),
            Some(report_request::Ask::ScheduleOf(client)) => self.schedules_of(&client).await,
        };
        ReportReply {
            result: Some(result.unwrap_or_else(report_reply::Result::Rejected)),
        }
    }

    async fn send_now(
        &self,
        s: &SendReport,
        requester: &str,
    ) -> Result<report_reply::Result, Rejected> {
        let bad = |field: &str, why: &str| reject(ErrorCode::InvalidArgument, field, why);
        if !subjects::is_subject_token(&s.client_contact_id) {
            return Err(bad("send.client_contact_id", "is not a contact id"));
        }
        let kind = ReportKind::try_from(s.kind).unwrap_or_default();
        let until = match &s.until {
            Some(t) => DateTime::<Utc>::from(herald_proto::system_time(Some(t))),
            None => self.reports.clock().now(),
        };
        let Some(from) = period_start(kind, until) else {
            return Err(bad("send.kind", "is weekly, biweekly or monthly"));
        };
        let contact = match self.directory.get(&s.client_contact_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(reject(
                    ErrorCode::UnknownContact,
                    "send.client_contact_id",
                    format!("no contact {:?} in the directory", s.client_contact_id),
                ));
            }
            Err(e) => {
                error!(error = %e, "contact lookup failed");
                return Err(unavailable());
            }
        };
        // The zone of the client's agreed schedule of this kind, else
        // theirs.
        let agreed = self.reports.of(&contact.id);
        let tz = agreed
            .iter()
            .find(|a| a.kind == kind)
            .or(agreed.first())
            .map(|a| a.zone(Some(&contact), self.reports.calendar(&a.team)))
            .or_else(|| contact.time_zone.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let period = until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        match self
            .send_report(&contact, kind, from, until, &period, tz, 0, requester)
            .await
        {
            Ok(Ok(sent)) => Ok(report_reply::Result::Sent(sent)),
            Ok(Err(r)) => Err(r),
            Err(e) => {
                error!(error = %e, "report not sent");
                Err(unavailable())
            }
        }
    }

    async fn schedules_of(&self, client: &str) -> Result<report_reply::Result, Rejected> {
        if !subjects::is_subject_token(client) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "schedule_of",
                "is not a contact id",
            ));
        }
        let contact = self.directory.get(client).await.map_err(|e| {
            error!(error = %e, "contact lookup failed");
            unavailable()
        })?;
        let mut schedules = Vec::new();
        for a in self.reports.of(client) {
            let cal = self.reports.calendar(&a.team);
            let tz = a.zone(contact.as_ref(), cal);
            let next = self
                .reports
                .next_of(&a, contact.as_ref())
                .await
                .map_err(|e| {
                    error!(error = %e, "report schedule unreadable");
                    unavailable()
                })?;
            let language = contact.as_ref().map_or("en", |c| c.language.as_str());
            schedules.push(ReportSchedule {
                client_contact_id: client.to_string(),
                kind: a.kind as i32,
                cadence: a.schedule(tz).words(),
                time_zone: tz.name().to_string(),
                next_due: next.map(|o| herald_proto::timestamp(o.due.into())),
                next_period: next
                    .map(|o| {
                        super::render::period(
                            &super::figures::Figures {
                                from_ms: herald_runtime::clock::millis(o.from),
                                until_ms: herald_runtime::clock::millis(o.until),
                                cases: Vec::new(),
                            },
                            language,
                            tz,
                        )
                    })
                    .unwrap_or_default(),
            });
        }
        Ok(report_reply::Result::Schedules(ReportSchedules {
            schedules,
        }))
    }
}
