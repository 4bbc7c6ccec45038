//! The gRPC face of intake: `herald.v1.Intake/Notify` and
//! `herald.v1.Intake/SubmitCaseEvent`, with server reflection and the
//! standard health service.
//!
//! The health service answers SERVING only while `/readyz` would say
//! ready (NATS and Redis reachable), so a gRPC load balancer stops sending
//! requests that could not be stored.
//!
//! Success returns the `IntakeReply`. A refusal is a gRPC status with the
//! matching code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
//! RESOURCE_EXHAUSTED, ALREADY_EXISTS, UNAVAILABLE), a `BadRequest` detail
//! naming the field, and the Herald error code in `x-herald-error-code`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use herald_proto::v1::{
    CaseEvent, CaseReply, ErrorCode, IntakeReply, Lane, NotificationRequest, case_reply,
    intake_reply,
    intake_server::{Intake as IntakeService, IntakeServer},
};
use herald_runtime::health::Health;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, metadata::MetadataValue};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;

use crate::Intake;

struct Service {
    intake: Intake,
}

#[tonic::async_trait]
impl IntakeService for Service {
    async fn notify(
        &self,
        request: Request<NotificationRequest>,
    ) -> Result<Response<IntakeReply>, Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok());
        let span =
            herald_runtime::telemetry::grpc_server_span("herald.v1.Intake", "Notify", traceparent);
        let req = request.into_inner();
        let reply = self
            .intake
            .submit(req, Lane::Normal, "grpc")
            .instrument(span)
            .await;
        match &reply.result {
            Some(intake_reply::Result::Rejected(r)) => Err(to_status(r)),
            _ => Ok(Response::new(reply)),
        }
    }

    async fn submit_case_event(
        &self,
        request: Request<CaseEvent>,
    ) -> Result<Response<CaseReply>, Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok());
        let span = herald_runtime::telemetry::grpc_server_span(
            "herald.v1.Intake",
            "SubmitCaseEvent",
            traceparent,
        );
        let reply = self
            .intake
            .submit_case(request.into_inner(), "grpc")
            .instrument(span)
            .await;
        match &reply.result {
            Some(case_reply::Result::Rejected(r)) => Err(to_status(r)),
            _ => Ok(Response::new(reply)),
        }
    }
}

fn to_status(r: &herald_proto::v1::Rejected) -> Status {
    let code = ErrorCode::try_from(r.code).unwrap_or(ErrorCode::Internal);
    let grpc = match code {
        ErrorCode::UnknownContact | ErrorCode::UnknownTemplate | ErrorCode::NotFound => {
            Code::NotFound
        }
        ErrorCode::MissingConsent | ErrorCode::ChannelNotAllowed | ErrorCode::InvalidState => {
            Code::FailedPrecondition
        }
        ErrorCode::PayloadTooLarge => Code::ResourceExhausted,
        ErrorCode::IdempotencyConflict => Code::AlreadyExists,
        ErrorCode::Unauthorized => Code::PermissionDenied,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal | ErrorCode::Unspecified => Code::Internal,
        _ => Code::InvalidArgument,
    };
    let message = if r.field.is_empty() {
        r.message.clone()
    } else {
        format!("{}: {}", r.field, r.message)
    };
    let mut status = if r.field.is_empty() {
        Status::new(grpc, message)
    } else {
        Status::with_error_details(
            grpc,
            message,
            ErrorDetails::with_bad_request_violation(r.field.clone(), r.message.clone()),
        )
    };
    if let Ok(v) = MetadataValue::try_from(code.as_str_name()) {
        status.metadata_mut().insert("x-herald-error-code", v);
    }
    status
}

pub(crate) async fn serve(
    addr: &str,
    intake: Intake,
    ready: Arc<AtomicBool>,
    health_checks: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding gRPC listener {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<IntakeServer<Service>>().await;
    tokio::spawn(follow_readiness(
        reporter.clone(),
        health_checks,
        shutdown.clone(),
    ));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(herald_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        ready.store(true, Ordering::Relaxed);
        let result = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .add_service(IntakeServer::new(Service { intake }))
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.cancelled().await;
                reporter.set_not_serving::<IntakeServer<Service>>().await;
            })
            .await;
        ready.store(false, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    Ok((bound, task))
}

/// Mirrors readiness into the gRPC health service, checking once a second.
async fn follow_readiness(reporter: HealthReporter, health: Health, shutdown: CancellationToken) {
    let mut serving = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let ready = health.is_ready().await;
        if ready == serving || shutdown.is_cancelled() {
            continue;
        }
        serving = ready;
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter
            .set_service_status(
                <IntakeServer<Service> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
        reporter.set_service_status("", status).await;
    }
}
