//! `herald setup`: a deployment's identities and the server configuration
//! that admits only them; `herald provision`: Herald's streams, declared
//! by the one identity allowed to.
//!
//! What `setup` writes, and how keys are kept and rotated, is
//! `herald_setup`'s to say. The server picks up a new configuration on
//! `nats-server --signal reload`.

use std::path::PathBuf;

use clap::Args;
use herald_config::Config;
use herald_proto::access::{Identity, Role};
use herald_setup::{Layout, Options, SetupError};

use crate::Failure;

#[derive(Args)]
pub struct SetupArgs {
    /// Where to write the keys and server configurations.
    #[arg(long, default_value = "secrets")]
    dir: PathBuf,
    /// A system allowed to send notifications, case events and cancels.
    #[arg(long = "publisher", value_name = "NAME")]
    publishers: Vec<String>,
    /// A front door allowed to start, update and cancel broadcasts.
    #[arg(long = "coordinator", value_name = "NAME")]
    coordinators: Vec<String>,
    /// Someone allowed to read the trail, dead letters and case clocks.
    #[arg(long = "operator", value_name = "NAME")]
    operators: Vec<String>,
    /// Someone allowed to import and remove contacts and groups.
    #[arg(long = "directory", value_name = "NAME")]
    directories: Vec<String>,
    /// Someone allowed to send dead letters' jobs again.
    #[arg(long = "replay", value_name = "NAME")]
    replays: Vec<String>,
    /// Give this identity a new key; the old one keeps working until
    /// `--retire`.
    #[arg(long, value_name = "NAME")]
    rotate: Vec<String>,
    /// Stop accepting the key this identity had before its rotation.
    #[arg(long, value_name = "NAME")]
    retire: Vec<String>,
    /// JetStream's store directory, written into the server configuration.
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Another name the NATS server is reached by, for its certificate
    /// (localhost, 127.0.0.1 and ::1 are always in it).
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
}

pub fn setup(cfg: &Config, a: SetupArgs) -> Result<(), Failure> {
    let mut identities = Vec::new();
    for (names, role) in [
        (&a.publishers, Role::Publisher),
        (&a.coordinators, Role::Coordinator),
        (&a.operators, Role::Operator),
        (&a.directories, Role::Directory),
        (&a.replays, Role::Replay),
    ] {
        identities.extend(names.iter().map(|n| Identity::new(n.clone(), role)));
    }
    let layout = Layout::new(&a.dir);
    let options = Options {
        identities,
        rotate: a.rotate,
        retire: a.retire,
        store_dir: a.store_dir,
        tls_names: a.tls_names,
        redis_prefix: cfg.redis.prefix.clone(),
        extra_users: Vec::new(),
    };
    let manifest = herald_setup::write(&layout, &options).map_err(|e| Failure {
        code: match e {
            SetupError::Refused(_) => 2,
            SetupError::Io(_) => 1,
        },
        message: e.to_string(),
    })?;
    println!("identities in {}:", a.dir.display());
    for (name, entry) in &manifest.identities {
        let rotating = if entry.previous_key.is_some() {
            "  (old key still accepted: --retire it once restarted)"
        } else {
            ""
        };
        println!("  {name:<14} {:<12}{rotating}", entry.role);
    }
    println!(
        "nats-server -c {}\nservices and the command line: nats.credentials_dir = {}, nats.tls_ca_file = {}, redis.credentials_dir = {}\nredis-server --aclfile {}",
        layout.server_config().display(),
        layout.nats_credentials().display(),
        layout.tls_ca().display(),
        layout.redis_credentials().display(),
        layout.redis_acl().display(),
    );
    Ok(())
}

/// Declares Herald's streams as the configuration describes them.
pub async fn provision(cfg: &Config) -> Result<(), Failure> {
    let bus = crate::connect_bus(cfg, Role::Provision).await?;
    bus.provision_streams(&cfg.retention)
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
    for s in herald_runtime::bus::stream_configs(&cfg.nats, &cfg.retention) {
        println!(
            "  {:<28} {:<40} kept {}",
            s.name,
            s.subjects.join(" "),
            humantime::format_duration(s.max_age)
        );
    }
    Ok(())
}

fn fail(message: String) -> Failure {
    Failure { code: 1, message }
}
