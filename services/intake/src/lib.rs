//! intake: where other systems hand Herald a notification.
//!
//! Requests arrive by NATS request/reply (`herald.v1.intake.notify`, and
//! `herald.v1.emergency.intake.notify` for the emergency lane, each served by
//! its own workers), by gRPC (`herald.v1.Intake/Notify`) or as JSON over
//! HTTP (`POST /v1/notifications`, see [`http`]). Each is checked
//! field by field, deduplicated by idempotency key, and written to the
//! notifications stream of its lane; only once JetStream confirms the write
//! does the caller hear "accepted".

mod approvals;
pub mod attachments;
mod breach_release;
mod broadcasts;
mod cancel;
mod cases;
pub mod dedupe;
mod directory;
mod erasure;
mod grpc;
mod http;
mod integrations;
mod keys;
mod notify;
mod reports;
mod sharing;
mod templates;
mod trail;
pub mod validate;

pub use notify::lane_for;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use herald_config::Config;
use herald_content::{routing::RoutingRules, templates::TemplateStore};
use herald_directory::{contacts::Directory, groups::Groups};
use herald_proto::{
    Message, subjects,
    v1::{ErrorCode, Lane, Rejected},
};
use herald_runtime::{
    audit::Auditor,
    bus::Bus,
    metrics::{Queue, ReasonLabel},
};
use herald_runtime::{
    bus::Gate, serve::ServeOptions, service::ServiceBuilder, templates::LiveTemplates,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    dedupe::Dedupe,
    notify::Metrics,
    validate::{Limits, reject},
};

/// Everything a request needs, shared by the NATS and gRPC paths: one
/// allocation, so a request's handle costs one reference count.
#[derive(Clone)]
pub(crate) struct Intake(Arc<Shared>);

impl std::ops::Deref for Intake {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub(crate) struct Shared {
    bus: Bus,
    directory: Directory,
    dedupe: Dedupe,
    /// The shipped templates and every version approved since, followed
    /// from the approved-templates stream.
    templates: Arc<LiveTemplates>,
    /// Template versions proposed at run time and their decisions.
    proposals: templates::records::Proposals,
    rules: Arc<RoutingRules>,
    auditor: Auditor,
    limits: Arc<Limits>,
    max_payload: usize,
    metrics: Arc<Metrics>,
    /// Broadcast requests and the breach protocol.
    broadcasts: broadcasts::Desk,
    cases: cases::Cases,
    /// Alertmanager and PagerDuty-shaped tools, and their alerts' cases.
    integrations: integrations::Integrations,
    /// First contacts held for approval.
    approvals: approvals::Approvals,
    /// The trail's index by client and staff.
    trail: trail::TrailIndex,
    /// The reports agreed with clients, and their timers.
    reports: reports::Reports,
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
    start_with_clock(cfg, shutdown, Arc::new(herald_runtime::clock::SystemClock)).await
}

/// [`start`], with the clock the report schedules are kept by (a
/// `ManualClock` lets a test move past a report's date).
pub async fn start_with_clock(
    cfg: Config,
    shutdown: CancellationToken,
    clock: Arc<dyn herald_runtime::clock::Clock>,
) -> anyhow::Result<Running> {
    let calendars = herald_config::built_in_or_file(
        cfg.sla.calendars_file.as_deref(),
        herald_calendar::DEFAULT_CALENDARS,
        "calendars",
    )
    .and_then(|(text, origin)| herald_calendar::Calendars::parse(&text, &origin))
    .map_err(|p| anyhow::anyhow!("calendars:\n  {}", p.join("\n  ")))?;
    let agreed = reports::agreed(&cfg.reports.client)
        .map_err(|p| anyhow::anyhow!("report schedules:\n  {}", p.join("\n  ")))?;
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
    let (live, following) =
        herald_runtime::templates::follow(&bus, templates, shutdown.clone()).await?;
    service.spawn(following);
    // Broadcasts use the shipped templates (`herald_proto::broadcasts`).
    let templates = live.current();
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
        cfg.retention.case_state,
        &mut service.registry,
    );
    let integrations =
        integrations::Integrations::new(&cfg.intake, redis.clone(), &cfg.redis.prefix);
    integrations.check_templates(&templates)?;
    reports::check_templates(&agreed, &templates)?;
    // The trail by client and staff: an index of the audit stream, and the
    // operators' queries over it.
    let index = trail::TrailIndex::new(redis.clone(), &cfg.redis.prefix, cfg.nats.audit_retention);
    let intake = Intake(Arc::new(Shared {
        trail: index.clone(),
        reports: reports::Reports::new(redis.clone(), &cfg.redis.prefix, agreed, calendars, clock),
        approvals: approvals::Approvals::new(&cfg.approvals, redis.clone(), &cfg.redis.prefix),
        integrations,
        cases,
        directory: Directory::new(redis.clone(), &cfg.redis.prefix),
        dedupe,
        templates: live,
        proposals: templates::records::Proposals::new(redis.clone(), &cfg.redis.prefix),
        rules: Arc::new(rules),
        auditor: Auditor::new(bus.clone(), "intake"),
        limits: Arc::new(Limits {
            max_recipients: cfg.intake.max_recipients,
        }),
        max_payload: cfg.intake.max_payload_bytes,
        metrics,
        bus,
        broadcasts: desk.clone(),
    }));

    service.public_routes(
        cfg.intake.public(),
        http::routes(intake.clone(), &cfg.intake)?.merge(approvals::routes(intake.clone())),
    );
    {
        let fire = intake.clone();
        service.spawn(herald_durable::timers::run(
            intake.approvals.timers().clone(),
            Arc::new(herald_runtime::clock::SystemClock),
            herald_durable::timers::RunOptions {
                batch: 100,
                ..Default::default()
            },
            shutdown.clone(),
            move |batch| {
                let fire = fire.clone();
                async move { fire.fire_approvals(batch).await }
            },
        ));
    }
    {
        // The report schedules: each kept, then fired when due.
        let fire = intake.clone();
        let stop = shutdown.clone();
        service.spawn(async move {
            let mut backoff = herald_runtime::retry::Backoff::new(
                Duration::from_millis(200),
                Duration::from_secs(5),
            );
            while let Err(e) = fire.arrange_reports().await {
                tracing::warn!(error = %e, "report schedules not arranged; retrying");
                if !backoff.wait(&stop).await {
                    return Ok(());
                }
            }
            let timers = fire.reports.timers().clone();
            let clock = fire.reports.clock();
            herald_durable::timers::run(
                timers,
                clock,
                herald_durable::timers::RunOptions {
                    batch: 16,
                    ..Default::default()
                },
                stop,
                move |batch| {
                    let fire = fire.clone();
                    async move { fire.fire_reports(batch).await }
                },
            )
            .await
        });
    }
    let reporters = intake.clone();
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_REPORTS)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(4),
            move |msg| {
                let intake = reporters.clone();
                async move { Some(intake.answer_reports(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let (grpc_addr, grpc_task) = grpc::serve(
        &cfg.intake,
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
                &[subjects::from_any_caller(subjects::intake_notify(lane))],
                subjects::QUEUE_INTAKE,
                ServeOptions::new(cfg.intake.concurrency)
                    .gate(gate)
                    .batch(64),
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
                subjects::from_any_caller(subjects::BROADCAST_START),
                subjects::from_any_caller(subjects::BROADCAST_UPDATE),
                subjects::from_any_caller(subjects::BROADCAST_CANCEL),
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
            &[subjects::from_any_caller(subjects::INTAKE_CANCEL)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(16),
            move |msg| {
                let intake = cancels.clone();
                async move { Some(intake.cancel_nats(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let releases = intake.clone();
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_BREACH)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(4),
            move |msg| {
                let intake = releases.clone();
                async move { Some(intake.release_breach_nats(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    {
        let index = index.clone();
        service.consume_batches(
            herald_runtime::bus::ConsumerSpec {
                stream: subjects::STREAM_AUDIT.to_string(),
                durable: "intake-trail-index".into(),
                filter: subjects::audit_all().to_string(),
                concurrency: trail::BATCH,
                ack_wait: cfg.nats.ack_wait,
                max_deliver: -1,
            },
            Gate::None,
            trail::BATCH,
            Duration::from_secs(5),
            move |msgs| {
                let index = index.clone();
                async move { index.index(msgs).await }
            },
        );
    }
    let trail_bus = service.bus.clone();
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_TRAIL)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(4),
            move |msg| {
                let (index, bus) = (index.clone(), trail_bus.clone());
                async move {
                    Some(
                        index
                            .answer(&bus, &msg.payload)
                            .await
                            .encode_to_vec()
                            .into(),
                    )
                }
            },
        )
        .await?;
    let approvers = intake.clone();
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_APPROVALS)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(4),
            move |msg| {
                let intake = approvers.clone();
                async move { Some(intake.answer_approvals(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    // Template versions: editors propose, approvers decide.
    for (subject, desk) in [
        (subjects::INTAKE_TEMPLATES, templates::Desk::Editors),
        (
            subjects::INTAKE_TEMPLATE_DECISIONS,
            templates::Desk::Approvers,
        ),
    ] {
        let intake = intake.clone();
        service
            .serve(
                &[subjects::from_any_caller(subject)],
                subjects::QUEUE_INTAKE,
                ServeOptions::new(4),
                move |msg| {
                    let intake = intake.clone();
                    async move {
                        Some(
                            intake
                                .answer_templates(msg, desk)
                                .await
                                .encode_to_vec()
                                .into(),
                        )
                    }
                },
            )
            .await?;
    }
    // The DPO's erasures: one at a time, each a long scan.
    let erasures = erasure::ErasureDesk::new(
        service.bus.clone(),
        &redis,
        &cfg.redis.prefix,
        Auditor::new(service.bus.clone(), "intake"),
        cfg.retention.erasure_hash_key.clone(),
    );
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_ERASE)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(1),
            move |msg| {
                let desk = erasures.clone();
                async move { Some(desk.answer(msg).await.encode_to_vec().into()) }
            },
        )
        .await?;
    let desk = directory::DirectoryDesk::new(
        Directory::new(redis.clone(), &cfg.redis.prefix),
        Groups::new(redis.clone(), &cfg.redis.prefix),
        service.bus.clone(),
        intake.cases.stop_wait(),
    );
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_DIRECTORY)],
            subjects::QUEUE_INTAKE,
            ServeOptions::new(4),
            move |msg| {
                let desk = desk.clone();
                async move {
                    let caller = caller(&msg).unwrap_or_default().to_string();
                    Some(
                        desk.answer(&msg.payload, &caller)
                            .await
                            .encode_to_vec()
                            .into(),
                    )
                }
            },
        )
        .await?;
    let cases = intake.clone();
    service
        .serve(
            &[subjects::from_any_caller(subjects::INTAKE_CASE)],
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

/// The refusal of a request whose subject names no caller (only an
/// identity allowed everything could send one).
pub(crate) fn unnamed_caller() -> Rejected {
    validate::reject(
        ErrorCode::Unauthorized,
        "subject",
        "names no caller: send requests to `<request subject>.<your identity>`",
    )
}

/// Who sent `msg`, from its subject (see `subjects::from_caller`).
pub(crate) fn caller(msg: &async_nats::Message) -> Option<&str> {
    subjects::caller_of(&msg.subject).map(|(_, caller)| caller)
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

pub(crate) fn unavailable() -> Rejected {
    reject(
        ErrorCode::Unavailable,
        "",
        "Herald could not store the request just now; retry with the same idempotency key",
    )
}
