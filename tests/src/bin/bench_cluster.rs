//! `make bench-cluster`: Herald on a three-server NATS cluster, end to end,
//! with one and with two processes of each service, on streams of one
//! replica and of three, in one run; then the failover gap, the longest
//! time with no arrival at the sink while the server leading the delivery
//! stream is SIGKILLed under a steady load.
//!
//! Everything runs on this machine: three nats-servers clustered on
//! loopback (the test kit's [`NatsCluster`]), one redis-server, an HTTP
//! provider sink in this process, and intake, router and delivery as
//! release processes. Each notification goes to a directory contact who
//! prefers SMS (the pipeline-only row of `make bench`: per-person window
//! off, no status callbacks, 1,000 contacts). On a machine with few cores
//! every process shares them: a second process of a service adds no CPU,
//! only what its own concurrency limits and a second connection add.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use axum::{Router, routing::post};
use herald_config::Config;
use herald_proto::{Message, subjects, v1::Lane};
use herald_testkit::{
    benchkit::{
        Arrivals, Service, percentile, release_binary, request_among, sink, sms_contacts_n, submit,
        wait_ready, warm_up,
    },
    cluster::NatsCluster,
    servers::{PUBLISHER, RedisServer, free_port},
};
use tokio::sync::Semaphore;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: [&str; 3] = ["intake", "router", "delivery"];
const CONTACTS: usize = 1000;
/// Sequence numbers each phase starts from, so the sink tells them apart.
const WARM: usize = 0;
const PEAK: usize = 10_000;
const LATENCY: usize = 200_000;
const FAILOVER: usize = 400_000;
const SLOTS: usize = 600_000;

struct Args {
    count: usize,
    latency_secs: usize,
    in_flight: usize,
    failover_secs: usize,
}

fn args() -> Args {
    let mut a = Args {
        count: 20_000,
        latency_secs: 8,
        in_flight: 512,
        failover_secs: 24,
    };
    herald_testkit::benchkit::numeric_args(
        &mut [
            ("--count", &mut a.count),
            ("--latency-secs", &mut a.latency_secs),
            ("--in-flight", &mut a.in_flight),
            ("--failover-secs", &mut a.failover_secs),
        ],
        "herald-bench-cluster [--count N] [--latency-secs S] [--in-flight K] [--failover-secs S]",
    );
    a.count = a.count.min(LATENCY - PEAK);
    a
}

/// One configuration, up and ready.
struct Deployment {
    nats: NatsCluster,
    _redis: RedisServer,
    services: Vec<Service>,
    client: async_nats::Client,
    arrivals: Arc<Arrivals>,
    start: Instant,
}

async fn deploy(
    replicas: usize,
    instances: usize,
    work: &Path,
    templates: &Path,
) -> anyhow::Result<Deployment> {
    let nats = NatsCluster::start(3)
        .await
        .map_err(|e| anyhow::anyhow!("this machine cannot run a three-server cluster: {e}"))?;
    let redis = RedisServer::start();
    let start = Instant::now();
    let arrivals = Arc::new(Arrivals::new(start, SLOTS));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr: SocketAddr = listener.local_addr()?;
    let app = Router::new()
        .route("/sms", post(sink))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut cfg = Config::default();
    nats.configure(&mut cfg.nats);
    cfg.nats.replicas = replicas;
    cfg.redis.url = redis.url().into();
    cfg.content.templates_dir = templates.to_path_buf();
    cfg.delivery.sms_url = Some(format!("http://{sink_addr}/sms"));
    cfg.delivery.outbox_dir = work.join("outbox");
    cfg.delivery.contact_max_sms = 0;
    cfg.telemetry.log_level = "warn".into();
    nats.provision(&cfg.nats).await;
    herald_directory::contacts::Directory::new(
        herald_runtime::store::connect(&cfg.redis, &Default::default()).await?,
        &cfg.redis.prefix,
    )
    .put_all(&sms_contacts_n(CONTACTS))
    .await?;

    let mut services = Vec::new();
    let mut ready = Vec::new();
    for name in SERVICES {
        for i in 0..instances {
            let mut own = cfg.clone();
            let port = |_: ()| format!("127.0.0.1:{}", free_port());
            own.intake.grpc_addr = port(());
            own.intake.http_addr = port(());
            own.router.http_addr = port(());
            own.delivery.http_addr = port(());
            ready.push(match name {
                "intake" => own.intake.http_addr.clone(),
                "router" => own.router.http_addr.clone(),
                _ => own.delivery.http_addr.clone(),
            });
            let file = work.join(format!("{name}-{replicas}-{instances}-{i}.toml"));
            std::fs::write(&file, toml::to_string(&own)?)?;
            let log = std::fs::File::create(work.join(format!("{name}-{i}.log")))?;
            let child = Command::new(release_binary(&format!("herald-{name}")))
                .env("HERALD_CONFIG", &file)
                .env("HERALD_REDIS_URL", redis.url_for(name))
                .env("RUST_LOG", "warn")
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            services.push(Service { name, child });
        }
    }
    for addr in &ready {
        wait_ready(addr).await;
    }
    let client = nats.connect_as(PUBLISHER).await;
    warm_up(&client, &arrivals, WARM, 2000).await;
    Ok(Deployment {
        nats,
        _redis: redis,
        services,
        client,
        arrivals,
        start,
    })
}

/// As many notifications as intake takes with `in_flight` requests
/// outstanding: notifications per second, first request to last arrival,
/// and how many arrived.
async fn peak(d: &Deployment, count: usize, in_flight: usize) -> anyhow::Result<(f64, usize)> {
    let slots = Arc::new(Semaphore::new(in_flight));
    let t0 = d.start.elapsed();
    let mut tasks = Vec::with_capacity(count);
    for seq in PEAK..PEAK + count {
        let permit = slots.clone().acquire_owned().await?;
        let client = d.client.clone();
        let payload = bytes::Bytes::from(request_among("peak", seq, CONTACTS).encode_to_vec());
        tasks.push(tokio::spawn(async move {
            let ok = submit(&client, payload).await;
            drop(permit);
            ok
        }));
    }
    for t in tasks {
        t.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.arrivals.arrived_in(PEAK..PEAK + count) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = (PEAK..PEAK + count)
        .map(|s| d.arrivals.at[s].load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let arrived = d.arrivals.arrived_in(PEAK..PEAK + count);
    let elapsed = Duration::from_nanos(last).saturating_sub(t0);
    Ok((arrived as f64 / elapsed.as_secs_f64(), arrived))
}

/// An open-loop stream at `rate` for `secs` from sequence `base`, with
/// `during` run once a third of the way in; returns when each was sent
/// (nanoseconds since the deployment started) once all arrived or a
/// minute passed.
async fn open_loop(
    d: &mut Deployment,
    rate: f64,
    secs: usize,
    base: usize,
    mut during: impl FnMut(&mut Deployment),
) -> Vec<u64> {
    let n = ((rate * secs as f64) as usize).min(SLOTS - base);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut sent_at = vec![0u64; n];
    let t_start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for (i, slot) in sent_at.iter_mut().enumerate() {
        if i == n / 3 {
            during(d);
        }
        let due = t_start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        *slot = d.start.elapsed().as_nanos() as u64;
        let client = d.client.clone();
        let payload = bytes::Bytes::from(request_among("open", base + i, CONTACTS).encode_to_vec());
        handles.push(tokio::spawn(async move { submit(&client, payload).await }));
    }
    for h in handles {
        let _ = h.await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.arrivals.arrived_in(base..base + n) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent_at
}

/// Latencies (request to arrival) of the `sent_at.len()` notifications
/// from `base` that arrived, sorted.
fn latencies(d: &Deployment, base: usize, sent_at: &[u64]) -> Vec<Duration> {
    let mut lat: Vec<Duration> = sent_at
        .iter()
        .enumerate()
        .filter_map(|(i, sent)| {
            let at = d.arrivals.at[base + i].load(Ordering::Relaxed);
            (at != 0).then(|| Duration::from_nanos(at.saturating_sub(*sent)))
        })
        .collect();
    lat.sort();
    lat
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    herald_runtime::install_crypto();
    let work = tempfile::tempdir()?;
    let templates = herald_testkit::benchkit::templates(work.path())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "herald-bench-cluster: 3 nats-servers, 1 redis-server, {cores} cores; {} notifications at peak ({} in flight), latency at half the peak for {} s",
        a.count, a.in_flight, a.latency_secs
    );
    println!();
    println!(
        "| streams | processes of each service | throughput | p50 | p99 | arrived | duplicates |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut failover_rate = 0.0;
    for (replicas, instances) in [(1, 1), (1, 2), (3, 1), (3, 2)] {
        let mut d = deploy(replicas, instances, work.path(), &templates).await?;
        let (rate, arrived) = peak(&d, a.count, a.in_flight).await?;
        let half = (rate / 2.0).max(1.0);
        let sent = open_loop(&mut d, half, a.latency_secs, LATENCY, |_| {}).await;
        let lat = latencies(&d, LATENCY, &sent);
        println!(
            "| R{replicas} | {instances} | {rate:.0}/s | {:.1} ms | {:.1} ms at {half:.0}/s | {}/{} + {}/{} | {} |",
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.99)),
            arrived,
            a.count,
            lat.len(),
            sent.len(),
            d.arrivals.duplicates.load(Ordering::Relaxed)
        );
        if (replicas, instances) == (3, 2) {
            failover_rate = half;
            failover(&mut d, half, a.failover_secs).await;
        }
        for s in &mut d.services {
            s.terminate();
        }
    }
    println!("(failover run at {failover_rate:.0}/s, half the R3 peak with two of each service)");
    Ok(())
}

/// Under a steady load, SIGKILLs the server leading the delivery stream a
/// third of the way in and prints the longest stretch with no arrival
/// after it, and what was lost or repeated.
async fn failover(d: &mut Deployment, rate: f64, secs: usize) {
    let stream = subjects::delivery_stream(Lane::Normal);
    let leader = d.nats.leader_of(stream).await;
    let name = d.nats.nodes[leader].name.clone();
    let dups_before = d.arrivals.duplicates.load(Ordering::Relaxed);
    let mut killed_at = 0u64;
    let sent = open_loop(d, rate, secs, FAILOVER, |d| {
        killed_at = d.start.elapsed().as_nanos() as u64;
        d.nats.kill(leader);
    })
    .await;
    let mut at: Vec<u64> = (FAILOVER..FAILOVER + sent.len())
        .map(|s| d.arrivals.at[s].load(Ordering::Relaxed))
        .filter(|t| *t != 0)
        .collect();
    at.sort();
    let mut gap = 0u64;
    let mut last = killed_at;
    for &t in at.iter().filter(|t| **t >= killed_at) {
        gap = gap.max(t - last);
        last = t;
    }
    let lat = latencies(d, FAILOVER, &sent);
    println!();
    println!(
        "failover: {name} (leading {stream}) SIGKILLed {:.1} s into {secs} s at {rate:.0}/s: \
         longest stretch with no arrival {:.2} s; {} of {} arrived, {} delivered twice; p99 across the run {:.0} ms, max {:.0} ms",
        secs as f64 / 3.0,
        gap as f64 / 1e9,
        lat.len(),
        sent.len(),
        d.arrivals.duplicates.load(Ordering::Relaxed) - dups_before,
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
}
