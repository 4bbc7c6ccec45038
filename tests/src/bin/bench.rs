//! `make bench`: end-to-end throughput and latency of the notification
//! pipeline, against a raw JetStream baseline measured in the same run.
//!
//! Everything runs on this machine: nats-server (file storage) and
//! redis-server from the test kit, an HTTP provider sink in this process,
//! and intake, router and delivery as separate release processes. Each
//! notification goes to a directory contact who prefers SMS, so it crosses
//! every service and ends as a form POST at the sink.
//!
//! Phases:
//! 1. baseline: raw JetStream publish (pipelined) + pull consume with ack of
//!    the same payload size, publisher and consumer running together;
//! 2. peak: as many notifications as intake takes with a fixed number of
//!    requests in flight, timed from the first request to the last arrival;
//! 3. latency: an open-loop stream at half the peak rate, each notification
//!    timed from its request to its arrival at the sink (p50/p99);
//! 4. memory: each service's peak resident set (VmHWM).

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::pull, stream};
use axum::{Router, routing::post};
use futures::StreamExt;
use herald_config::Config;
use herald_proto::Message;
use herald_testkit::{
    benchkit::{
        Arrivals, cpu_seconds, percentile, request_among, rss_kb, sink, sms_contacts_n, spawn,
        submit, wait_ready, warm_up, yes,
    },
    servers::{NatsServer, RedisServer},
};
use tokio::sync::Semaphore;

struct Args {
    /// Run as users do: the per-person window and status callbacks on,
    /// and so a contact per notification (the window allows a person 5
    /// SMS per 15 minutes).
    shipped: bool,
    peak_count: usize,
    latency_secs: u64,
    in_flight: usize,
    baseline_count: usize,
}

fn args() -> Args {
    let mut a = Args {
        shipped: false,
        peak_count: 60_000,
        latency_secs: 10,
        in_flight: 1024,
        baseline_count: 200_000,
    };
    let mut latency_secs = a.latency_secs as usize;
    let mut shipped = 0usize;
    herald_testkit::benchkit::numeric_args(
        &mut [
            ("--count", &mut a.peak_count),
            ("--latency-secs", &mut latency_secs),
            ("--in-flight", &mut a.in_flight),
            ("--baseline-count", &mut a.baseline_count),
            ("--shipped-defaults", &mut shipped),
        ],
        "herald-bench [--count N] [--latency-secs S] [--in-flight K] [--baseline-count N] [--shipped-defaults 0|1]",
    );
    a.latency_secs = latency_secs as u64;
    a.shipped = shipped != 0;
    a
}

/// Raw JetStream: pipelined publishes of `size`-byte messages into a file
/// stream while a pull consumer reads and acks them. Messages per second.
async fn baseline(nats: &NatsServer, size: usize, n: usize) -> f64 {
    let client = nats.admin().await;
    let js = jetstream::new(client.clone());
    let s = js
        .create_stream(stream::Config {
            name: "BENCH_BASELINE".into(),
            subjects: vec!["bench.baseline".into()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("baseline stream");
    let consumer = s
        .create_consumer(pull::Config {
            durable_name: Some("baseline".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .expect("baseline consumer");
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let consume = tokio::spawn(async move {
        let mut msgs = consumer
            .stream()
            .max_messages_per_batch(512)
            .messages()
            .await
            .expect("pull");
        let mut got = 0;
        while got < n {
            match msgs.next().await {
                Some(Ok(m)) => {
                    let _ = m.ack().await;
                    got += 1;
                }
                Some(Err(_)) => continue,
                None => break,
            }
        }
    });
    let mut window = std::collections::VecDeque::new();
    for _ in 0..n {
        window.push_back(
            js.publish("bench.baseline", payload.clone())
                .await
                .expect("publish"),
        );
        if window.len() >= 4096 {
            window.pop_front().unwrap().await.expect("ack");
        }
    }
    for a in window {
        a.await.expect("ack");
    }
    consume.await.expect("consumer");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = js.delete_stream("BENCH_BASELINE").await;
    rate
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What each counter gained between two readings (a counter missing
/// before started at zero).
fn deltas(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    out.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    out
}

fn print_per(what: &str, counts: &[(String, u64)], n: usize) {
    let total: u64 = counts.iter().map(|(_, c)| c).sum();
    let per = |c: u64| c as f64 / n.max(1) as f64;
    println!("  {what:<26} {:>6.2}", per(total));
    for (name, c) in counts {
        println!("    {name:<24} {:>6.2}", per(*c));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    herald_runtime::install_crypto();
    let work = tempfile::tempdir()?;
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    println!(
        "herald-bench: nats-server :{}, redis-server :{}",
        nats.port, redis.port
    );

    // Templates: the shipped ones plus a tiny one whose SMS text is the
    // sequence number, so the sink knows which notification arrived.
    let templates = herald_testkit::benchkit::templates(work.path())?;

    let total = a.peak_count + 200_000;
    let start = Instant::now();
    let arrivals = Arc::new(Arrivals::new(start, total));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr: SocketAddr = listener.local_addr()?;
    let app = Router::new()
        .route("/sms", post(sink))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let free = |_: ()| herald_testkit::servers::free_port();
    let mut cfg = Config::default();
    cfg.nats.url = nats.url();
    cfg.nats.credentials_dir = Some(nats.credentials_dir());
    cfg.nats.tls_ca_file = Some(nats.tls_ca());
    cfg.redis.url = redis.url().into();
    cfg.content.templates_dir = templates.clone();
    cfg.intake.grpc_addr = format!("127.0.0.1:{}", free(()));
    cfg.intake.http_addr = format!("127.0.0.1:{}", free(()));
    cfg.router.http_addr = format!("127.0.0.1:{}", free(()));
    cfg.delivery.http_addr = format!("127.0.0.1:{}", free(()));
    cfg.delivery.sms_url = Some(format!("http://{sink_addr}/sms"));
    cfg.delivery.outbox_dir = work.path().join("outbox");
    cfg.telemetry.log_level = "warn".into();
    let contacts = if a.shipped {
        // As shipped: the per-person window on, so a contact per
        // notification, and status callbacks on, so every SMS job is kept
        // for the provider's report (which this sink does not send).
        cfg.delivery.status_callback_base = Some(format!("http://{}", cfg.delivery.http_addr));
        cfg.delivery.provider_account = Some("AC-bench".into());
        cfg.delivery.provider_token = Some("bench-provider-token".into());
        100_000
    } else {
        // The pipeline alone, without the per-person windows: with them,
        // 1000 contacts could take only 5 SMS each per 15 minutes.
        cfg.delivery.contact_max_sms = 0;
        1000
    };
    println!(
        "row: {}",
        if a.shipped {
            "as shipped (per-person window and status callbacks on, 100,000 contacts)"
        } else {
            "pipeline only (per-person window off, no status callbacks, 1,000 contacts)"
        }
    );
    let config_file = work.path().join("herald.toml");
    std::fs::write(&config_file, toml::to_string(&cfg)?)?;
    nats.provision(&cfg.nats).await;

    // Directory contacts who prefer SMS.
    let directory = herald_directory::contacts::Directory::new(
        herald_runtime::store::connect(&cfg.redis, &Default::default()).await?,
        &cfg.redis.prefix,
    );
    directory.put_all(&sms_contacts_n(contacts)).await?;

    // 1. Baseline, before the services exist, on the same server.
    let size = request_among("peak", a.peak_count, contacts)
        .encode_to_vec()
        .len();
    let base = baseline(&nats, size, a.baseline_count).await;
    println!("baseline: raw JetStream publish+consume of {size}-byte messages: {base:.0} msg/s");

    let services = vec![
        spawn("intake", &config_file, work.path(), &redis),
        spawn("router", &config_file, work.path(), &redis),
        spawn("delivery", &config_file, work.path(), &redis),
    ];
    for addr in [
        &cfg.intake.http_addr,
        &cfg.router.http_addr,
        &cfg.delivery.http_addr,
    ] {
        wait_ready(addr).await;
    }
    // Requests go in as another system would send them.
    let client = nats
        .options_for(herald_testkit::servers::PUBLISHER)
        .client_capacity(65_536)
        .connect(nats.url())
        .await?;

    // Warm-up: connections, pools and the page cache.
    // Sequence numbers past the peak and latency ranges.
    warm_up(&client, &arrivals, a.peak_count + 190_000, 2000).await;

    // 2. Peak throughput with a fixed number of requests in flight.
    let mut pids: Vec<(&str, u32)> = services.iter().map(|s| (s.name, s.child.id())).collect();
    pids.push(("nats-server", nats.pid().unwrap_or(0)));
    pids.push(("redis-server", redis.pid().unwrap_or(0)));
    pids.push(("bench (load + sink)", std::process::id()));
    let cpu_before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let stored_before = nats.stored_messages().await;
    let commands_before = redis.command_counts();
    let nats_pid = nats.pid().unwrap_or(0);
    let memory_before = (rss_kb(nats_pid), redis.used_memory());
    let slots = Arc::new(Semaphore::new(a.in_flight));
    let before = arrivals.count.load(Ordering::Relaxed);
    let t0 = start.elapsed();
    let mut refused = 0usize;
    let mut tasks = Vec::with_capacity(a.peak_count);
    for seq in 0..a.peak_count {
        let permit = slots.clone().acquire_owned().await?;
        let client = client.clone();
        let payload = bytes::Bytes::from(request_among("peak", seq, contacts).encode_to_vec());
        tasks.push(tokio::spawn(async move {
            let ok = submit(&client, payload).await;
            drop(permit);
            ok
        }));
    }
    for t in tasks {
        if !t.await? {
            refused += 1;
        }
    }
    let accepted_by = start.elapsed() - t0;
    let want = before + a.peak_count - refused;
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.count.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = (0..a.peak_count)
        .map(|s| arrivals.at[s].load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let arrived = (0..a.peak_count)
        .filter(|s| arrivals.at[*s].load(Ordering::Relaxed) != 0)
        .count();
    let elapsed = Duration::from_nanos(last).saturating_sub(t0);
    let cpu: Vec<(&str, f64)> = pids
        .iter()
        .zip(&cpu_before)
        .map(|((name, pid), before)| (*name, cpu_seconds(*pid) - before))
        .collect();
    let stored = deltas(&stored_before, &nats.stored_messages().await);
    let commands = deltas(&commands_before, &redis.command_counts());
    let memory_after = (rss_kb(nats_pid), redis.used_memory());
    let subjects_after = nats.subject_counts().await;
    let peak = arrived as f64 / elapsed.as_secs_f64();
    println!(
        "peak: {arrived}/{} notifications intake→HTTP sink in {:.2}s = {peak:.0}/s (all accepted after {:.2}s; {refused} refused)",
        a.peak_count,
        elapsed.as_secs_f64(),
        accepted_by.as_secs_f64()
    );

    // 3. Latency at half the peak rate, open loop.
    let rate = (peak / 2.0).max(1.0);
    let n = ((rate * a.latency_secs as f64) as usize).min(200_000 - 1);
    let base_seq = a.peak_count;
    let mut sent_at = vec![0u64; n];
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t_start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for (i, slot) in sent_at.iter_mut().enumerate() {
        let due = t_start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        *slot = start.elapsed().as_nanos() as u64;
        let client = client.clone();
        let payload =
            bytes::Bytes::from(request_among("latency", base_seq + i, contacts).encode_to_vec());
        handles.push(tokio::spawn(async move { submit(&client, payload).await }));
    }
    for h in handles {
        let _ = h.await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = (0..n).all(|i| arrivals.at[base_seq + i].load(Ordering::Relaxed) != 0);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat: Vec<Duration> = (0..n)
        .filter_map(|i| {
            let at = arrivals.at[base_seq + i].load(Ordering::Relaxed);
            (at != 0).then(|| Duration::from_nanos(at.saturating_sub(sent_at[i])))
        })
        .collect();
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    println!(
        "latency at {rate:.0}/s for {}s: {} of {n} arrived; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        a.latency_secs,
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );

    // 4. Memory.
    let mut peak_rss = Vec::new();
    for s in &services {
        peak_rss.push((s.name, s.peak_rss_kb()));
    }
    let dups = arrivals.duplicates.load(Ordering::Relaxed);
    println!();
    println!("CPU per notification during the peak phase (µs; ×{arrived}):");
    let total_cpu: f64 = cpu.iter().map(|(_, c)| c).sum();
    for (name, c) in &cpu {
        println!(
            "  {name:<20} {:>7.1} µs  ({:.1} s)",
            c / arrived as f64 * 1e6,
            c
        );
    }
    println!(
        "  {:<20} {:>7.1} µs  → {:.0} notifications/s if two cores did nothing else",
        "all",
        total_cpu / arrived as f64 * 1e6,
        2.0 * arrived as f64 / total_cpu
    );

    println!();
    println!("Counted by the servers during the peak phase, per notification:");
    print_per("JetStream stored messages", &stored, arrived);
    print_per("Redis commands", &commands, arrived);
    println!();
    println!("Server memory across the peak phase (what the notifications left behind):");
    let per = |before: u64, after: u64| (after as f64 - before as f64) / arrived.max(1) as f64;
    println!(
        "  nats-server resident      {:.1} → {:.1} MB ({:+.0} B per notification)",
        memory_before.0 as f64 / 1024.0,
        memory_after.0 as f64 / 1024.0,
        per(memory_before.0 * 1024, memory_after.0 * 1024)
    );
    println!(
        "  redis-server used_memory  {:.1} → {:.1} MB ({:+.0} B per notification)",
        memory_before.1 as f64 / 1048576.0,
        memory_after.1 as f64 / 1048576.0,
        per(memory_before.1, memory_after.1)
    );
    let subjects: Vec<String> = subjects_after
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!("  subjects held, per stream  {}", subjects.join(", "));

    let ratio = peak / base;
    println!();
    println!("| figure | value | target | met |");
    println!("|---|---|---|---|");
    // A figure counts only if every notification it is about arrived.
    let all_peak = arrived + refused == a.peak_count;
    let all_latency = lat.len() == n;
    println!(
        "| end-to-end throughput to the HTTP sink | {peak:.0}/s{} | ≥ 9,000/s | {} |",
        if all_peak { "" } else { " (not all arrived)" },
        yes(all_peak && peak >= 9000.0)
    );
    println!("| raw JetStream baseline (same run, {size} B) | {base:.0}/s | | |");
    println!(
        "| ratio to baseline | {ratio:.3} | ≥ 0.15 (0.30 the horizon) | {} |",
        yes(all_peak && ratio >= 0.15)
    );
    let per_notification = total_cpu / arrived.max(1) as f64 * 1e6;
    println!(
        "| CPU per notification, every process | {per_notification:.0} µs | ≤ 220 µs | {} |",
        yes(all_peak && per_notification <= 220.0)
    );
    println!(
        "| p50 / p99 intake→sink at {rate:.0}/s | {:.1} / {:.1} ms{} | p50 < 10 ms, p99 < 50 ms | {} |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if all_latency {
            String::new()
        } else {
            format!(" ({} of {n} arrived)", lat.len())
        },
        yes(all_latency && p50 < Duration::from_millis(10) && p99 < Duration::from_millis(50))
    );
    for (name, kb) in &peak_rss {
        println!(
            "| {name} peak RSS | {:.1} MB | < 150 MB | {} |",
            *kb as f64 / 1024.0,
            yes(*kb < 150 * 1024)
        );
    }
    println!(
        "| duplicates at the sink | {dups} | 0 | {} |",
        yes(dups == 0)
    );
    drop(services);
    Ok(())
}
