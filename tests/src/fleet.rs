//! A Herald spread over a cluster, for the cluster fault test: a
//! [`NatsCluster`], Redis, the provider sinks, and each service run as
//! several processes of its own, any of which can be SIGKILLed and
//! started again.

use std::{net::SocketAddr, time::Duration};

use herald_config::Config;
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::NatsCluster,
    http::HttpSink,
    process::ServiceProcess,
    providers::Providers,
    scrape,
    servers::{RedisServer, free_port},
    smtp::SmtpSink,
};

/// Where the services' Redis is and who they are on it: one server, or a
/// primary with replicas behind Sentinel ([`crate::sentinel::RedisHa`]).
pub trait RedisUrls {
    /// The kit's administrator.
    fn url(&self) -> String;
    /// `service`'s own ACL user.
    fn url_for(&self, service: &str) -> String;
    /// Commands refused for want of permission, on every server.
    fn denials(&self) -> Vec<String>;
    /// Settings beyond the URL (Sentinel's credentials).
    fn configure(&self, _cfg: &mut herald_config::RedisConfig) {}
}

impl RedisUrls for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }
    fn url_for(&self, service: &str) -> String {
        RedisServer::url_for(self, service)
    }
    fn denials(&self) -> Vec<String> {
        RedisServer::denials(self)
    }
}

/// One process of one service.
pub struct Instance {
    pub service: &'static str,
    pub index: usize,
    /// Its health and metrics port.
    pub http_addr: SocketAddr,
    process: ServiceProcess,
}

/// The system (see the module).
pub struct ClusterSystem<R: RedisUrls> {
    pub nats: NatsCluster,
    pub redis: R,
    pub smtp: SmtpSink,
    pub http: HttpSink,
    pub cfg: Config,
    /// The kit's own connection to the cluster, allowed everything.
    pub client: async_nats::Client,
    pub instances: Vec<Instance>,
    _outbox: tempfile::TempDir,
    _ca: tempfile::TempDir,
}

/// Shutdown, draining and take-overs are logged at info: what a fault
/// test shows when its timing is off.
const LOG: &str = "warn,herald_runtime=info,herald_delivery=info";

impl<R: RedisUrls> ClusterSystem<R> {
    /// Provisions Herald's streams on `nats` as `tweak` leaves the test
    /// configuration (set `nats.replicas` there), then starts `per_service`
    /// processes of each of `services` and waits until every one is ready.
    pub async fn start(
        nats: NatsCluster,
        redis: R,
        services: &[&'static str],
        per_service: usize,
        tweak: impl FnOnce(&mut Config),
    ) -> ClusterSystem<R> {
        herald_runtime::install_crypto();
        let providers = Providers::start().await;
        let mut cfg =
            crate::providers::config(&providers.smtp, &providers.http, providers.outbox());
        providers.trust(&mut cfg);
        nats.configure(&mut cfg.nats);
        cfg.redis.url = redis.url().into();
        redis.configure(&mut cfg.redis);
        tweak(&mut cfg);
        nats.provision(&cfg.nats).await;
        let client = nats.admin().await;
        let (smtp, http, outbox, ca) = providers.into_parts();
        let mut sys = ClusterSystem {
            nats,
            redis,
            smtp,
            http,
            cfg,
            client,
            instances: Vec::new(),
            _outbox: outbox,
            _ca: ca,
        };
        for service in services {
            for index in 0..per_service {
                let cfg = sys.cfg_for(service);
                let process = ServiceProcess::spawn_with_env(service, &cfg, &[("RUST_LOG", LOG)]);
                sys.instances.push(Instance {
                    service,
                    index,
                    http_addr: http_addr(service, &cfg),
                    process,
                });
            }
        }
        for i in &sys.instances {
            scrape::wait_readyz(i.http_addr, 200, Duration::from_secs(60)).await;
        }
        sys
    }

    /// The configuration one process of `service` runs with: its own Redis
    /// user, its own ports.
    fn cfg_for(&self, service: &str) -> Config {
        let mut cfg = self.cfg.clone();
        cfg.redis.url = self.redis.url_for(service).into();
        let port = || format!("127.0.0.1:{}", free_port());
        cfg.intake.grpc_addr = port();
        cfg.intake.http_addr = port();
        cfg.router.http_addr = port();
        cfg.delivery.http_addr = port();
        cfg.sla.http_addr = port();
        cfg.escalation.http_addr = port();
        cfg.broadcast.http_addr = port();
        cfg
    }

    fn instance(&mut self, service: &str, index: usize) -> &mut Instance {
        self.instances
            .iter_mut()
            .find(|i| i.service == service && i.index == index)
            .unwrap_or_else(|| panic!("no instance {index} of {service}"))
    }

    /// SIGKILLs instance `index` of `service`.
    pub fn kill(&mut self, service: &str, index: usize) {
        self.instance(service, index).process.kill();
    }

    /// SIGTERMs instance `index` of `service` and waits for it to exit.
    pub fn terminate(&mut self, service: &str, index: usize) {
        self.instance(service, index).process.terminate();
    }

    /// Starts instance `index` of `service` again and waits until it is ready.
    pub async fn restart(&mut self, service: &str, index: usize) {
        let i = self.instance(service, index);
        i.process.start();
        let addr = i.http_addr;
        scrape::wait_readyz(addr, 200, Duration::from_secs(60)).await;
    }

    /// The HTTP address of instance `index` of `service`.
    pub fn http_addr(&self, service: &str, index: usize) -> SocketAddr {
        self.instances
            .iter()
            .find(|i| i.service == service && i.index == index)
            .map(|i| i.http_addr)
            .unwrap_or_else(|| panic!("no instance {index} of {service}"))
    }

    /// What instance `index` of `service` has logged.
    pub fn log(&self, service: &str, index: usize) -> String {
        self.instances
            .iter()
            .find(|i| i.service == service && i.index == index)
            .map(|i| i.process.log())
            .unwrap_or_default()
    }

    /// When each message reached a sink (SMS accepted, email received),
    /// in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        let mut at: Vec<_> = self
            .http
            .requests_to("/sms")
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .map(|r| r.at)
            .chain(self.smtp.mails().iter().map(|m| m.at))
            .collect();
        at.sort();
        at
    }

    /// Messages at the sinks so far.
    pub fn sent(&self) -> usize {
        self.smtp.count() + self.http.requests_to("/sms").len()
    }

    /// A bus of the kit's, allowed everything.
    pub async fn bus(&self) -> herald_runtime::bus::Bus {
        herald_runtime::bus::Bus::connect(
            &self.cfg.nats,
            crate::servers::KIT_ADMIN,
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("the kit's bus: {e}"))
    }

    /// Waits until every message in JetStream has been handled and
    /// acknowledged (see [`crate::idle`]), for up to `timeout`.
    pub async fn wait_until_idle(&self, timeout: Duration) {
        crate::idle::wait(&async_nats::jetstream::new(self.client.clone()), timeout).await
    }
}

/// The longest stretch with no arrival between `from` and `to` among
/// `arrivals` (sorted): how long a fault struck at `from` stopped the flow.
/// `to` is best the moment of the last arrival counted.
pub fn longest_gap(
    arrivals: &[std::time::Instant],
    from: std::time::Instant,
    to: std::time::Instant,
) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &t in arrivals.iter().filter(|t| **t >= from && **t <= to) {
        gap = gap.max(t - last);
        last = t;
    }
    gap.max(to.saturating_duration_since(last))
}

/// The health port `cfg` gives `service`.
fn http_addr(service: &str, cfg: &Config) -> SocketAddr {
    let addr = match service {
        "intake" => &cfg.intake.http_addr,
        "router" => &cfg.router.http_addr,
        "delivery" => &cfg.delivery.http_addr,
        "sla" => &cfg.sla.http_addr,
        "escalation" => &cfg.escalation.http_addr,
        "broadcast" => &cfg.broadcast.http_addr,
        other => panic!("no service {other}"),
    };
    addr.parse()
        .unwrap_or_else(|e| panic!("{service}'s http_addr {addr}: {e}"))
}

impl<R: RedisUrls> Drop for ClusterSystem<R> {
    fn drop(&mut self) {
        // Every service ran as its own Redis user: a refused command means
        // one reached past its keyspace.
        if !std::thread::panicking() {
            let denied = self.redis.denials();
            assert!(
                denied.is_empty(),
                "Redis refused a service's command (its ACL): {denied:#?}"
            );
        }
    }
}
