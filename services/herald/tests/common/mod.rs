//! Running the `herald` binary against a test system.

#![allow(dead_code)]

use std::process::Output;

use herald_testkit::TestSystem;

pub fn herald(sys: &TestSystem, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_remove("HERALD_CONFIG")
        .env("HERALD_NATS_URL", sys.nats.url())
        .env("HERALD_REDIS_URL", sys.redis.url())
        .output()
        .expect("herald runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
