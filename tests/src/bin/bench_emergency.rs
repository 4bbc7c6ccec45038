//! `make bench-emergency`: does an emergency broadcast get out as fast
//! under a flood of ordinary traffic as on an idle system?
//!
//! Everything runs on this machine: nats-server and redis-server from the
//! test kit, an SMTP server and an HTTP provider sink in this process, and
//! intake, router, delivery and broadcast as separate release processes.
//!
//! 1. Idle: a broadcast to 1,000 people (an email AND a call each), timed
//!    from the start request to intake until each person's email and call
//!    requests reached the sinks.
//! 2. Flood: router and delivery are stopped while a backlog of ordinary
//!    notifications (110,000 by default, each an SMS) is accepted; they are
//!    started again and, once ordinary SMS flow at full speed with at least
//!    100,000 still waiting, the same broadcast (a new id) is started and
//!    timed the same way.
//! 3. The backlog drains; every ordinary SMS is counted at the sink (none
//!    lost, none doubled).
//!
//! Targets: flood p99 ≤ 2 × idle p99, and every provider request of the
//! flood broadcast out within 2 s of intake.
//!
//! Sending 2,000 messages is bounded by how many requests each provider
//! takes at once: the run uses the shipped limits, 16 SMTP connections and
//! 32 voice requests in flight (`--email-connections`, `--call-connections`
//! to try others).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use herald_config::{Config, Coordinator, DeliveryConfig};
use herald_directory::{
    contacts::{Contact, Directory},
    groups::{Group, Groups},
};
use herald_proto::{
    Message, subjects,
    v1::{
        Audience, BroadcastMessage, BroadcastReply, Cycles, Severity, StartBroadcast,
        broadcast_reply,
    },
};
use herald_testkit::{
    benchkit::{
        Arrivals, Service, cpu_seconds, percentile, request, sink, sms_contacts, spawn, submit_all,
        wait_ready, warm_up, yes,
    },
    fixtures::contact,
    servers::{NatsServer, RedisServer},
    smtp::SmtpSink,
};

const TOKEN: &str = "bench-coordinator-token";

struct Args {
    backlog: usize,
    recipients: usize,
    in_flight: usize,
    /// SMTP connections and voice-provider requests in flight per delivery
    /// instance (`delivery.smtp_pool_size`, `delivery.voice_connections`).
    email_connections: usize,
    call_connections: usize,
}

fn args() -> Args {
    let mut a = Args {
        backlog: 110_000,
        recipients: 1000,
        in_flight: 1024,
        email_connections: DeliveryConfig::default().smtp_pool_size as usize,
        call_connections: DeliveryConfig::default().voice_connections,
    };
    herald_testkit::benchkit::numeric_args(
        &mut [
            ("--backlog", &mut a.backlog),
            ("--recipients", &mut a.recipients),
            ("--in-flight", &mut a.in_flight),
            ("--email-connections", &mut a.email_connections),
            ("--call-connections", &mut a.call_connections),
        ],
        "herald-bench-emergency [--backlog N] [--recipients N] [--in-flight K] [--email-connections N] [--call-connections N]",
    );
    a
}

/// Calls as the voice provider received them: (job id, when).
#[derive(Default)]
struct Calls(Mutex<Vec<(String, Instant)>>);

async fn voice(State(calls): State<Arc<Calls>>, headers: HeaderMap, _body: Bytes) -> &'static str {
    let at = Instant::now();
    let job = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    calls.0.lock().unwrap().push((job, at));
    "{\"sid\":\"CAbench\"}"
}

/// One broadcast's timing.
struct Timing {
    /// Per recipient: until both their email and their call were out.
    both: Vec<Duration>,
    email: Vec<Duration>,
    call: Vec<Duration>,
    accepted_after: Duration,
}

impl Timing {
    fn row(&self, name: &str) -> String {
        let p = |v: &[Duration], q: f64| percentile(v, q).as_secs_f64() * 1e3;
        format!(
            "{name}: intake answered in {:.1} ms; first request out after {:.1} ms; per recipient (email and call both out) p50 {:.1} ms, p99 {:.1} ms, last {:.1} ms; emails p99 {:.1} ms, calls p99 {:.1} ms",
            self.accepted_after.as_secs_f64() * 1e3,
            p(&self.email, 0.0).min(p(&self.call, 0.0)),
            p(&self.both, 0.5),
            p(&self.both, 0.99),
            self.both.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            p(&self.email, 0.99),
            p(&self.call, 0.99),
        )
    }

    fn p99(&self) -> Duration {
        percentile(&self.both, 0.99)
    }

    fn last(&self) -> Duration {
        self.both.last().copied().unwrap_or_default()
    }
}

fn broadcast(id: &str, recipients: usize) -> StartBroadcast {
    StartBroadcast {
        broadcast_id: id.into(),
        credential: TOKEN.into(),
        severity: Severity::Extreme as i32,
        audience: Some(Audience {
            group_ids: vec![format!("everyone-{recipients}")],
            ..Default::default()
        }),
        messages: vec![BroadcastMessage {
            language: "en".into(),
            subject: "Evacuate building B".into(),
            body: "Leave building B by the nearest exit and gather at point B.".into(),
            speak: "Evacuate building B now.".into(),
            sms: String::new(),
        }],
        cycles: Some(Cycles {
            interval_seconds: 600,
            cycles: 1,
            duration_seconds: 3600,
        }),
        ..Default::default()
    }
}

/// Starts a broadcast and times every recipient's email and call.
async fn run_broadcast(
    client: &async_nats::Client,
    smtp: &SmtpSink,
    calls: &Calls,
    id: &str,
    recipients: usize,
) -> anyhow::Result<Timing> {
    let req = broadcast(id, recipients);
    let t0 = Instant::now();
    let reply = client
        .request(
            subjects::from_caller(subjects::BROADCAST_START, "coordinator"),
            req.encode_to_vec().into(),
        )
        .await?;
    let accepted_after = t0.elapsed();
    match BroadcastReply::decode(reply.payload)?.result {
        Some(broadcast_reply::Result::Accepted(_)) => {}
        other => anyhow::bail!("broadcast {id} not accepted: {other:?}"),
    }
    let prefix = format!("{id}-r");
    let index =
        |job: &str| -> Option<usize> { job.strip_prefix(&prefix)?.split('-').next()?.parse().ok() };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut email, mut call) = (HashMap::new(), HashMap::new());
    // Only what is new since the last look: the sinks share this process's
    // CPU with the load, so polling must stay cheap.
    let (mut mails_seen, mut calls_seen) = (0, 0);
    loop {
        for m in smtp.mails_after(mails_seen) {
            mails_seen += 1;
            let job = m
                .header("Message-ID")
                .unwrap_or_default()
                .trim_matches(['<', '>'])
                .trim_end_matches("@herald")
                .to_string();
            if let Some(i) = index(&job) {
                email.entry(i).or_insert(m.at - t0);
            }
        }
        {
            let all = calls.0.lock().unwrap();
            for (job, at) in &all[calls_seen..] {
                if let Some(i) = index(job) {
                    call.entry(i).or_insert(*at - t0);
                }
            }
            calls_seen = all.len();
        }
        if email.len() >= recipients && call.len() >= recipients {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "broadcast {id}: only {} emails and {} calls of {recipients} within 120 s",
                email.len(),
                call.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut both: Vec<Duration> = (0..recipients).map(|i| email[&i].max(call[&i])).collect();
    let mut email: Vec<Duration> = email.into_values().collect();
    let mut call: Vec<Duration> = call.into_values().collect();
    both.sort();
    email.sort();
    call.sort();
    Ok(Timing {
        both,
        email,
        call,
        accepted_after,
    })
}

/// Ordinary notifications waiting: accepted and not yet routed, plus
/// routed and not yet sent.
async fn backlog(js: &async_nats::jetstream::Context) -> u64 {
    let mut n = 0;
    for s in [subjects::STREAM_NOTIFY, subjects::STREAM_DELIVERY] {
        if let Ok(mut stream) = js.get_stream(s).await
            && let Ok(info) = stream.info().await
        {
            n += info.state.messages;
        }
    }
    n
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    herald_runtime::install_crypto();
    let work = tempfile::tempdir()?;
    // With HERALD_BENCH_LOG set, the services' logs are kept for reading.
    let work_path = if std::env::var_os("HERALD_BENCH_LOG").is_some() {
        let kept = work.path().to_path_buf();
        std::mem::forget(work);
        println!("service logs kept in {}", kept.display());
        kept
    } else {
        work.path().to_path_buf()
    };
    let work = Work(work_path);
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    println!(
        "herald-bench-emergency: nats-server :{}, redis-server :{}; {} recipients, backlog {}; {} SMTP connections, {} voice requests in flight",
        nats.port, redis.port, a.recipients, a.backlog, a.email_connections, a.call_connections
    );
    let templates = herald_testkit::benchkit::templates(work.path())?;

    // Providers: SMS (the flood) and calls on one HTTP sink, email on an
    // SMTP server.
    let start = Instant::now();
    let warm_first = a.backlog;
    let arrivals = Arc::new(Arrivals::new(start, a.backlog + 10_000));
    let calls = Arc::new(Calls::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr: SocketAddr = listener.local_addr()?;
    let app = Router::new()
        .route("/sms", post(sink).with_state(arrivals.clone()))
        .route("/voice", post(voice).with_state(calls.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let smtp = SmtpSink::start().await;

    let free = || herald_testkit::servers::free_port();
    let mut cfg = Config::default();
    cfg.nats.url = nats.url();
    cfg.nats.credentials_dir = Some(nats.credentials_dir());
    cfg.nats.tls_ca_file = Some(nats.tls_ca());
    cfg.redis.url = redis.url().into();
    cfg.content.templates_dir = templates;
    cfg.intake.grpc_addr = format!("127.0.0.1:{}", free());
    cfg.intake.http_addr = format!("127.0.0.1:{}", free());
    cfg.router.http_addr = format!("127.0.0.1:{}", free());
    cfg.delivery.http_addr = format!("127.0.0.1:{}", free());
    cfg.broadcast.http_addr = format!("127.0.0.1:{}", free());
    cfg.broadcast.public_url = format!("http://{}", cfg.broadcast.http_addr);
    cfg.broadcast.link_secret = Some("bench-link-secret-0123456789".into());
    cfg.broadcast.coordinators = vec![Coordinator {
        id: "bench".into(),
        token_sha256: herald_directory::coordinators::token_sha256(TOKEN),
    }];
    cfg.delivery.sms_url = Some(format!("http://{sink_addr}/sms"));
    cfg.delivery.voice_url = Some(format!("http://{sink_addr}/voice"));
    cfg.delivery.smtp_url = Some(smtp.url().into());
    cfg.delivery.outbox_dir = work.path().join("outbox");
    // The flood sends a hundred SMS to each of a thousand people: no
    // per-person window, so the normal lane runs flat out.
    cfg.delivery.contact_max_sms = 0;
    cfg.delivery.contact_max_voice = 0;
    // The sinks take any number of connections; the provider limits are
    // the shipped ones unless the command line says otherwise.
    cfg.delivery.smtp_pool_size = a.email_connections as u32;
    cfg.delivery.voice_connections = a.call_connections;
    cfg.telemetry.log_level = "warn".into();
    let config_file = work.path().join("herald.toml");
    std::fs::write(&config_file, toml::to_string(&cfg)?)?;
    nats.provision(&cfg.nats).await;

    let redis_conn = herald_runtime::store::connect(&cfg.redis, &Default::default()).await?;
    let directory = Directory::new(redis_conn.clone(), &cfg.redis.prefix);
    directory.put_all(&sms_contacts()).await?;
    let people: Vec<Contact> = (0..a.recipients.max(20))
        .map(|i| {
            let mut c = contact(
                &format!("e{i:05}"),
                Some(&format!("e{i}@example.org")),
                Some(&format!("+4477008{i:05}")),
                "email",
            );
            c.organisation = Some("site-x".into());
            c
        })
        .collect();
    directory.put_all(&people).await?;
    let groups = Groups::new(redis_conn, &cfg.redis.prefix);
    for n in [20, a.recipients] {
        groups
            .put(&Group {
                id: format!("everyone-{n}"),
                name: format!("First {n}"),
                description: String::new(),
                members: people.iter().take(n).map(|c| c.id.clone()).collect(),
            })
            .await?;
    }

    let logs = work.path();
    let intake = spawn("intake", &config_file, logs, &redis);
    let broadcast_svc = spawn("broadcast", &config_file, logs, &redis);
    let mut router = spawn("router", &config_file, logs, &redis);
    let mut delivery = spawn("delivery", &config_file, logs, &redis);
    for addr in [
        &cfg.intake.http_addr,
        &cfg.router.http_addr,
        &cfg.delivery.http_addr,
        &cfg.broadcast.http_addr,
    ] {
        wait_ready(addr).await;
    }
    // The kit plays both the systems sending and the coordinator.
    let client = nats
        .options_for(herald_testkit::servers::KIT_ADMIN)
        .client_capacity(65_536)
        .connect(nats.url())
        .await?;
    let js = async_nats::jetstream::new(client.clone());

    // Warm-up: ordinary traffic and a small broadcast.
    warm_up(&client, &arrivals, warm_first, 2000).await;
    run_broadcast(&client, &smtp, &calls, "warm", 20).await?;

    let pids = |services: &[&Service]| -> Vec<(String, u32)> {
        let mut p: Vec<(String, u32)> = services
            .iter()
            .map(|s| (s.name.to_string(), s.child.id()))
            .collect();
        p.push(("nats-server".into(), nats.pid().unwrap_or(0)));
        p.push(("redis-server".into(), redis.pid().unwrap_or(0)));
        p.push(("bench (sinks)".into(), std::process::id()));
        p
    };

    // 1. Idle.
    let procs = pids(&[&intake, &broadcast_svc, &router, &delivery]);
    let cpu = CpuWatch::start(&procs);
    let idle = run_broadcast(&client, &smtp, &calls, "idle", a.recipients).await?;
    println!("{}", idle.row("idle"));
    println!("  CPU during it: {}", cpu.report());

    // 2. Flood: a backlog accepted while router and delivery are down.
    router.terminate();
    delivery.terminate();
    let t = Instant::now();
    let refused = submit_all(
        &client,
        (0..a.backlog).map(|s| request("flood", s)),
        a.in_flight,
    )
    .await;
    println!(
        "backlog: {} ordinary notifications accepted in {:.1}s ({refused} refused)",
        a.backlog - refused,
        t.elapsed().as_secs_f64()
    );
    router = spawn("router", &config_file, logs, &redis);
    delivery = spawn("delivery", &config_file, logs, &redis);
    wait_ready(&cfg.router.http_addr).await;
    wait_ready(&cfg.delivery.http_addr).await;
    // Until ordinary SMS flow at full speed.
    let flowing = Instant::now();
    while arrivals.arrived_in(0..a.backlog) < 3000 && flowing.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = arrivals.arrived_in(0..a.backlog);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rate = arrivals.arrived_in(0..a.backlog) - before;
    let waiting = backlog(&js).await;
    println!(
        "normal lane before the broadcast: {rate} SMS/s reaching the sink; {waiting} ordinary notifications waiting"
    );
    let sent_before = arrivals.arrived_in(0..a.backlog);
    let procs = pids(&[&intake, &broadcast_svc, &router, &delivery]);
    let cpu = CpuWatch::start(&procs);
    let flood = run_broadcast(&client, &smtp, &calls, "flood", a.recipients).await?;
    let sent_during = arrivals.arrived_in(0..a.backlog) - sent_before;
    println!("{}", flood.row("flood"));
    println!("  CPU during it: {}", cpu.report());
    println!(
        "normal lane during the broadcast ({:.2}s): {sent_during} SMS",
        flood.last().as_secs_f64()
    );

    // 3. The backlog drains, none lost or doubled.
    let drain = Instant::now();
    while arrivals.arrived_in(0..a.backlog) < a.backlog - refused
        && drain.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let arrived = arrivals.arrived_in(0..a.backlog);
    let duplicates = arrivals.duplicates.load(Ordering::Relaxed);
    println!(
        "backlog drained in {:.1}s after the broadcast: {arrived} of {} arrived, {duplicates} duplicates",
        drain.elapsed().as_secs_f64(),
        a.backlog - refused
    );

    let ratio = flood.p99().as_secs_f64() / idle.p99().as_secs_f64().max(1e-9);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("| figure | idle | under the flood | target | met |");
    println!("|---|---|---|---|---|");
    println!(
        "| p50 intake → email and call out, per recipient | {:.1} ms | {:.1} ms | | |",
        ms(percentile(&idle.both, 0.5)),
        ms(percentile(&flood.both, 0.5))
    );
    println!(
        "| p99 intake → email and call out, per recipient | {:.1} ms | {:.1} ms | flood ≤ 2 × idle | {} |",
        ms(idle.p99()),
        ms(flood.p99()),
        yes(ratio <= 2.0)
    );
    // 2 s for a thousand people, 5 s for ten thousand: the targets the
    // emergency lane is held to.
    let bound = if a.recipients > 1000 {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(2)
    };
    println!(
        "| last of the {} recipients | {:.1} ms | {:.1} ms | ≤ {} ms | {} |",
        a.recipients,
        ms(idle.last()),
        ms(flood.last()),
        bound.as_millis(),
        yes(flood.last() <= bound)
    );
    println!(
        "| p99 ratio flood / idle | | {ratio:.2} | ≤ 2.00 | {} |",
        yes(ratio <= 2.0)
    );
    println!(
        "| ordinary notifications waiting at the start | | {waiting} | ≥ 100,000 | {} |",
        yes(waiting >= 100_000)
    );
    println!(
        "| ordinary SMS lost / doubled after draining | | {} / {duplicates} | 0 / 0 | {} |",
        a.backlog - refused - arrived,
        yes(arrived == a.backlog - refused && duplicates == 0)
    );
    drop((intake, broadcast_svc, router, delivery));
    Ok(())
}

/// Where the run keeps its files.
struct Work(std::path::PathBuf);

impl Work {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

/// CPU seconds each process spends over a stretch of the run.
struct CpuWatch {
    procs: Vec<(String, u32, f64)>,
    at: Instant,
}

impl CpuWatch {
    fn start(procs: &[(String, u32)]) -> CpuWatch {
        CpuWatch {
            procs: procs
                .iter()
                .map(|(n, p)| (n.clone(), *p, cpu_seconds(*p)))
                .collect(),
            at: Instant::now(),
        }
    }

    fn report(&self) -> String {
        let parts: Vec<String> = self
            .procs
            .iter()
            .map(|(n, p, before)| format!("{n} {:.2}s", cpu_seconds(*p) - before))
            .collect();
        format!(
            "{} (over {:.2}s)",
            parts.join(", "),
            self.at.elapsed().as_secs_f64()
        )
    }
}
