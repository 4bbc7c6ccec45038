//! intake: where other systems hand Herald a notification.
//!
//! Requests arrive by NATS request/reply (`herald.v1.intake.notify`, and
//! `herald.v1.emergency.intake.notify` for the emergency lane, each served by
//! its own workers) or by gRPC (`herald.v1.Intake/Notify`). Each is checked
//! field by field, deduplicated by idempotency key, and written to the
//! notifications stream of its lane; only once JetStream confirms the write
//! does the caller hear "accepted".

mod broadcasts;
mod cases;
pub mod dedupe;
mod directory;
mod grpc;
pub mod validate;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use herald_config::Config;
use herald_content::{routing::RoutingRules, templates::TemplateStore};
use herald_directory::{contacts::Directory, groups::Groups};
use herald_durable::stop::Stop;
use herald_proto::{
    Message, subjects,
    v1::{
        Accepted, AcceptedNotification, AuditStep, CancelReply, CancelRequest, CommunicationType,
        ErrorCode, IntakeReply, Lane, NotificationRequest, Priority, Rejected, cancel_reply,
        intake_reply,
    },
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::Bus,
    metrics::{LaneLabel, Queue, ReasonLabel},
};
use herald_runtime::{bus::Gate, serve::ServeOptions, service::ServiceBuilder};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::{
    dedupe::{Claim, Dedupe},
    validate::{Limits, reject},
};

/// Counters an operator watches on intake.
struct Metrics {
    accepted: Family<LaneLabel, Counter>,
    duplicates: Family<LaneLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    latency: Family<LaneLabel, Histogram>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
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

/// Everything a request needs, shared by the NATS and gRPC paths.
#[derive(Clone)]
pub(crate) struct Intake {
    bus: Bus,
    directory: Directory,
    dedupe: Dedupe,
    templates: Arc<TemplateStore>,
    rules: Arc<RoutingRules>,
    auditor: Auditor,
    limits: Arc<Limits>,
    max_payload: usize,
    metrics: Arc<Metrics>,
    /// Broadcast requests and the breach protocol.
    broadcasts: broadcasts::Desk,
    cases: cases::Cases,
}

/// A started intake: its gRPC listener beside what every service has.
pub struct Running {
    pub grpc_addr: SocketAddr,
    service: herald_runtime::service::Running,
}

impl std::ops::Deref for Running {
    type Target = herald_runtime::service::Running;

    fn deref(&self) -> &Self::Target {
        &self.service
    }
}

impl Running {
    /// Waits until the service has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.service.wait().await
    }
}

/// Runs intake until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(cfg, shutdown).await?.wait().await
}

/// Connects, binds its listeners and starts serving; returns once ready to
/// take requests.
pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let templates = TemplateStore::load(&cfg.content.templates_dir)
        .map_err(|p| anyhow::anyhow!("templates:\n  {}", p.join("\n  ")))?;
    let rules = RoutingRules::load(cfg.content.routing_file.as_deref())
        .map_err(|p| anyhow::anyhow!("routing rules:\n  {}", p.join("\n  ")))?;
    let mut service = ServiceBuilder::connect("intake", &cfg, &shutdown).await?;
    let metrics = Arc::new(Metrics::register(&mut service.registry));
    service.watch(
        Lane::ALL
            .iter()
            .map(|l| Queue::stream(subjects::notify_stream(*l)))
            .chain([Queue::stream(subjects::STREAM_BROADCAST)]),
    );
    let priority = service.precedence();
    let (bus, redis) = (service.bus.clone(), service.redis.clone());
    let templates = Arc::new(templates);
    let dedupe = Dedupe::new(redis.clone(), &cfg.redis.prefix, cfg.intake.idempotency_ttl);
    let desk = broadcasts::Desk::new(
        bus.clone(),
        redis.clone(),
        &cfg,
        templates.clone(),
        dedupe.clone(),
        &mut service.registry,
    );
    let cases = cases::Cases::new(
        redis.clone(),
        &cfg.redis.prefix,
        // Longer than the hold delivery takes while a send is at a
        // provider, so an acknowledgement outwaits a send in progress.
        cfg.delivery.attempt_timeout + Duration::from_secs(10),
        &mut service.registry,
    );
    let intake = Intake {
        cases,
        directory: Directory::new(redis.clone(), &cfg.redis.prefix),
        dedupe,
        templates,
        rules: Arc::new(rules),
        auditor: Auditor::new(bus.clone(), "intake"),
        limits: Arc::new(Limits {
            max_recipients: cfg.intake.max_recipients,
        }),
        max_payload: cfg.intake.max_payload_bytes,
        metrics,
        bus,
        broadcasts: desk.clone(),
    };

    let (grpc_addr, grpc_task) = grpc::serve(
        &cfg.intake.grpc_addr,
        intake.clone(),
        service.health.flag("grpc"),
        service.health.clone(),
        shutdown.clone(),
    )
    .await?;
    service.spawn(async move {
        let _ = grpc_task.await;
        Ok(())
    });
    // Each lane with its own bounded set of workers.
    for lane in Lane::ALL {
        let gate = service.lane_gate(lane);
        let intake = intake.clone();
        service
            .serve(
                &[subjects::intake_notify(lane)],
                subjects::QUEUE_INTAKE,
                ServeOptions::new(cfg.intake.concurrency).gate(gate),
                move |msg| {
                    let intake = intake.clone();
                    async move { Some(intake.handle_nats(msg, lane).await.encode_to_vec().into()) }
                },
            )
            .await?;
    }
    // Coordinators' requests count as emergency work while they run.
    service
        .serve(
            &[
                subjects::BROADCAST_START,
                subjects::BROADCAST_UPDATE,
                subjects::BROADCAST_CANCEL,
            ],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(64).gate(Gate::Busy(priority.clone())),
            move |msg| {
                let desk = desk.clone();
                async move { Some(desk.answer(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let cancels = intake.clone();
    service
        .serve(
            &[subjects::INTAKE_CANCEL],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(16),
            move |msg| {
                let intake = cancels.clone();
                async move { Some(intake.cancel(&msg.payload).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let desk = directory::DirectoryDesk::new(
        Directory::new(redis.clone(), &cfg.redis.prefix),
        Groups::new(redis.clone(), &cfg.redis.prefix),
    );
    service
        .serve(
            &[subjects::INTAKE_DIRECTORY],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(4),
            move |msg| {
                let desk = desk.clone();
                async move { Some(desk.answer(&msg.payload).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let cases = intake.clone();
    service
        .serve(
            &[subjects::INTAKE_CASE],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(cfg.intake.concurrency).gate(Gate::Yield(priority)),
            move |msg| {
                let intake = cases.clone();
                async move { Some(intake.handle_case_nats(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let service = service.start(&cfg.intake.http_addr).await?;
    info!(%grpc_addr, "intake gRPC listening");
    Ok(Running { grpc_addr, service })
}

impl Intake {
    /// Cancels a key, so that no job carrying it is sent from now on.
    async fn cancel(&self, payload: &[u8]) -> CancelReply {
        let refused = |r: Rejected| CancelReply {
            result: Some(cancel_reply::Result::Rejected(r)),
        };
        let req = match CancelRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                return refused(reject(
                    ErrorCode::Undecodable,
                    "",
                    format!("not a herald.v1.CancelRequest: {e}"),
                ));
            }
        };
        if let Err(why) = herald_proto::cancel_keys::check_key(&req.cancel_key) {
            return refused(reject(ErrorCode::InvalidArgument, "cancel_key", why));
        }
        if req.reason.chars().count() > 200 || req.requester.chars().count() > 200 {
            return refused(reject(
                ErrorCode::InvalidArgument,
                if req.reason.chars().count() > 200 {
                    "reason"
                } else {
                    "requester"
                },
                "is longer than 200 characters",
            ));
        }
        let reason = match (req.reason.trim(), req.requester.trim()) {
            ("", "") => "cancelled".to_string(),
            (r, "") => r.to_string(),
            ("", who) => format!("cancelled by {who}"),
            (r, who) => format!("{r} (by {who})"),
        };
        // Delivery lets a send that passed its check just before finish, so
        // that once the caller has the answer nothing goes out.
        let stopped = Stop::key(&req.cancel_key, reason)
            .and_wait(self.cases.stop_wait())
            .send(&self.bus)
            .await;
        match stopped.map(|s| s.first.first().copied().unwrap_or(false)) {
            Ok(first) => {
                info!(first, "cancel key cancelled");
                CancelReply {
                    result: Some(cancel_reply::Result::Cancelled(first)),
                }
            }
            Err(e) => {
                error!(error = %e, "delivery could not record the cancellation");
                refused(unavailable())
            }
        }
    }

    async fn handle_nats(&self, msg: async_nats::Message, lane: Lane) -> IntakeReply {
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
            match NotificationRequest::decode(msg.payload.clone()) {
                Ok(req) => self.submit(req, lane).await,
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

    /// Checks, deduplicates and queues one request. The reply says accepted
    /// only once the notification is stored in JetStream.
    pub(crate) async fn submit(&self, req: NotificationRequest, hinted: Lane) -> IntakeReply {
        let started = Instant::now();
        let contacts = match self.directory.get_many(&validate::contact_ids(&req)).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "contact lookup failed");
                return self.refused(hinted, unavailable());
            }
        };
        let req = match validate::check(req, &contacts, &self.templates, &self.rules, &self.limits)
        {
            Ok(r) => r,
            Err(r) => return self.refused(hinted, r),
        };
        let lane = lane_for(&req, hinted);
        let span = tracing::Span::current();
        span.record("case_id", req.case_id.as_str());

        let fresh_id = herald_proto::ids::notification_id();
        let (id, duplicate) = match self.dedupe.claim(&req, &fresh_id).await {
            Ok(Claim::New) => (fresh_id, false),
            Ok(Claim::Done(id)) => {
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
            Ok(Claim::Pending(id)) => (id, true),
            Ok(Claim::Conflict) => {
                return self.refused(
                    lane,
                    reject(
                        ErrorCode::IdempotencyConflict,
                        "idempotency_key",
                        "was already used for a different request; use a new key for a new notification",
                    ),
                );
            }
            Err(e) => {
                error!(error = %e, "idempotency check failed");
                return self.refused(lane, unavailable());
            }
        };
        span.record("notification_id", id.as_str());

        let accepted_at = herald_proto::now();
        let record = AcceptedNotification {
            notification_id: id.clone(),
            request: Some(req.clone()),
            accepted_at: Some(accepted_at),
            lane: lane as i32,
        };
        let audit = Entry {
            notification_id: id.clone(),
            case_id: req.case_id.clone(),
            responsible_staff: req.responsible_staff.clone(),
            lane,
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
        .attr("priority", Priority::name_of(req.priority));

        // The audit record goes first on the same connection, so the trail
        // starts with "accepted" before the router can add to it.
        let audit_ack = if duplicate {
            None
        } else {
            Some(self.auditor.record(audit).await)
        };
        if req.communication_type == CommunicationType::DataBreach as i32
            && let Err(e) = self.broadcasts.breach_protocol(&id, &req).await
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
        match audit_ack {
            Some(Ok(ack)) => {
                if let Err(e) =
                    herald_runtime::bus::confirm(subjects::audit_all().into(), ack).await
                {
                    error!(error = %e, "audit record for acceptance not confirmed");
                }
            }
            Some(Err(e)) => error!(error = %e, "audit record for acceptance not written"),
            None => {}
        }
        // Marking the key done saves a retry a republish; it is not needed
        // for correctness (a pending key republishes under the same id,
        // which JetStream and delivery both drop), so it does not hold up
        // the reply.
        let dedupe = self.dedupe.clone();
        let done_id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = dedupe.complete(&req, &done_id).await {
                warn!(error = %e, "could not mark the idempotency key done");
            }
        });
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
        accepted(id, duplicate)
    }
}

/// Counts, logs and marks the span of a refusal of `what` (a request, a
/// case event).
pub(crate) fn note_refusal(
    counter: &Family<ReasonLabel, Counter>,
    lane: Lane,
    r: &Rejected,
    what: &str,
) {
    let reason = ErrorCode::name_of(r.code).to_string();
    herald_runtime::telemetry::record_outcome(&tracing::Span::current(), "rejected", false);
    // The code and the field, not the message: the message quotes the
    // caller's values (an address that failed a check) back to them.
    info!(field = %r.field, %reason, "{what} refused");
    counter
        .get_or_create(&ReasonLabel {
            lane: lane.name().into(),
            reason,
        })
        .inc();
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
    IntakeReply {
        result: Some(intake_reply::Result::Accepted(Accepted {
            notification_id,
            duplicate,
        })),
    }
}

pub(crate) fn unavailable() -> Rejected {
    reject(
        ErrorCode::Unavailable,
        "",
        "Herald could not store the request just now; retry with the same idempotency key",
    )
}
