//! The `herald` command line run against a test system, as an operator or
//! a coordinator types it.
//!
//! The binary is built by another package, so the test that uses this
//! names it: `Cli::new(env!("CARGO_BIN_EXE_herald"), &sys)`.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use crate::TestSystem;

/// `herald` pointed at a test system's NATS and Redis, with the system's
/// identities to choose from (each command takes the one its role needs),
/// no configuration file, no coordinator credential or API key and no
/// terminal unless a test gives them.
pub struct Cli {
    binary: PathBuf,
    nats_url: String,
    redis_url: String,
    credentials: PathBuf,
    tls_ca: PathBuf,
}

impl Cli {
    pub fn new(binary: impl Into<PathBuf>, sys: &TestSystem) -> Cli {
        Cli {
            binary: binary.into(),
            nats_url: sys.nats.url(),
            redis_url: sys.redis.url(),
            credentials: sys.nats.credentials_dir(),
            tls_ca: sys.nats.tls_ca(),
        }
    }

    /// Runs `herald <args>` and waits for it.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_as(args, None)
    }

    /// As [`Cli::run`], with `HERALD_COORDINATOR_TOKEN` set to `token`.
    pub fn run_as(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .env_remove("HERALD_CONFIG")
            .env_remove("HERALD_COORDINATOR_TOKEN")
            .env_remove("HERALD_API_KEY")
            .env_remove("HERALD_NATS_IDENTITY")
            .env("HERALD_NATS_URL", &self.nats_url)
            .env("HERALD_NATS_CREDENTIALS_DIR", &self.credentials)
            .env("HERALD_NATS_TLS_CA_FILE", &self.tls_ca)
            .env("HERALD_REDIS_URL", &self.redis_url)
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("HERALD_COORDINATOR_TOKEN", t);
        }
        cmd.output().expect("herald runs")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
