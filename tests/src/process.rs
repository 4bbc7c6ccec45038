//! Services as separate processes, for tests that kill them (SIGKILL) in
//! the middle of work and start them again.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use herald_config::Config;

/// The `herald-service` binary built beside the tests.
pub fn service_binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_herald-service") {
        return PathBuf::from(p);
    }
    // Library code compiled without the variable: look beside the test.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("herald-service")
}

/// One service process. Dropping it kills it.
pub struct ServiceProcess {
    name: String,
    config_file: PathBuf,
    log_file: PathBuf,
    /// Extra environment, after the defaults (so it can override them).
    env: Vec<(String, String)>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// Starts `name` (intake, router, delivery, ...) with `cfg`.
    pub fn spawn(name: &str, cfg: &Config) -> ServiceProcess {
        ServiceProcess::spawn_with_env(name, cfg, &[])
    }

    /// As [`ServiceProcess::spawn`], with extra environment variables
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `RUST_LOG`, ...).
    pub fn spawn_with_env(name: &str, cfg: &Config, env: &[(&str, &str)]) -> ServiceProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_file = dir.path().join("herald.toml");
        std::fs::write(&config_file, toml_of(cfg)).expect("config written");
        let mut p = ServiceProcess {
            name: name.to_string(),
            config_file,
            log_file: dir.path().join(format!("{name}.log")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            _dir: dir,
        };
        p.start();
        p
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .expect("log file");
        // Logs go to stdout; both streams land in the log file.
        let stdout = log.try_clone().expect("log file handle");
        let child = Command::new(service_binary())
            .arg(&self.name)
            .env("HERALD_CONFIG", &self.config_file)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("service process starts");
        self.child = Some(child);
    }

    /// Whether the process is still running (false once it has exited,
    /// for instance because its port was taken).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no graceful shutdown, in-flight work is simply cut off.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then up to `grace` for a graceful exit (which flushes logs
    /// and exported spans) before SIGKILL. True if it exited by itself.
    pub fn terminate_within(&mut self, grace: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        loop {
            match c.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return false;
                }
            }
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn toml_of(cfg: &Config) -> String {
    toml::to_string(cfg).expect("config serialises")
}
