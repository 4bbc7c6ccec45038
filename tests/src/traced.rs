//! Intake, router and delivery as three processes exporting spans to a
//! real OTLP receiver, with their own NATS, Redis and provider sinks: what
//! an operator's collector and log shipper would see.

use std::{net::SocketAddr, time::Duration};

use herald_config::{Config, LogFormat};
use herald_directory::contacts::{Contact, Directory};
use herald_proto::{
    Message, subjects,
    v1::{IntakeReply, Lane, NotificationRequest, intake_reply},
};
use tokio_util::sync::CancellationToken;

use crate::{
    http::HttpSink,
    otlp::{OtlpReceiver, ReceivedSpan},
    process::ServiceProcess,
    scrape,
    servers::{NatsServer, RedisServer, free_port},
    smtp::SmtpSink,
    system,
};

/// How long a traced system waits for anything.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct TracedSystem {
    _nats: NatsServer,
    _redis: RedisServer,
    pub smtp: SmtpSink,
    pub http: HttpSink,
    pub otlp: OtlpReceiver,
    pub cfg: Config,
    client: async_nats::Client,
    services: Vec<(&'static str, ServiceProcess, SocketAddr)>,
    _outbox: tempfile::TempDir,
}

impl TracedSystem {
    /// The three services up and ready, logging in `log_format` at
    /// `rust_log` and exporting spans every 100 ms.
    pub async fn start(log_format: LogFormat, rust_log: &str) -> TracedSystem {
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let smtp = SmtpSink::start().await;
        let http = HttpSink::start().await;
        let otlp = OtlpReceiver::start().await;
        let outbox = tempfile::tempdir().expect("outbox dir");
        let mut cfg = system::config(&nats, &redis, &smtp, &http, outbox.path());
        cfg.telemetry.log_format = log_format;
        nats.provision(&cfg.nats).await;
        let endpoint = otlp.endpoint();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            // Export every 100 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", rust_log),
        ];
        // Ports are picked free but bound later by the service; should
        // another process take one meanwhile, the service exits and is
        // started again on fresh ports.
        let mut services = Vec::new();
        for round in 1..=3 {
            cfg.intake.grpc_addr = format!("127.0.0.1:{}", free_port());
            cfg.intake.http_addr = format!("127.0.0.1:{}", free_port());
            cfg.router.http_addr = format!("127.0.0.1:{}", free_port());
            cfg.delivery.http_addr = format!("127.0.0.1:{}", free_port());
            services.clear();
            for (name, addr) in [
                ("intake", &cfg.intake.http_addr),
                ("router", &cfg.router.http_addr),
                ("delivery", &cfg.delivery.http_addr),
            ] {
                let addr: SocketAddr = addr.parse().unwrap();
                let mut own = cfg.clone();
                own.redis.url = redis.url_for(name).into();
                services.push((name, ServiceProcess::spawn_with_env(name, &own, &env), addr));
            }
            if all_ready(&mut services, round == 3).await {
                break;
            }
        }
        let client = nats.connect_as(crate::servers::PUBLISHER).await;
        TracedSystem {
            _nats: nats,
            _redis: redis,
            smtp,
            http,
            otlp,
            cfg,
            client,
            services,
            _outbox: outbox,
        }
    }

    pub async fn add_contacts(&self, contacts: &[Contact]) {
        let redis = herald_runtime::store::connect(&self.cfg.redis, &CancellationToken::new())
            .await
            .expect("redis");
        Directory::new(redis, &self.cfg.redis.prefix)
            .put_all(contacts)
            .await
            .expect("contacts stored");
    }

    /// Sends a request over NATS as another system would, with the caller's
    /// trace context when given; returns the notification id.
    pub async fn notify(&self, req: &NotificationRequest, traceparent: Option<&str>) -> String {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(tp) = traceparent {
            headers.insert("traceparent", tp);
        }
        let msg = tokio::time::timeout(
            WAIT,
            self.client.request_with_headers(
                subjects::from_caller(
                    subjects::intake_notify(Lane::Normal),
                    crate::servers::PUBLISHER,
                ),
                headers,
                req.encode_to_vec().into(),
            ),
        )
        .await
        .expect("intake answers in time")
        .expect("intake answers");
        accepted_id(IntakeReply::decode(msg.payload).expect("an IntakeReply"))
    }

    /// Stops every service with SIGTERM, so buffered logs and spans are
    /// flushed, and returns everything they logged.
    pub fn stop_and_collect_logs(&mut self) -> String {
        let mut logs = String::new();
        for (name, p, _) in &mut self.services {
            let graceful = tokio::task::block_in_place(|| p.terminate_within(WAIT));
            assert!(graceful, "{name} did not stop on SIGTERM");
            logs.push_str(&p.log());
        }
        logs
    }
}

/// Waits for every service's `/readyz`; false if one exited first (and
/// `last_try` is false), panics with its log otherwise.
async fn all_ready(
    services: &mut [(&'static str, ServiceProcess, SocketAddr)],
    last_try: bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (name, p, addr) in services.iter_mut() {
        while !matches!(scrape::get(*addr, "/readyz").await, Ok((200, _))) {
            let exited = !p.is_running();
            if exited && !last_try {
                return false;
            }
            assert!(
                !exited && tokio::time::Instant::now() < deadline,
                "{name} not ready (exited: {exited}); its log:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    true
}

/// The notification id of an accepted request; panics on a refusal.
pub fn accepted_id(reply: IntakeReply) -> String {
    match reply.result {
        Some(intake_reply::Result::Accepted(a)) => a.notification_id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// Whether `s` is one of delivery's attempts at notification `id`.
pub fn is_delivery_attempt(s: &ReceivedSpan, id: &str) -> bool {
    s.service == "herald-delivery"
        && s.name == "delivery send"
        && s.attr("notification_id") == Some(id)
}
