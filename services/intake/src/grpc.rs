//! The gRPC face of intake: `herald.v1.Intake/Notify` and
//! `herald.v1.Intake/SubmitCaseEvent`, with server reflection and the
//! standard health service.
//!
//! Every Intake call must carry a calling system's API key as
//! `authorization: Bearer <key>`; the key is hashed and looked up in
//! `intake.api_keys`, and the system it belongs to is the caller the
//! trail records, as a verified NATS identity is. With no keys configured
//! every call is refused. Health and reflection stay open: load balancers
//! and schema tools hold no key. The check runs before the request body is
//! read, and a body larger than `intake.max_payload_bytes` is refused
//! while it is read, the same limit NATS requests have. With
//! `intake.grpc_tls_cert_file` and `intake.grpc_tls_key_file` set the
//! listener speaks only TLS.
//!
//! The health service answers SERVING only while `/readyz` would say
//! ready (NATS and Redis reachable), so a gRPC load balancer stops sending
//! requests that could not be stored.
//!
//! Success returns the `IntakeReply`. A refusal is a gRPC status with the
//! matching code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
//! RESOURCE_EXHAUSTED, ALREADY_EXISTS, UNAVAILABLE), a `BadRequest` detail
//! naming the field, and the Herald error code in `x-herald-error-code`.
//! A call without a known key is UNAUTHENTICATED (code
//! `ERROR_CODE_UNAUTHORIZED`); a body over the limit is OUT_OF_RANGE, in
//! tonic's words, which name the limit.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use herald_config::IntakeConfig;
use herald_proto::v1::{
    CaseEvent, CaseReply, ErrorCode, IntakeReply, Lane, NotificationRequest, case_reply,
    intake_reply,
    intake_server::{Intake as IntakeService, IntakeServer},
};
use herald_runtime::{health::Health, metrics::ReasonLabel};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Request, Response, Status,
    metadata::{MetadataMap, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Identity, ServerTlsConfig},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;

use crate::{
    Intake,
    keys::{self, ApiKeys},
    note_refusal,
    validate::reject,
};

struct Service {
    intake: Intake,
}

/// The calling system whose API key a request carried, put on the request
/// by [`KeyCheck`] for the handler to name as the caller.
#[derive(Clone)]
struct CallingSystem(String);

/// Refuses an Intake call unless it carries a configured API key.
#[derive(Clone)]
struct KeyCheck {
    keys: ApiKeys,
    rejected: Family<ReasonLabel, Counter>,
}

impl KeyCheck {
    fn new(cfg: &IntakeConfig, rejected: Family<ReasonLabel, Counter>) -> KeyCheck {
        KeyCheck {
            keys: ApiKeys::new(cfg),
            rejected,
        }
    }

    fn system_of(&self, metadata: &MetadataMap) -> Result<String, &'static str> {
        self.keys
            .system_of(metadata.get("authorization").map(|v| v.as_bytes()))
    }
}

impl Interceptor for KeyCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.system_of(request.metadata()) {
            Ok(system) => {
                request.extensions_mut().insert(CallingSystem(system));
                Ok(request)
            }
            Err(why) => {
                // Counted and logged with the other refusals, by code and
                // field only: the message is fixed and the key not kept.
                note_refusal(
                    &self.rejected,
                    Lane::Normal,
                    &reject(ErrorCode::Unauthorized, "authorization", why),
                    "gRPC call",
                );
                let mut status = Status::unauthenticated(why);
                status.metadata_mut().insert(
                    "x-herald-error-code",
                    MetadataValue::from_static(ErrorCode::Unauthorized.as_str_name()),
                );
                Err(status)
            }
        }
    }
}

/// The system [`KeyCheck`] found. Every Intake call passes the check first,
/// so a request without one was not routed through it: refuse rather than
/// record an unknown caller.
fn calling_system<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<CallingSystem>()
        .map(|c| c.0.clone())
        .ok_or_else(|| Status::unauthenticated(keys::NO_KEY))
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
        let caller = calling_system(&request)?;
        let req = request.into_inner();
        let reply = self
            .intake
            .submit(req, Lane::Normal, &caller)
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
        let caller = calling_system(&request)?;
        let reply = self
            .intake
            .submit_case(request.into_inner(), &caller)
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

/// The listener's TLS settings, when `intake.grpc_tls_*` are set: the files
/// read and named in any error, so a wrong path stops intake at start.
fn tls_config(cfg: &IntakeConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&cfg.grpc_tls_cert_file, &cfg.grpc_tls_key_file) else {
        return Ok(None);
    };
    let read = |name: &str, path: &Path| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("`intake.{name}` {}: {e}", path.display()))
    };
    let identity = Identity::from_pem(
        read("grpc_tls_cert_file", cert)?,
        read("grpc_tls_key_file", key)?,
    );
    // A client that stalls in the handshake is dropped rather than held.
    Ok(Some(
        ServerTlsConfig::new()
            .identity(identity)
            .timeout(Duration::from_secs(10)),
    ))
}

pub(crate) async fn serve(
    cfg: &IntakeConfig,
    intake: Intake,
    ready: Arc<AtomicBool>,
    health_checks: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(cfg)? {
        herald_runtime::install_crypto();
        // The PEM is parsed here: a certificate or key that is not one
        // fails the start, not the first connection.
        server = server.tls_config(tls).map_err(|e| {
            anyhow::anyhow!(
                "`intake.grpc_tls_cert_file` and `intake.grpc_tls_key_file` do not make a TLS identity: {e}"
            )
        })?;
    }
    let addr = &cfg.grpc_addr;
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
    // Reflection in both versions: grpcurl, Postman and many other clients
    // still ask v1alpha, and would be told UNIMPLEMENTED with v1 alone.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(herald_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let reflection = reflection().build_v1()?;
    let check = KeyCheck::new(cfg, intake.metrics.rejected.clone());
    // The same limit as a NATS request; tonic's own default is 4 MiB.
    let intake_server =
        IntakeServer::new(Service { intake }).max_decoding_message_size(cfg.max_payload_bytes);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        ready.store(true, Ordering::Relaxed);
        let result = server
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(intake_server, check))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(systems: &[(&str, &[&str])]) -> KeyCheck {
        let cfg = crate::keys::tests::config(systems);
        KeyCheck::new(&cfg, Family::default())
    }

    fn with_authorization(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn with_no_keys_configured_every_call_is_refused() {
        let c = check(&[]);
        assert_eq!(
            c.system_of(&with_authorization("Bearer anything")),
            Err(keys::NO_KEYS)
        );
        let mut refused = c.clone();
        let status = refused.call(Request::new(())).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            status
                .message()
                .contains("no API keys are configured (intake.api_keys)"),
            "{}",
            status.message()
        );
        assert_eq!(
            c.rejected
                .get_or_create(&ReasonLabel {
                    lane: Lane::Normal.name().into(),
                    reason: ErrorCode::Unauthorized.name().into(),
                })
                .get(),
            1
        );
    }

    #[test]
    fn an_accepted_call_carries_its_system_to_the_handler() {
        let mut c = check(&[("crm", &["crm-key"])]);
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", "Bearer crm-key".parse().unwrap());
        let passed = c.call(request).unwrap();
        assert_eq!(calling_system(&passed).unwrap(), "crm");
        // A request the check never saw names nobody.
        assert_eq!(
            calling_system(&Request::new(())).unwrap_err().code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn an_unreadable_tls_file_is_named_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("intake.crt");
        std::fs::write(&cert, "not read").unwrap();
        let cfg = IntakeConfig {
            grpc_tls_cert_file: Some(cert),
            grpc_tls_key_file: Some(dir.path().join("missing.key")),
            ..IntakeConfig::default()
        };
        let err = tls_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("`intake.grpc_tls_key_file`"), "{err}");
        assert!(err.contains("missing.key"), "{err}");
        assert!(tls_config(&IntakeConfig::default()).unwrap().is_none());
    }
}
