//! What the benchmarks share: release binaries run as separate processes
//! (with their peak memory and CPU time), an HTTP provider sink that times
//! each numbered notification's arrival, patient submission to intake, and
//! percentiles.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State};
use herald_directory::contacts::Contact;
use herald_proto::{
    Message, subjects,
    v1::{CommunicationType, Confidentiality, IntakeReply, NotificationRequest, intake_reply},
};
use tokio::sync::Semaphore;

use crate::fixtures::{contact, to_contact};

/// Arrival times at the sink, indexed by the notification's sequence
/// number (nanoseconds since the bench started; 0 = not yet).
pub struct Arrivals {
    pub start: Instant,
    pub at: Vec<AtomicU64>,
    pub count: AtomicUsize,
    pub duplicates: AtomicUsize,
}

impl Arrivals {
    pub fn new(start: Instant, n: usize) -> Arrivals {
        Arrivals {
            start,
            at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
        }
    }

    /// How many of `range` have arrived.
    pub fn arrived_in(&self, range: std::ops::Range<usize>) -> usize {
        range
            .filter(|s| self.at[*s].load(Ordering::Relaxed) != 0)
            .count()
    }
}

/// The SMS provider's side: the body is the sequence number.
pub async fn sink(State(arrivals): State<Arc<Arrivals>>, body: Bytes) -> &'static str {
    let now = arrivals.start.elapsed().as_nanos() as u64;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let seq = form
        .iter()
        .find(|(k, _)| k == "Body")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    if let Some(slot) = seq.and_then(|s| arrivals.at.get(s)) {
        if slot.swap(now.max(1), Ordering::Relaxed) == 0 {
            arrivals.count.fetch_add(1, Ordering::Relaxed);
        } else {
            arrivals.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    "{\"sid\":\"SMbench\"}"
}

/// A release binary built beside this one.
pub fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.parent().expect("bin dir").join(name);
    assert!(
        p.is_file(),
        "{} missing: build with `cargo build --release --workspace --bins` (make bench does)",
        p.display()
    );
    p
}

/// A service process; dropping it kills it.
pub struct Service {
    pub name: &'static str,
    pub child: Child,
}

impl Service {
    pub fn peak_rss_kb(&self) -> u64 {
        status_kb(self.child.id(), "VmHWM:")
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used so far.
/// Resident set of a process now (VmRSS), in kB; 0 if it cannot be read.
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// A kB figure of `/proc/<pid>/status` (`field` with its colon); 0 if it
/// cannot be read.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// Starts `herald-<name>` with the configuration file and its own Redis
/// user, logging to `logs`.
pub fn spawn(
    name: &'static str,
    config: &Path,
    logs: &Path,
    redis: &crate::servers::RedisServer,
) -> Service {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))
        .expect("log");
    // Logs go to stdout; both streams land in the log file.
    let stdout = log.try_clone().expect("log file handle");
    let child = Command::new(release_binary(&format!("herald-{name}")))
        .env("HERALD_CONFIG", config)
        .env("HERALD_REDIS_URL", redis.url_for(name))
        // HERALD_BENCH_LOG=info shows each service's own account.
        .env(
            "RUST_LOG",
            std::env::var("HERALD_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .expect("service starts");
    Service { name, child }
}

/// Waits until `http://addr/readyz` answers 200.
pub async fn wait_ready(addr: &str) {
    let url = format!("http://{addr}/readyz");
    for _ in 0..300 {
        if let Ok(true) = http_ok(&url).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

/// A tiny HTTP GET over a TCP socket (the bench needs nothing more).
async fn http_ok(url: &str) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"))
}

/// An ordinary notification to a contact who prefers SMS, whose text is
/// its sequence number.
pub fn request(phase: &str, seq: usize) -> NotificationRequest {
    request_among(phase, seq, 1000)
}

/// The same, to one of `contacts` contacts (see [`sms_contacts_n`]).
pub fn request_among(phase: &str, seq: usize, contacts: usize) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: format!("bench-{phase}-{seq}"),
        communication_type: CommunicationType::ServiceUpdate as i32,
        // Standard, so the content goes to the bench's plain HTTP sink
        // (confidential content would need HTTPS), as in earlier runs.
        confidentiality: Confidentiality::Standard as i32,
        recipients: vec![to_contact(&format!("c{}", seq % contacts.max(1)))],
        template_id: "bench".into(),
        params: [("seq".to_string(), seq.to_string())].into(),
        requester: "bench".into(),
        ..Default::default()
    }
}

/// The 1000 contacts `request` sends to.
pub fn sms_contacts() -> Vec<Contact> {
    sms_contacts_n(1000)
}

/// `n` contacts who prefer SMS (at most 100,000: the numbers have five
/// digits to spare).
pub fn sms_contacts_n(n: usize) -> Vec<Contact> {
    (0..n.min(100_000))
        .map(|i| {
            let mut c = contact(
                &format!("c{i}"),
                Some(&format!("c{i}@example.org")),
                Some(&format!("+4477009{i:05}")),
                "sms",
            );
            c.name = format!("Contact {i}");
            c
        })
        .collect()
}

/// The shipped templates plus `bench`, whose text is the sequence number.
pub fn templates(work: &Path) -> std::io::Result<PathBuf> {
    let templates = work.join("templates");
    copy_dir(&crate::system::config_dir().join("templates"), &templates)?;
    std::fs::create_dir_all(templates.join("bench"))?;
    std::fs::write(
        templates.join("bench/v1.toml"),
        "description = \"benchmark probe\"\napproved = true\nparams = [\"seq\"]\n[lang.en]\nsms = \"{{ seq }}\"\nsubject = \"{{ seq }}\"\nemail = \"{{ seq }}\"\n",
    )?;
    Ok(templates)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Submits one request until intake accepts it (retrying while it says
/// "unavailable"); false if refused.
pub async fn submit(client: &async_nats::Client, payload: bytes::Bytes) -> bool {
    for _ in 0..20 {
        match client
            .request(
                subjects::from_caller(subjects::INTAKE_NOTIFY, crate::servers::PUBLISHER),
                payload.clone(),
            )
            .await
        {
            Ok(m) => match IntakeReply::decode(m.payload).map(|r| r.result) {
                Ok(Some(intake_reply::Result::Accepted(_))) => return true,
                Ok(Some(intake_reply::Result::Rejected(r))) => {
                    if r.code == herald_proto::v1::ErrorCode::Unavailable as i32 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    eprintln!("refused: {} {}", r.field, r.message);
                    return false;
                }
                _ => return false,
            },
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}

/// Submits `requests` with `in_flight` of them outstanding at a time;
/// returns how many were refused.
pub async fn submit_all(
    client: &async_nats::Client,
    requests: impl Iterator<Item = NotificationRequest>,
    in_flight: usize,
) -> usize {
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut tasks = Vec::new();
    for req in requests {
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        let client = client.clone();
        let payload = bytes::Bytes::from(req.encode_to_vec());
        tasks.push(tokio::spawn(async move {
            let ok = submit(&client, payload).await;
            drop(permit);
            ok
        }));
    }
    let mut refused = 0;
    for t in tasks {
        if !t.await.unwrap_or(false) {
            refused += 1;
        }
    }
    refused
}

/// Sends `n` notifications numbered from `first` and waits for them at the
/// sink: connections, pools and the page cache warm.
pub async fn warm_up(
    client: &async_nats::Client,
    arrivals: &Arc<Arrivals>,
    first: usize,
    n: usize,
) {
    let before = arrivals.count.load(Ordering::Relaxed);
    submit_all(client, (first..first + n).map(|s| request("warm", s)), 256).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.count.load(Ordering::Relaxed) < before + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Reads `--name N` pairs into the named numbers; prints `usage` and
/// exits with 2 on anything else.
pub fn numeric_args(numbers: &mut [(&str, &mut usize)], usage: &str) {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().and_then(|v| v.parse::<usize>().ok());
        match (numbers.iter_mut().find(|(n, _)| *n == k.as_str()), v) {
            (Some((_, slot)), Some(v)) => **slot = v,
            _ => {
                eprintln!("usage: {usage}");
                std::process::exit(2);
            }
        }
    }
}

pub fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
