//! A real Alertmanager (Debian's `prometheus-alertmanager`, which `make
//! test` installs) on a free loopback port, clustering off, with one
//! webhook receiver pointing at Herald. Alerts are posted to its API as
//! Prometheus would post them; what it sends Herald is its own doing.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::servers::{find_binary, free_port};

pub struct Alertmanager {
    pub port: u16,
    child: Child,
    _dir: TempDir,
    log: PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts one whose only route sends every group, at once and again a
    /// second after any change, to `webhook_url` with `key` as the bearer
    /// credential, resolutions included.
    pub async fn start(webhook_url: &str, key: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                r#"route:
  receiver: herald
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: herald
    webhook_configs:
      - url: "{webhook_url}"
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: "{key}"
"#
            ),
        )
        .expect("write alertmanager.yml");
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(find_binary("prometheus-alertmanager"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: it would listen on every interface.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start prometheus-alertmanager");
        let am = Alertmanager {
            port,
            child,
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(am.url("/-/ready")).send().await
                && r.status().is_success()
            {
                return am;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("alertmanager did not become ready:\n{}", am.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Posts one alert as Prometheus does; `resolved` sets its end to now,
    /// which Alertmanager then reports as resolved.
    pub async fn post(&self, labels: Value, annotations: Value, resolved: bool) {
        let now = chrono::Utc::now();
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        });
        if resolved {
            alert["endsAt"] = json!(now.to_rfc3339());
        }
        let r = reqwest::Client::new()
            .post(self.url("/api/v2/alerts"))
            .json(&json!([alert]))
            .send()
            .await
            .expect("alertmanager answers");
        assert!(
            r.status().is_success(),
            "alertmanager refused the alert: {}",
            r.text().await.unwrap_or_default()
        );
    }
}
