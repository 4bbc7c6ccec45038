//! A whole Herald on one machine for a test: its own nats-server and
//! redis-server, an SMTP server and an HTTP listener as providers, and the
//! services running in this process, each stoppable on its own.

use std::time::Duration;

use herald_config::Config;
use herald_directory::{contacts::Contact, groups::Group};
use herald_proto::{
    Message, subjects,
    v1::{
        AuditRecord, AuditStep, BroadcastReply, BroadcastStatusReply, BroadcastStatusRequest,
        CaseEvent, CaseReply, IntakeReply, Lane, NotificationRequest, case_reply, intake_reply,
    },
};
use herald_runtime::{
    bus::Bus,
    clock::{Clock, SystemClock},
};
use tokio_util::sync::CancellationToken;

use crate::{
    http::HttpSink,
    providers::Providers,
    servers::{NatsServer, RedisServer},
    smtp::SmtpSink,
};

pub use crate::providers::{
    COORDINATOR, COORDINATOR_TOKEN, GRPC_CLIENT, GRPC_KEY, PUBLIC_URL, PUBLISHER_API_KEY,
    config_dir,
};

/// A configuration pointing at the given servers and sinks, on free ports.
pub fn config(
    nats: &NatsServer,
    redis: &RedisServer,
    smtp: &SmtpSink,
    http: &HttpSink,
    outbox: &std::path::Path,
) -> Config {
    let mut cfg = crate::providers::config(smtp, http, outbox);
    cfg.nats.url = nats.url();
    cfg.nats.credentials_dir = Some(nats.credentials_dir());
    cfg.nats.tls_ca_file = Some(nats.tls_ca());
    cfg.redis.url = redis.url().into();
    cfg
}

struct Service {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    http_addr: std::net::SocketAddr,
    public_addr: Option<std::net::SocketAddr>,
}

pub struct TestSystem {
    pub nats: NatsServer,
    pub redis: RedisServer,
    pub smtp: SmtpSink,
    pub http: HttpSink,
    pub cfg: Config,
    /// The kit's own connection, allowed everything: for looking inside
    /// and for playing parts no real caller could.
    pub client: async_nats::Client,
    /// Connected as the system `publisher`, as another system sending
    /// notifications and case events would be.
    pub publisher: async_nats::Client,
    /// Connected as `coordinator`, the emergency broadcast front door.
    pub coordinator: async_nats::Client,
    pub grpc_addr: std::net::SocketAddr,
    outbox: tempfile::TempDir,
    /// The SMTP and HTTP sinks' certificates, which delivery trusts.
    _relay_ca: tempfile::TempDir,
    intake: Option<Service>,
    router: Option<Service>,
    delivery: Option<Service>,
    broadcast: Option<Service>,
    /// Started on request ([`TestSystem::start_sla`],
    /// [`TestSystem::start_escalation`]): only case tests need them.
    sla: Option<Service>,
    escalation: Option<Service>,
}

impl TestSystem {
    /// Everything up and ready, with the default test configuration.
    pub async fn start() -> TestSystem {
        TestSystem::start_with(|_| {}).await
    }

    /// Everything up and ready, after `tweak` adjusts the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestSystem {
        herald_runtime::install_crypto();
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let providers = Providers::start().await;
        let mut cfg = config(
            &nats,
            &redis,
            &providers.smtp,
            &providers.http,
            providers.outbox(),
        );
        providers.trust(&mut cfg);
        let (smtp, http, outbox, relay_ca) = providers.into_parts();
        tweak(&mut cfg);
        nats.provision_keeping(&cfg.nats, &cfg.retention).await;
        let client = nats.admin().await;
        let publisher = nats.connect_as("publisher").await;
        let coordinator = nats.connect_as("coordinator").await;
        let mut s = TestSystem {
            nats,
            redis,
            smtp,
            http,
            cfg,
            client,
            publisher,
            coordinator,
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            outbox,
            _relay_ca: relay_ca,
            intake: None,
            router: None,
            delivery: None,
            broadcast: None,
            sla: None,
            escalation: None,
        };
        s.start_intake().await;
        s.start_router().await;
        s.start_delivery().await;
        s
    }

    /// The configuration `service` runs with: the test's, with the
    /// service's own Redis user, which reaches only the keys it owns or
    /// reads.
    pub fn cfg_for(&self, service: &str) -> Config {
        let mut cfg = self.cfg.clone();
        cfg.redis.url = self.redis.url_for(service).into();
        cfg
    }

    pub fn outbox(&self) -> &std::path::Path {
        self.outbox.path()
    }

    pub async fn start_intake(&mut self) {
        self.start_intake_with_clock(std::sync::Arc::new(SystemClock))
            .await;
    }

    /// Starts intake with the clock its report schedules are kept by (a
    /// `ManualClock` lets a test move past a report's date).
    pub async fn start_intake_with_clock(&mut self, clock: std::sync::Arc<dyn Clock>) {
        let stop = CancellationToken::new();
        let running = herald_intake::start_with_clock(self.cfg_for("intake"), stop.clone(), clock)
            .await
            .expect("intake starts");
        self.grpc_addr = running.grpc_addr;
        let (http_addr, public_addr) = (running.http_addr, running.public_addr);
        self.intake = Some(Service {
            stop,
            http_addr,
            public_addr,
            task: tokio::spawn(running.wait()),
        });
    }

    pub async fn start_router(&mut self) {
        let stop = CancellationToken::new();
        let running = herald_router::start(self.cfg_for("router"), stop.clone())
            .await
            .expect("router starts");
        let (http_addr, public_addr) = (running.http_addr, running.public_addr);
        wait_ready(&running.health).await;
        self.router = Some(Service {
            stop,
            http_addr,
            public_addr,
            task: tokio::spawn(running.wait()),
        });
    }

    pub async fn start_delivery(&mut self) {
        let stop = CancellationToken::new();
        let running = herald_delivery::start(self.cfg_for("delivery"), stop.clone())
            .await
            .expect("delivery starts");
        let (http_addr, public_addr) = (running.http_addr, running.public_addr);
        wait_ready(&running.health).await;
        self.delivery = Some(Service {
            stop,
            http_addr,
            public_addr,
            task: tokio::spawn(running.wait()),
        });
    }

    /// Starts the broadcast service (not started by default), timing its
    /// call cycles by the wall clock.
    pub async fn start_broadcast(&mut self) {
        self.start_broadcast_with_clock(std::sync::Arc::new(SystemClock))
            .await;
    }

    /// Starts the broadcast service with the clock its cycles and ends are
    /// timed by (a `ManualClock` lets a test step through them).
    pub async fn start_broadcast_with_clock(&mut self, clock: std::sync::Arc<dyn Clock>) {
        let stop = CancellationToken::new();
        let running =
            herald_broadcast::start_with_clock(self.cfg_for("broadcast"), stop.clone(), clock)
                .await
                .expect("broadcast starts");
        let (http_addr, public_addr) = (running.http_addr, running.public_addr);
        wait_ready(&running.health).await;
        self.broadcast = Some(Service {
            stop,
            http_addr,
            public_addr,
            task: tokio::spawn(running.wait()),
        });
    }

    pub async fn start_sla(&mut self) {
        let stop = CancellationToken::new();
        let running = herald_sla::start(self.cfg_for("sla"), stop.clone())
            .await
            .expect("sla starts");
        let (http_addr, public_addr) = (running.http_addr, running.public_addr);
        wait_ready(&running.health).await;
        self.sla = Some(Service {
            stop,
            http_addr,
            public_addr,
            task: tokio::spawn(running.wait()),
        });
    }

    pub async fn start_escalation(&mut self) {
        self.start_escalation_with_clock(std::sync::Arc::new(SystemClock))
            .await;
    }

    /// Starts the escalation service with the clock its timers are kept by
    /// (the feedback trend's date, among others).
    pub async fn start_escalation_with_clock(&mut self, clock: std::sync::Arc<dyn Clock>) {
        let stop = CancellationToken::new();
        let running =
            herald_escalation::start_with_clock(self.cfg_for("escalation"), stop.clone(), clock)
                .await
                .expect("escalation starts");
        let (http_addr, public_addr) = (running.http_addr, running.public_addr);
        wait_ready(&running.health).await;
        self.escalation = Some(Service {
            stop,
            http_addr,
            public_addr,
            task: tokio::spawn(running.wait()),
        });
    }

    /// Stops a service gracefully and waits for it to finish.
    pub async fn stop(&mut self, name: &str) {
        let svc = match name {
            "intake" => self.intake.take(),
            "router" => self.router.take(),
            "delivery" => self.delivery.take(),
            "broadcast" => self.broadcast.take(),
            "sla" => self.sla.take(),
            "escalation" => self.escalation.take(),
            other => panic!("no service {other}"),
        };
        if let Some(s) = svc {
            s.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), s.task).await;
        }
    }

    /// The HTTP (health and metrics) address of a running service.
    pub fn http_addr(&self, name: &str) -> std::net::SocketAddr {
        let svc = match name {
            "intake" => &self.intake,
            "router" => &self.router,
            "delivery" => &self.delivery,
            "broadcast" => &self.broadcast,
            "sla" => &self.sla,
            "escalation" => &self.escalation,
            other => panic!("no service {other}"),
        };
        svc.as_ref().expect("service running").http_addr
    }

    /// Where a running service's public endpoints listen, when they have
    /// a listener of their own.
    pub fn public_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        let svc = match name {
            "delivery" => &self.delivery,
            "broadcast" => &self.broadcast,
            other => panic!("{other} has no public endpoints"),
        };
        svc.as_ref().expect("service running").public_addr
    }

    /// Waits until nothing is on its way: every message in JetStream has
    /// been handled and acknowledged (see [`crate::idle`]). Durable timers
    /// may still be pending. Panics after a minute with what is still busy.
    pub async fn wait_until_idle(&self) {
        crate::idle::wait(
            &async_nats::jetstream::new(self.client.clone()),
            Duration::from_secs(60),
        )
        .await
    }

    /// Waits until nothing is left to happen: idle, and no durable timer
    /// pending or claimed in any service (see [`crate::idle`]). A timer
    /// that should not be there is waited for until it has fired. Panics
    /// after a minute with what is still busy.
    pub async fn wait_until_settled(&self) {
        let redis = herald_runtime::store::connect(&self.cfg.redis, &CancellationToken::new())
            .await
            .expect("redis");
        crate::idle::wait_settled(
            &async_nats::jetstream::new(self.client.clone()),
            &redis,
            &self.cfg.redis.prefix,
            Duration::from_secs(60),
        )
        .await
    }

    pub async fn bus(&self) -> Bus {
        Bus::connect(
            &self.cfg.nats,
            crate::servers::KIT_ADMIN,
            &CancellationToken::new(),
        )
        .await
        .expect("bus")
    }

    /// Adds contacts to the directory.
    pub async fn add_contacts(&self, contacts: &[Contact]) {
        let redis = herald_runtime::store::connect(&self.cfg.redis, &CancellationToken::new())
            .await
            .expect("redis");
        herald_directory::contacts::Directory::new(redis, &self.cfg.redis.prefix)
            .put_all(contacts)
            .await
            .expect("contacts stored");
    }

    /// Adds recipient groups.
    pub async fn add_groups(&self, groups: &[Group]) {
        let redis = herald_runtime::store::connect(&self.cfg.redis, &CancellationToken::new())
            .await
            .expect("redis");
        herald_directory::groups::Groups::new(redis, &self.cfg.redis.prefix)
            .put_all(groups)
            .await
            .expect("groups stored");
    }

    /// Sends a broadcast request (`StartBroadcast`, `UpdateBroadcast` or
    /// `CancelBroadcast`) to its subject, as a coordinator's tool would:
    /// through the `coordinator` identity.
    pub async fn broadcast_request<M: Message>(&self, subject: &str, req: &M) -> BroadcastReply {
        let msg = tokio::time::timeout(
            Duration::from_secs(20),
            self.coordinator.request(
                subjects::from_caller(subject, "coordinator"),
                req.encode_to_vec().into(),
            ),
        )
        .await
        .expect("intake answers in time")
        .expect("intake answers");
        BroadcastReply::decode(msg.payload).expect("a herald.v1.BroadcastReply")
    }

    /// Asks the broadcast service for a broadcast's status, as the
    /// coordinator [`COORDINATOR`].
    pub async fn broadcast_status(&self, broadcast_id: &str) -> BroadcastStatusReply {
        let req = BroadcastStatusRequest {
            broadcast_id: broadcast_id.into(),
            credential: COORDINATOR_TOKEN.into(),
            recipients: true,
        };
        let msg = tokio::time::timeout(
            Duration::from_secs(20),
            self.coordinator
                .request(subjects::BROADCAST_STATUS, req.encode_to_vec().into()),
        )
        .await
        .expect("the broadcast service answers in time")
        .expect("the broadcast service answers");
        BroadcastStatusReply::decode(msg.payload).expect("a herald.v1.BroadcastStatusReply")
    }

    /// Sends a request over NATS request/reply, as another system would.
    pub async fn notify(&self, req: &NotificationRequest) -> IntakeReply {
        self.notify_raw(req.encode_to_vec(), Lane::Normal).await
    }

    pub async fn notify_raw(&self, payload: Vec<u8>, lane: Lane) -> IntakeReply {
        let msg = tokio::time::timeout(
            Duration::from_secs(20),
            self.publisher.request(
                subjects::from_caller(subjects::intake_notify(lane), "publisher"),
                payload.into(),
            ),
        )
        .await
        .expect("intake answers in time")
        .expect("intake answers");
        IntakeReply::decode(msg.payload).expect("a herald.v1.IntakeReply")
    }

    /// Sends a request and insists it is accepted; returns the id.
    pub async fn notify_ok(&self, req: &NotificationRequest) -> String {
        match self.notify(req).await.result {
            Some(intake_reply::Result::Accepted(a)) => a.notification_id,
            other => panic!("expected accepted, got {other:?}"),
        }
    }

    /// Sends a case event over NATS request/reply, as another system would.
    pub async fn case_event(&self, ev: &CaseEvent) -> CaseReply {
        let msg = tokio::time::timeout(
            Duration::from_secs(30),
            self.publisher.request(
                subjects::from_caller(subjects::INTAKE_CASE, "publisher"),
                ev.encode_to_vec().into(),
            ),
        )
        .await
        .expect("intake answers in time")
        .expect("intake answers");
        CaseReply::decode(msg.payload).expect("a herald.v1.CaseReply")
    }

    /// Sends a case event and insists it is accepted; returns its position
    /// in the case stream.
    pub async fn case_ok(&self, ev: &CaseEvent) -> u64 {
        match self.case_event(ev).await.result {
            Some(case_reply::Result::Accepted(a)) => a.sequence,
            other => panic!("expected accepted, got {other:?}"),
        }
    }

    /// A whole case's trail (its notifications included), in order.
    pub async fn case_trail(&self, case_id: &str) -> Vec<AuditRecord> {
        herald_runtime::audit::read_trail(&self.bus().await, &subjects::audit_of_case(case_id))
            .await
            .expect("trail readable")
    }

    /// Waits until a case's trail holds `n` records of `step`.
    pub async fn wait_for_case_steps(
        &self,
        case_id: &str,
        step: AuditStep,
        n: usize,
        timeout: Duration,
    ) -> Vec<AuditRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let trail = self.case_trail(case_id).await;
            if trail.iter().filter(|r| r.step == step as i32).count() >= n {
                return trail;
            }
            if tokio::time::Instant::now() > deadline {
                let steps: Vec<String> = trail
                    .iter()
                    .map(|r| format!("{:?}: {}", AuditStep::try_from(r.step), r.summary))
                    .collect();
                panic!(
                    "fewer than {n} {step:?} in the trail of {case_id} within {timeout:?}: {steps:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A notification's audit trail, in order.
    pub async fn trail(&self, notification_id: &str) -> Vec<AuditRecord> {
        herald_runtime::audit::read_trail(
            &self.bus().await,
            &subjects::audit_of_notification(notification_id),
        )
        .await
        .expect("trail readable")
    }

    /// Waits until the trail holds a record of `step`.
    pub async fn wait_for_step(
        &self,
        notification_id: &str,
        step: AuditStep,
        timeout: Duration,
    ) -> Vec<AuditRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let trail = self.trail(notification_id).await;
            if trail.iter().any(|r| r.step == step as i32) {
                return trail;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no {step:?} in the trail of {notification_id} within {timeout:?}: {trail:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_ready(health: &herald_runtime::health::Health) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !health.is_ready().await {
        if tokio::time::Instant::now() > deadline {
            panic!("service not ready: {:?}", health.check().await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for TestSystem {
    fn drop(&mut self) {
        for s in [
            &self.intake,
            &self.router,
            &self.delivery,
            &self.sla,
            &self.escalation,
            &self.broadcast,
        ]
        .into_iter()
        .flatten()
        {
            s.stop.cancel();
        }
        // Every service ran as its own Redis user: one refused a command
        // or a key means it reached past its keyspace
        // (`herald_proto::keyspace`). The test that made it do so fails.
        if !std::thread::panicking() && self.redis.is_running() {
            let denied = self.redis.denials();
            assert!(
                denied.is_empty(),
                "Redis refused a service's command (its ACL): {denied:#?}"
            );
        }
    }
}
