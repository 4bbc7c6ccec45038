//! Redis over TLS (`rediss://`): a service's connection checks the server
//! against the deployment's own CA, as `herald setup` makes it, and still
//! reaches only its own keys.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use herald_config::RedisConfig;
use herald_testkit::servers::{find_binary, free_port};
use tokio_util::sync::CancellationToken;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects as `service`, giving up after a few seconds.
async fn connect(
    cfg: &RedisConfig,
    service: &str,
) -> anyhow::Result<redis::aio::ConnectionManager> {
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            stop.cancel();
        })
    };
    let conn = herald_runtime::store::connect_as(cfg, Some(service), &stop).await;
    timer.abort();
    conn
}

#[tokio::test]
async fn a_service_reaches_redis_over_tls_checked_against_the_deployment_s_ca() {
    herald_runtime::install_crypto();
    let (dir, layout) = herald_testkit::servers::deployment();
    let port = free_port();
    let _server = Killed(
        Command::new(find_binary("redis-server"))
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(layout.tls_cert())
            .arg("--tls-key-file")
            .arg(layout.tls_key())
            .arg("--tls-ca-cert-file")
            .arg(layout.tls_ca())
            .arg("--aclfile")
            .arg(layout.redis_acl())
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    let cfg = RedisConfig {
        url: format!("rediss://127.0.0.1:{port}").into(),
        credentials_dir: Some(layout.redis_credentials()),
        tls_ca_file: Some(layout.tls_ca()),
        ..Default::default()
    };
    let mut conn = connect(&cfg, "delivery")
        .await
        .expect("delivery connects over TLS");
    let _: () = redis::cmd("SET")
        .arg("herald:delivery:probe")
        .arg("1")
        .query_async(&mut conn)
        .await
        .expect("delivery writes its own keys");
    let other: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg("herald:intake:idem:x")
        .query_async(&mut conn)
        .await;
    assert!(other.is_err(), "delivery read intake's keys: {other:?}");

    // Without the deployment's CA the server is a stranger.
    let untrusting = RedisConfig {
        tls_ca_file: None,
        ..cfg.clone()
    };
    assert!(connect(&untrusting, "delivery").await.is_err());
    // Plain text to the TLS port gets nowhere.
    let plain = RedisConfig {
        url: format!("redis://127.0.0.1:{port}").into(),
        tls_ca_file: None,
        ..cfg.clone()
    };
    let refused = match connect(&plain, "delivery").await {
        Err(_) => true,
        Ok(mut c) => redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .is_err(),
    };
    assert!(refused, "a plain-text connection was served");
}
