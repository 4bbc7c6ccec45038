//! The real Prometheus (Debian's `prometheus`, which `make deps` installs)
//! scrapes the services' `/metrics` and loads the shipped alert rules: the
//! exposition parses, every target is up with no scrape error, a counter
//! moves when a notification goes through, and `promtool` finds the rules
//! file valid. Prometheus listens on a free loopback port.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use herald_proto::v1::AuditStep;
use herald_testkit::{
    TestSystem,
    fixtures::{contact, inquiry},
    servers::{find_binary, free_port},
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yaml")
}

struct Prometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes each `(service, host:port)` every second, with the shipped
    /// alert rules loaded.
    fn start(targets: &[(&str, String)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: herald\n    static_configs:\n",
            rules().display()
        );
        for (service, addr) in targets {
            config.push_str(&format!(
                "      - targets: [\"{addr}\"]\n        labels:\n          service: {service}\n"
            ));
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(find_binary("prometheus"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            port,
            child,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// The value of an instant query's single sample, if it has one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let q = herald_content::url::encode(promql);
        let v = self.get(&format!("/api/v1/query?query={q}")).await?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[test]
fn promtool_finds_the_shipped_alert_rules_valid() {
    let out = Command::new(find_binary("promtool"))
        .arg("check")
        .arg("rules")
        .arg(rules())
        .output()
        .expect("promtool runs (make deps installs prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_prometheus_scrapes_every_service_and_sees_a_notification_counted() {
    let sys = TestSystem::start().await;
    sys.add_contacts(&[contact("ivy", Some("ivy@example.org"), None, "email")])
        .await;
    let targets: Vec<(&str, String)> = ["intake", "router", "delivery"]
        .iter()
        .map(|s| (*s, sys.http_addr(s).to_string()))
        .collect();
    let prom = Prometheus::start(&targets);

    // Every target up, scraped without error.
    let deadline = Instant::now() + WAIT;
    loop {
        let healthy = match prom.get("/api/v1/targets").await {
            Some(v) => {
                let active = v["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                active.len() == targets.len()
                    && active
                        .iter()
                        .all(|t| t["health"] == "up" && t["lastError"] == "")
            }
            None => false,
        };
        if healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not all up: {:?}",
            prom.get("/api/v1/targets").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let id = sys.notify_ok(&inquiry("prom-1", "ivy", "INQ-PROM")).await;
    sys.wait_for_step(&id, AuditStep::Sent, WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        if prom
            .query("sum(herald_intake_accepted_total)")
            .await
            .unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the accepted notification"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The shipped rules are loaded and evaluate without error.
    let rules = prom.get("/api/v1/rules").await.expect("rules");
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!groups.is_empty(), "{rules}");
    for g in &groups {
        for r in g["rules"].as_array().unwrap() {
            assert_ne!(r["health"], "err", "{r}");
        }
    }
}
