//! `make bench-sla`: how late breaches fire with a million clocks pending,
//! and what the million cost in Redis.
//!
//! Everything runs on this machine: redis-server and nats-server from the
//! test kit, and the sla service as its own release process.
//!
//! 1. memory: Redis `used_memory` empty, then after loading N pending
//!    clocks (default 1,000,000) through the sla storage layer (pipelined
//!    `ClockStore::put_many`: one state string per case and one timer per
//!    clock, exactly what the service writes); the difference per clock.
//!    Of the N, `--burst` (default 10,000) are due within the same second a
//!    little after the load; the rest in the next 30 days.
//! 2. lateness: the sla service starts, and the burst fires. Each breach is
//!    timed where a consumer sees it (a NATS subscriber to the case
//!    subjects): receive time − deadline, p50/p99/max; and fired_at −
//!    deadline as the service stamps it. Every burst clock must breach
//!    once.
//! 3. baseline: the same 10,000 deadlines (same spread within a second)
//!    fired by plain tokio timers in this process, in the same run, and the
//!    ratio of the two p99s.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use herald_config::Config;
use herald_proto::{
    Message,
    v1::{CaseChannel, ClockKind, ClockState, Priority, SlaEvent, SlaEventKind},
};
use herald_runtime::clock::millis;
use herald_sla::{
    clock::{CaseClocks, Clock},
    store::ClockStore,
};
use herald_testkit::servers::{NatsServer, RedisServer, free_port};
use tokio_util::sync::CancellationToken;

struct Args {
    clocks: usize,
    burst: usize,
}

fn args() -> Args {
    let mut a = Args {
        clocks: 1_000_000,
        burst: 10_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().and_then(|v| v.parse::<usize>().ok());
        match (k.as_str(), v) {
            ("--clocks", Some(v)) => a.clocks = v,
            ("--burst", Some(v)) => a.burst = v,
            _ => {
                eprintln!("usage: herald-bench-sla [--clocks N] [--burst N]");
                std::process::exit(2);
            }
        }
    }
    assert!(a.burst <= a.clocks, "--burst cannot exceed --clocks");
    a
}

/// A case's state as the sla service keeps it: one running email response
/// clock (24 business hours, policy "email", team "support").
fn case_state(deadline_ms: i64, burst: bool) -> CaseClocks {
    let started = deadline_ms - 3 * 24 * 3600 * 1000;
    CaseClocks {
        team: "support".into(),
        channel: CaseChannel::Email as i32,
        priority: Priority::Normal as i32,
        last_seq: 1,
        clocks: vec![Clock {
            kind: ClockKind::Response as i32,
            policy: "email".into(),
            target_s: 24 * 3600,
            business: true,
            state: ClockState::Running as i32,
            spent_s: 0,
            run_from_ms: started,
            deadline_ms,
            warn_ms: deadline_ms - 6 * 3600 * 1000,
            // The burst's warnings are behind them: only breaches fire.
            warned: burst,
            breached: false,
            generation: 1,
            started_s: started / 1000,
            stopped_s: 0,
            warn_permille: 750,
        }],
    }
}

fn case_id(i: usize) -> String {
    format!("CASE-{i:07}")
}

fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.parent().expect("bin dir").join(name);
    assert!(
        p.is_file(),
        "{} missing: build with `cargo build --release --workspace --bins` (make bench-sla does)",
        p.display()
    );
    p
}

/// The sla service as a release process; killed when dropped.
struct SlaProcess(Child);

impl SlaProcess {
    fn peak_rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1024.0
    }
}

impl Drop for SlaProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms_since(deadline_ms: i64, at: SystemTime) -> f64 {
    let at_ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as f64
        / 1000.0;
    at_ms - deadline_ms as f64
}

async fn wait_ready(port: u16) {
    for _ in 0..300 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s
                .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sla service never became ready");
}

fn write_config(path: &Path, nats: &NatsServer, redis: &RedisServer, http_port: u16) {
    let mut cfg = Config::default();
    cfg.nats.url = nats.url();
    cfg.nats.credentials_dir = Some(nats.credentials_dir());
    cfg.nats.tls_ca_file = Some(nats.tls_ca());
    cfg.redis.url = redis.url_for("sla").into();
    cfg.sla.http_addr = format!("127.0.0.1:{http_port}");
    std::fs::write(path, toml::to_string(&cfg).expect("config")).expect("config written");
}

/// `MEMORY USAGE` of one case's state and of the whole timer queue.
fn memory_parts(redis: &RedisServer, case: &str) -> anyhow::Result<(u64, u64)> {
    let client = redis::Client::open(redis.url())?;
    let mut c = client.get_connection()?;
    let state: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!(
            "{}case:{case}",
            herald_proto::keyspace::SLA.prefix("herald:")
        ))
        .query(&mut c)?;
    let timers: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!(
            "{}timer:clocks:due",
            herald_proto::keyspace::SLA.prefix("herald:")
        ))
        .arg("SAMPLES")
        .arg(0)
        .query(&mut c)?;
    Ok((state, timers))
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let work = tempfile::tempdir()?;
    let nats = NatsServer::start();
    nats.provision(&Config::default().nats).await;
    let redis = RedisServer::start();
    let empty = redis.used_memory();

    // 1. Load.
    let store = ClockStore::new(
        herald_runtime::store::connect(
            &herald_config::RedisConfig {
                url: redis.url().into(),
                prefix: "herald:".into(),
                ..Default::default()
            },
            &CancellationToken::new(),
        )
        .await?,
        "herald:",
    );
    let future = a.clocks - a.burst;
    println!(
        "sla bench: {} pending clocks (case ids like {}), {} of them due within one second",
        a.clocks,
        case_id(0),
        a.burst
    );
    let loading = Instant::now();
    let now_ms = millis(Utc::now());
    const CHUNK: usize = 10_000;
    let chunks: Vec<(usize, usize)> = (0..future)
        .step_by(CHUNK)
        .map(|s| (s, (s + CHUNK).min(future)))
        .collect();
    futures::stream::iter(chunks)
        .map(|(from, to)| {
            let store = store.clone();
            async move {
                let items: Vec<(String, CaseClocks)> = (from..to)
                    .map(|i| {
                        // Spread over the next 30 days.
                        let due = now_ms + 86_400_000 + (i as i64 * 2_591) % (29 * 86_400_000);
                        (case_id(i), case_state(due, false))
                    })
                    .collect();
                store.put_many(&items).await
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    // The burst: due a few seconds after the load, in one second.
    let burst_second = millis(Utc::now() + TimeDelta::seconds(8));
    let burst: Vec<(String, CaseClocks)> = (future..a.clocks)
        .map(|i| {
            let due = burst_second + ((i - future) as i64 * 1000 / a.burst.max(1) as i64);
            (case_id(i), case_state(due, true))
        })
        .collect();
    for part in burst.chunks(CHUNK) {
        store.put_many(part).await?;
    }
    let load_secs = loading.elapsed().as_secs_f64();
    let pending = store.timers().pending().await?;
    let loaded = redis.used_memory();
    let used = loaded.saturating_sub(empty);
    println!(
        "load: {} clocks in {load_secs:.1} s ({:.0}/s) through ClockStore::put_many; {pending} timers pending",
        a.clocks,
        a.clocks as f64 / load_secs
    );
    println!(
        "Redis used_memory: empty {:.1} MB, loaded {:.1} MB: {:.1} MB for the clocks, {:.0} bytes per clock",
        empty as f64 / 1e6,
        loaded as f64 / 1e6,
        used as f64 / 1e6,
        used as f64 / a.clocks as f64
    );
    let (state_bytes, timers_bytes) = memory_parts(&redis, &case_id(0))?;
    println!(
        "  of which (MEMORY USAGE): one case's state string {state_bytes} B; the timer queue {:.1} MB ({:.0} B per timer)",
        timers_bytes as f64 / 1e6,
        timers_bytes as f64 / pending.max(1) as f64
    );

    // 2. The sla service fires the burst.
    // The bench watches the clock events as only the kit may.
    let client = nats.admin().await;
    let mut sub = client.subscribe("herald.v1.case.*.*.sla").await?;
    client.flush().await?;
    let seen: Arc<Mutex<Vec<(String, f64, f64)>>> = Arc::default();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let received = SystemTime::now();
                let Ok(ev) = SlaEvent::decode(m.payload) else {
                    continue;
                };
                if ev.kind() != SlaEventKind::Breach {
                    continue;
                }
                let deadline = millis(herald_proto::system_time(ev.deadline.as_ref()).into());
                let fired = ms_since(deadline, herald_proto::system_time(ev.fired_at.as_ref()));
                seen.lock()
                    .unwrap()
                    .push((ev.case_id, ms_since(deadline, received), fired));
            }
        })
    };
    let config = work.path().join("herald.toml");
    let port = free_port();
    write_config(&config, &nats, &redis, port);
    let log = std::fs::File::create(work.path().join("sla.log"))?;
    let sla = SlaProcess(
        Command::new(release_binary("herald-sla"))
            .env("HERALD_CONFIG", &config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    wait_ready(port).await;
    let to_burst = burst_second - millis(Utc::now());
    assert!(
        to_burst > 0,
        "the load took too long: the burst was due before the service was up"
    );
    println!(
        "sla service up (release build, separate process); the burst is due in {:.1} s",
        to_burst as f64 / 1000.0
    );
    let give_up = Instant::now() + Duration::from_millis(to_burst as u64) + Duration::from_secs(60);
    while seen.lock().unwrap().len() < a.burst && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = sla.peak_rss_mb();
    drop(sla);
    collector.abort();
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    let mut at_sub: Vec<f64> = seen.iter().map(|s| s.1).collect();
    let mut at_sla: Vec<f64> = seen.iter().map(|s| s.2).collect();
    at_sub.sort_by(f64::total_cmp);
    at_sla.sort_by(f64::total_cmp);
    println!(
        "breaches: {} of {} burst clocks fired, {} duplicates; sla peak RSS {rss:.0} MB",
        unique.len(),
        a.burst,
        seen.len() - unique.len()
    );
    println!(
        "lateness seen by a subscriber (received - deadline): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&at_sub, 0.5),
        percentile(&at_sub, 0.99),
        at_sub.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "lateness stamped by the sla service (fired_at - deadline): p50 {:.0} ms, p99 {:.0} ms",
        percentile(&at_sla, 0.5),
        percentile(&at_sla, 0.99)
    );

    // 3. Baseline: plain tokio timers for the same deadlines.
    let base_second = millis(Utc::now() + TimeDelta::seconds(2));
    let start = Instant::now();
    let start_ms = millis(Utc::now());
    let timers = (0..a.burst).map(|i| {
        let due = base_second + (i as i64 * 1000 / a.burst.max(1) as i64);
        tokio::spawn(async move {
            tokio::time::sleep_until(
                (start + Duration::from_millis((due - start_ms) as u64)).into(),
            )
            .await;
            ms_since(due, SystemTime::now())
        })
    });
    let mut base: Vec<f64> = futures::future::join_all(timers)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(f64::NAN))
        .collect();
    base.sort_by(f64::total_cmp);
    let (b50, b99) = (percentile(&base, 0.5), percentile(&base, 0.99));
    println!(
        "baseline (plain tokio timers in this process, same {} deadlines): p50 {b50:.1} ms, p99 {b99:.1} ms",
        a.burst
    );
    let p99 = percentile(&at_sub, 0.99);
    let mb = used as f64 / 1e6;
    println!();
    println!("| figure | value | target | met |");
    println!("|---|---|---|---|");
    println!(
        "| breach lateness p50 / p99 ({} due in one second, {} pending) | {:.0} ms / {p99:.0} ms | p99 < 1000 ms | {} |",
        a.burst,
        a.clocks,
        percentile(&at_sub, 0.5),
        if p99 < 1000.0 && unique.len() == a.burst {
            "yes"
        } else {
            "no"
        }
    );
    println!(
        "| Redis used_memory for {} clocks | {mb:.0} MB ({:.0} B/clock) | < 300 MB | {} |",
        a.clocks,
        used as f64 / a.clocks as f64,
        if mb < 300.0 { "yes" } else { "no" }
    );
    println!("| baseline p50 / p99 (tokio timers, same run) | {b50:.1} ms / {b99:.1} ms | | |");
    println!(
        "| p99 ratio sla / baseline | {:.0}x | | |",
        p99 / b99.max(0.001)
    );
    println!(
        "| breaches fired / duplicated | {} / {} | {} / 0 | {} |",
        unique.len(),
        seen.len() - unique.len(),
        a.burst,
        if unique.len() == a.burst && seen.len() == a.burst {
            "yes"
        } else {
            "no"
        }
    );
    Ok(())
}
