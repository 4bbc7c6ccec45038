//! The notification submit path, shared by NATS and gRPC: a request is
//! checked, deduplicated by its idempotency key and stored on its lane's
//! stream, and only then answered "accepted".

use std::time::Instant;

use herald_proto::{
    Message, subjects,
    v1::{
        Accepted, AcceptedNotification, AuditStep, CommunicationType, ErrorCode, IntakeReply, Lane,
        NotificationRequest, Priority, Rejected, intake_reply,
    },
};
use herald_runtime::{
    audit::Entry,
    metrics::{LaneLabel, ReasonLabel},
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tracing::{Instrument, error, info, warn};

use crate::{
    Intake,
    approvals::{
        self,
        state::{Held, Stage},
    },
    dedupe::Claim,
    note_refusal, unavailable,
    validate::{self, reject},
};

/// Counters an operator watches on intake.
pub(crate) struct Metrics {
    accepted: Family<LaneLabel, Counter>,
    duplicates: Family<LaneLabel, Counter>,
    pub(crate) rejected: Family<ReasonLabel, Counter>,
    latency: Family<LaneLabel, Histogram>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            accepted: Family::default(),
            duplicates: Family::default(),
            rejected: Family::default(),
            latency: herald_runtime::metrics::latency_family(),
        };
        registry.register(
            "intake_accepted",
            "Notification requests accepted",
            m.accepted.clone(),
        );
        registry.register(
            "intake_duplicates",
            "Requests answered from an idempotency key already seen",
            m.duplicates.clone(),
        );
        registry.register(
            "intake_rejected",
            "Requests refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "intake_request_seconds",
            "Time from receiving a request to answering it",
            m.latency.clone(),
        );
        m
    }
}

impl Intake {
    pub(crate) async fn handle_nats(&self, msg: async_nats::Message, lane: Lane) -> IntakeReply {
        let span = herald_runtime::bus::process_span("intake notify", &msg);
        async {
            if msg.payload.len() > self.max_payload {
                return self.refused(
                    lane,
                    reject(
                        ErrorCode::PayloadTooLarge,
                        "",
                        format!(
                            "request is {} bytes; the limit is {}",
                            msg.payload.len(),
                            self.max_payload
                        ),
                    ),
                );
            }
            let Some(caller) = crate::caller(&msg) else {
                return self.refused(lane, crate::unnamed_caller());
            };
            match NotificationRequest::decode(msg.payload.clone()) {
                Ok(req) => self.submit(req, lane, caller).await,
                Err(e) => self.refused(
                    lane,
                    reject(
                        ErrorCode::Undecodable,
                        "",
                        format!("not a herald.v1.NotificationRequest: {e}"),
                    ),
                ),
            }
        }
        .instrument(span)
        .await
    }

    fn refused(&self, lane: Lane, r: Rejected) -> IntakeReply {
        note_refusal(&self.metrics.rejected, lane, &r, "request");
        IntakeReply {
            result: Some(intake_reply::Result::Rejected(r)),
        }
    }

    /// Checks, deduplicates and queues one request from `caller` (the
    /// identity NATS or the gRPC key vouches for). The reply says accepted
    /// only once the notification is stored in JetStream, or held for
    /// approval in Redis with its trail records written.
    pub(crate) async fn submit(
        &self,
        req: NotificationRequest,
        hinted: Lane,
        caller: &str,
    ) -> IntakeReply {
        self.submit_as(req, hinted, caller, true).await
    }

    /// [`Intake::submit`], with the approval rules applied or not
    /// (`approvals`: false for the approvals' own messages).
    pub(crate) async fn submit_as(
        &self,
        req: NotificationRequest,
        hinted: Lane,
        caller: &str,
        approvals: bool,
    ) -> IntakeReply {
        let started = Instant::now();
        let contacts = match self.directory.get_many(&validate::contact_ids(&req)).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "contact lookup failed");
                return self.refused(hinted, unavailable());
            }
        };
        // The templates of this moment, and how far into the approved
        // versions they reach: the router renders with at least those.
        let (templates, templates_seen) = (self.templates.current(), self.templates.seen());
        let (template_id, template_version) = (req.template_id.clone(), req.template_version);
        let req = match validate::check(req, &contacts, &templates, &self.rules, &self.limits) {
            Ok(r) => r,
            Err(mut r) => {
                // A proposed version that is not approved: say where it
                // stands, not only that it cannot be used. (A template
                // whose only versions are proposals is unknown to the
                // store: the same holds for it.)
                if (r.field == "template_version" || r.field == "template_id")
                    && let Some(why) = self.template_refusal(&template_id, template_version).await
                {
                    r.field = "template_version".into();
                    r.message = why;
                }
                return self.refused(hinted, r);
            }
        };
        let lane = lane_for(&req, hinted);
        let plan = if approvals {
            match self
                .approvals
                .plan(&req, lane, &validate::directory_recipients(&req, &contacts))
                .await
            {
                Ok(Ok(plan)) => plan,
                Ok(Err(r)) => return self.refused(lane, r),
                Err(e) => {
                    error!(error = %e, "approval rules could not be checked");
                    return self.refused(lane, unavailable());
                }
            }
        } else {
            None
        };
        let span = tracing::Span::current();
        span.record("case_id", req.case_id.as_str());

        let fresh_id = herald_proto::ids::notification_id();
        let (claim, ticket) = match self.dedupe.claim(caller, &req, &fresh_id).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "idempotency check failed");
                return self.refused(lane, unavailable());
            }
        };
        let (id, duplicate) = match claim {
            Claim::New => (fresh_id, false),
            Claim::Done(id) => {
                span.record("notification_id", id.as_str());
                span.record("outcome", "duplicate");
                self.metrics
                    .duplicates
                    .get_or_create(&LaneLabel {
                        lane: lane.name().into(),
                    })
                    .inc();
                info!("duplicate request answered with the first notification id");
                return accepted(id, true);
            }
            Claim::Pending(id) => (id, true),
            Claim::Conflict => {
                return self.refused(
                    lane,
                    reject(
                        ErrorCode::IdempotencyConflict,
                        "idempotency_key",
                        "was already used for a different request; use a new key for a new notification",
                    ),
                );
            }
        };
        span.record("notification_id", id.as_str());

        let audit = Entry {
            notification_id: id.clone(),
            case_id: req.case_id.clone(),
            responsible_staff: req.responsible_staff.clone(),
            lane,
            caller: caller.to_string(),
            // One "accepted" per notification, however often a retry of
            // an unfinished request stores the notification again.
            record_id: Some(format!("{id}-accepted")),
            ..Entry::new(
                AuditStep::Accepted,
                format!(
                    "accepted {} for {} recipient(s), template {}",
                    CommunicationType::name_of(req.communication_type),
                    req.recipients.len(),
                    req.template_id
                ),
            )
        }
        .attr("requester", &req.requester)
        .attr("priority", Priority::name_of(req.priority))
        .attr(
            "communication_type",
            CommunicationType::name_of(req.communication_type),
        );
        // The "accepted" record is stored with the notification, in the
        // same write, so "accepted" is never answered without it; the
        // router writes it to the trail as the first record of its step.
        // The client of a case who wrote back is answered on the channel
        // they used. Only a remembered preference is lost if Redis cannot
        // say: the notification goes on the usual channels.
        let answer_on = if req.case_id.is_empty() {
            None
        } else {
            self.cases
                .answer_on(&req.case_id)
                .await
                .unwrap_or_else(|e| {
                    warn!(error = %e, "the client's last channel unreadable; usual channels used");
                    None
                })
        };
        let record = AcceptedNotification {
            notification_id: id.clone(),
            request: Some(req),
            accepted_at: Some(herald_proto::now()),
            lane: lane as i32,
            accepted: Some(self.auditor.build(audit)),
            answer_on,
            templates_seen,
        };
        if let Some(plan) = plan {
            return match self.hold_for_approval(plan, &record, caller).await {
                Ok(()) => {
                    self.dedupe.complete(ticket, &id);
                    span.record("outcome", "awaiting_approval");
                    info!("first contact held for approval");
                    reply(id, duplicate, true)
                }
                Err(e) => {
                    error!(error = %e, "notification not held for approval");
                    self.refused(lane, unavailable())
                }
            };
        }
        if let Some(req) = &record.request
            && req.communication_type == CommunicationType::DataBreach as i32
            && let Err(e) = self.broadcasts.breach_protocol(&id, req, caller).await
        {
            error!(error = %e, "breach protocol broadcast not stored");
            return self.refused(lane, unavailable());
        }
        let stored = self
            .bus
            .publish_durable(
                subjects::notify_accepted(lane).to_string(),
                &record,
                Some(&id),
            )
            .await;
        if let Err(e) = stored {
            error!(error = %e, "notification not stored");
            return self.refused(lane, unavailable());
        }
        self.dedupe.complete(ticket, &id);
        let lane_label = LaneLabel {
            lane: lane.name().into(),
        };
        span.record("outcome", if duplicate { "duplicate" } else { "accepted" });
        if duplicate {
            self.metrics.duplicates.get_or_create(&lane_label).inc();
        } else {
            self.metrics.accepted.get_or_create(&lane_label).inc();
        }
        self.metrics
            .latency
            .get_or_create(&lane_label)
            .observe(started.elapsed().as_secs_f64());
        reply(id, duplicate, false)
    }

    /// Stores `record` held for approval, then its trail records, before
    /// "accepted, awaiting approval" is answered.
    async fn hold_for_approval(
        &self,
        plan: approvals::Plan,
        record: &AcceptedNotification,
        caller: &str,
    ) -> anyhow::Result<()> {
        let req = record.request.clone().unwrap_or_default();
        let now = herald_runtime::clock::millis(chrono::Utc::now());
        let timeout = i64::try_from(self.approvals.timeout().as_millis()).unwrap_or(i64::MAX);
        let held = Held {
            id: record.notification_id.clone(),
            rule: plan.rule,
            contact_ids: plan.contact_ids,
            matter: plan.matter,
            approvers: plan.approvers,
            tell: plan.tell,
            requester: req.requester.clone(),
            caller: caller.to_string(),
            case_id: req.case_id.clone(),
            communication_type: CommunicationType::name_of(req.communication_type).into(),
            template_id: req.template_id.clone(),
            lane: record.lane,
            requested_at_ms: now,
            deadline_ms: now.saturating_add(timeout),
            stage: Stage::Held,
            decided_by: String::new(),
            decided_at_ms: 0,
            reason: String::new(),
            done: false,
        };
        // A retried request finds its hold in place and keeps it.
        self.approvals.hold(&held, &record.encode_to_vec()).await?;
        self.document_hold(&held, record.accepted.clone()).await
    }
}

/// Emergencies, breaches and critical incidents take the emergency lane
/// wherever they arrive; anything sent to the emergency subject stays there.
pub fn lane_for(req: &NotificationRequest, hinted: Lane) -> Lane {
    let t = CommunicationType::try_from(req.communication_type).unwrap_or_default();
    let p = Priority::try_from(req.priority).unwrap_or_default();
    let urgent = matches!(
        t,
        CommunicationType::Emergency | CommunicationType::DataBreach
    ) || (t == CommunicationType::Incident && p == Priority::Critical);
    if urgent { Lane::Emergency } else { hinted }
}

fn accepted(notification_id: String, duplicate: bool) -> IntakeReply {
    reply(notification_id, duplicate, false)
}

fn reply(notification_id: String, duplicate: bool, awaiting_approval: bool) -> IntakeReply {
    IntakeReply {
        result: Some(intake_reply::Result::Accepted(Accepted {
            notification_id,
            duplicate,
            awaiting_approval,
        })),
    }
}
