//! The start-up every Herald service shares, written once: connect to NATS
//! as the service (waiting for its streams) and Redis, watch both for readiness, collect
//! metrics, run consumers, request servers and background loops, serve
//! health and metrics over HTTP, and hand back a [`Running`] service that
//! the binary waits on and tests stop through the shutdown token.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use async_nats::jetstream;
use axum::Router;
use bytes::Bytes;
use herald_config::Config;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    bus::{self, Bus, ConsumerSpec, Disposition, Gate},
    health::Health,
    metrics::Queue,
    priority::Precedence,
    serve::ServeOptions,
};

/// A service being assembled. Everything it spawns stops on the shutdown
/// token it was connected with.
pub struct ServiceBuilder {
    name: &'static str,
    pub bus: Bus,
    pub redis: ConnectionManager,
    pub health: Health,
    /// Where the service registers its own metric families.
    pub registry: Registry,
    shutdown: CancellationToken,
    precedence: Option<Precedence>,
    queues: Vec<Queue>,
    queue_poll: Duration,
    routes: Option<Router>,
    public: Option<(herald_config::PublicListener, Router)>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl ServiceBuilder {
    /// Connects to NATS as the service's own identity and waits for the
    /// streams it works with, then connects to Redis, retrying each until it answers or
    /// `shutdown` fires.
    pub async fn connect(
        name: &'static str,
        cfg: &Config,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<ServiceBuilder> {
        let bus = Bus::connect(&cfg.nats, name, shutdown).await?;
        let me = herald_proto::access::Identity::new(name, herald_proto::access::Role::Service);
        bus.await_streams(&herald_proto::access::permissions(&me).streams(), shutdown)
            .await?;
        let redis = crate::store::connect_as(&cfg.redis, Some(name), shutdown).await?;
        let health = Health::new();
        health.watch_nats(&bus.client);
        health.watch_redis(&redis);
        Ok(ServiceBuilder {
            name,
            bus,
            redis,
            health,
            registry: Registry::with_prefix("herald"),
            shutdown: shutdown.clone(),
            precedence: None,
            queues: Vec::new(),
            queue_poll: cfg.telemetry.queue_poll_interval,
            routes: None,
            public: None,
            tasks: Vec::new(),
        })
    }

    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// This process's share in the emergency lane's precedence, listening
    /// to (and, while busy, telling) the other processes from the first
    /// call on.
    pub fn precedence(&mut self) -> Precedence {
        if let Some(p) = &self.precedence {
            return p.clone();
        }
        let p = Precedence::new();
        let listener = p.attach(&self.bus.client, self.shutdown.clone());
        self.tasks.push(tokio::spawn(async move {
            let _ = listener.await;
            Ok(())
        }));
        self.precedence = Some(p.clone());
        p
    }

    /// The gate a consumer of `lane` passes: the normal lane yields to
    /// emergency work, emergency work counts as such.
    pub fn lane_gate(&mut self, lane: herald_proto::v1::Lane) -> Gate {
        let p = self.precedence();
        match lane {
            herald_proto::v1::Lane::Normal => Gate::Yield(p),
            herald_proto::v1::Lane::Emergency => Gate::Busy(p),
        }
    }

    /// Streams and consumers whose depth and lag the service reports.
    pub fn watch(&mut self, queues: impl IntoIterator<Item = Queue>) {
        self.queues.extend(queues);
    }

    /// The endpoints strangers reach (provider callbacks, confirmation
    /// links): on a listener of their own, with TLS when configured, if
    /// `listener` names an address; else on the HTTP port beside health
    /// and metrics.
    pub fn public_routes(&mut self, listener: herald_config::PublicListener, routes: Router) {
        if listener.addr.is_some() {
            self.public = Some((listener, routes));
        } else {
            self.routes(routes);
        }
    }

    /// More routes on the service's HTTP port (beside health and metrics).
    pub fn routes(&mut self, routes: Router) {
        self.routes = Some(match self.routes.take() {
            Some(r) => r.merge(routes),
            None => routes,
        });
    }

    /// Runs `handle` over a durable consumer (see [`bus::consume_gated`]);
    /// the service is ready only while it is bound.
    pub fn consume<F, Fut>(&mut self, spec: ConsumerSpec, gate: Gate, grace: Duration, handle: F)
    where
        F: Fn(jetstream::Message) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Disposition> + Send + 'static,
    {
        let ready = self.health.flag(format!("consumer-{}", spec.durable));
        let (bus, shutdown) = (self.bus.clone(), self.shutdown.clone());
        self.tasks.push(tokio::spawn(async move {
            bus::consume_gated(&bus, spec, gate, ready, shutdown, grace, handle).await
        }));
    }

    /// The same for a handler of several messages at once (see
    /// [`bus::consume_batches`]).
    pub fn consume_batches<F, Fut>(
        &mut self,
        spec: ConsumerSpec,
        gate: Gate,
        max_batch: usize,
        grace: Duration,
        handle: F,
    ) where
        F: Fn(Vec<jetstream::Message>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Vec<Disposition>> + Send + 'static,
    {
        let ready = self.health.flag(format!("consumer-{}", spec.durable));
        let (bus, shutdown) = (self.bus.clone(), self.shutdown.clone());
        self.tasks.push(tokio::spawn(async move {
            bus::consume_batches(&bus, spec, gate, max_batch, ready, shutdown, grace, handle).await
        }));
    }

    /// Runs `handle` in order on every partition of the case stream (see
    /// [`bus::consume_case_partitions`]).
    pub fn consume_case_partitions<F, Fut>(
        &mut self,
        durable: &str,
        filter: fn(u32) -> String,
        ack_wait: Duration,
        handle: F,
    ) where
        F: Fn(jetstream::Message) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = anyhow::Result<Disposition>> + Send + 'static,
    {
        let health = self.health.clone();
        let tasks = bus::consume_case_partitions(
            &self.bus,
            |name| health.flag(name),
            durable,
            filter,
            ack_wait,
            &self.shutdown,
            handle,
        );
        self.tasks.extend(tasks);
    }

    /// Answers requests on `subjects` in the service's queue group `queue`
    /// (see [`crate::serve`]); the reply is whatever `handle` returns.
    pub async fn serve<S, F, Fut>(
        &mut self,
        subjects: &[S],
        queue: &str,
        opts: ServeOptions,
        handle: F,
    ) -> anyhow::Result<()>
    where
        S: AsRef<str>,
        F: Fn(async_nats::Message) -> Fut + Send + 'static,
        Fut: Future<Output = Option<Bytes>> + Send + 'static,
    {
        let task = crate::serve::subscribe_and_serve(
            &self.bus.client,
            subjects,
            queue,
            opts,
            self.shutdown.clone(),
            handle,
        )
        .await?;
        self.tasks.push(task);
        Ok(())
    }

    /// Answers intake's erasure requests for this service
    /// (`herald.v1.<service>.erase`): its own streams and keyspaces, and
    /// what `derive` adds to the person's addresses.
    pub async fn serve_erasure(
        &mut self,
        deployment: &str,
        derive: Option<crate::erase::serve::Derive>,
    ) -> anyhow::Result<()> {
        let mut eraser =
            crate::erase::serve::Eraser::new(self.name, &self.bus, &self.redis, deployment);
        if let Some(d) = derive {
            eraser = eraser.deriving(d);
        }
        let subject = herald_proto::subjects::erase_part(self.name);
        self.serve(
            &[subject.as_str()],
            &format!("herald-{}-erase", self.name),
            ServeOptions::new(1),
            move |msg| {
                let eraser = eraser.clone();
                async move {
                    use herald_proto::Message;
                    Some(eraser.answer(&msg.payload).await.encode_to_vec().into())
                }
            },
        )
        .await
    }

    /// Runs a background loop (timers, a listener) until it ends; the
    /// service's outcome includes its error.
    pub fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Binds the HTTP port (`addr`; port 0 picks a free one) with health,
    /// readiness, metrics and the added routes, starts reporting queue
    /// depths, and makes sure every subscription is registered with NATS
    /// before anyone is told the service is up.
    pub async fn start(mut self, addr: &str) -> anyhow::Result<Running> {
        // The server answers a flush once it has every subscription sent
        // before it, so a request made once this service says it is up
        // finds its subjects answered. A server out of reach does not hold
        // the start up: the consumers then report not ready themselves.
        if tokio::time::timeout(Duration::from_secs(5), self.bus.client.flush())
            .await
            .is_err()
        {
            tracing::warn!("the NATS server did not confirm the subscriptions in time");
        }
        if !self.queues.is_empty() {
            let poller = crate::metrics::watch_queues(
                self.bus.clone(),
                &mut self.registry,
                std::mem::take(&mut self.queues),
                self.queue_poll,
                self.shutdown.clone(),
            );
            self.tasks.push(tokio::spawn(async move {
                let _ = poller.await;
                Ok(())
            }));
        }
        let (http_addr, http_task) = crate::health::serve(
            addr,
            self.health.clone(),
            Arc::new(self.registry),
            self.routes,
            self.shutdown.clone(),
        )
        .await?;
        let public_addr = match self.public.take() {
            Some((listener, routes)) => {
                let addr = listener.addr.clone().unwrap_or_default();
                let (bound, task) =
                    crate::public::serve(&addr, &listener, routes, self.shutdown.clone()).await?;
                self.tasks.push(tokio::spawn(async move {
                    let _ = task.await;
                    Ok(())
                }));
                info!(%bound, tls = listener.tls_cert_file.is_some(), "public endpoints listening");
                Some(bound)
            }
            None => None,
        };
        self.bus.client.flush().await?;
        info!(%http_addr, "{} ready", self.name);
        let (tasks, bus) = (self.tasks, self.bus);
        let task = tokio::spawn(async move {
            let mut outcome = Ok(());
            for t in tasks {
                let ended = t.await.map_err(anyhow::Error::from).and_then(|r| r);
                if outcome.is_ok() {
                    outcome = ended;
                }
            }
            let _ = http_task.await;
            let _ = bus.client.flush().await;
            outcome
        });
        Ok(Running {
            http_addr,
            public_addr,
            health: self.health,
            task,
        })
    }
}

/// The body of every service binary: the configuration (`HERALD_CONFIG`
/// and the `HERALD_*` variables), telemetry as `name`, a shutdown token
/// that SIGTERM and ctrl-c cancel, then `run` until it ends.
pub async fn main<F, Fut>(name: &'static str, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::install_crypto();
    let cfg = Config::from_process_env()?;
    let _telemetry = crate::telemetry::init(name, &cfg.telemetry)?;
    let shutdown = crate::shutdown::on_signals();
    run(cfg, shutdown).await
}

/// A started service: where its HTTP port listens, its readiness, and its
/// task, which ends once everything it runs has stopped.
pub struct Running {
    /// Health, readiness and metrics (and any routes the service adds).
    pub http_addr: SocketAddr,
    /// The public endpoints' own listener, when they have one.
    pub public_addr: Option<SocketAddr>,
    pub health: Health,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the service has stopped, with its outcome.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}
