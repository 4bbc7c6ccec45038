//! `herald setup`: a deployment's identities and the server configuration
//! that admits only them; `herald provision`: Herald's streams, declared
//! by the one identity allowed to.
//!
//! `setup` writes, under `--dir` (owner-only):
//! - `nats/<name>.nk`: each identity's nkey seed (the server keeps only
//!   the public half);
//! - `nats-server.conf`: one nkey user per identity with exactly the
//!   permissions of its role (`herald_proto::access`), no anonymous access;
//! - `redis/<service>.password` and `redis/users.acl`: one Redis user per
//!   service limited to its keyspaces (`herald_proto::keyspace`), the
//!   default user off, passwords kept only as SHA-256 in the ACL file;
//! - `identities.toml`: who exists, with which role.
//!
//! Run again, it keeps every key it has and adds the identities named.
//! `--rotate <name>` gives an identity a new key while the server still
//! accepts the old one, so the process can be restarted on the new key at
//! leisure; `--retire <name>` then stops accepting the old one. The server
//! picks up a new configuration on `nats-server --signal reload`.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use clap::Args;
use herald_config::Config;
use herald_proto::access::{self, Identity, Role, ServerUser};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
}

/// `identities.toml`: every identity, its role, and the public key it had
/// before a rotation that is not retired yet.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    #[serde(default)]
    identities: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_key: Option<String>,
}

pub fn setup(cfg: &Config, a: SetupArgs) -> Result<(), Failure> {
    let nats_dir = a.dir.join("nats");
    let redis_dir = a.dir.join("redis");
    for d in [&a.dir, &nats_dir, &redis_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| fail(format!("creating {}: {e}", d.display())))?;
    }
    let manifest_path = a.dir.join("identities.toml");
    let mut manifest: Manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| fail(format!("{}: {e}", manifest_path.display())))?
        }
        Err(_) => Manifest::default(),
    };
    let fresh = manifest.identities.is_empty();
    let mut wanted: Vec<Identity> = Identity::services();
    for (names, role) in [
        (&a.publishers, Role::Publisher),
        (&a.coordinators, Role::Coordinator),
        (&a.operators, Role::Operator),
        (&a.directories, Role::Directory),
        (&a.replays, Role::Replay),
    ] {
        wanted.extend(names.iter().map(|n| Identity::new(n.clone(), role)));
        // A new deployment gets one of each, named after the role, which
        // is what the command line uses unless told otherwise.
        if fresh && names.is_empty() {
            wanted.push(Identity::new(role.name(), role));
        }
    }
    if fresh {
        wanted.push(Identity::new(Role::Provision.name(), Role::Provision));
    }
    for id in &wanted {
        if !access::is_identity_name(&id.name) {
            return Err(Failure {
                code: 2,
                message: format!(
                    "{:?}: an identity is lowercase letters, digits and `-`, starting with a letter",
                    id.name
                ),
            });
        }
        match manifest.identities.get(&id.name) {
            Some(e) if e.role != id.role.name() => {
                return Err(Failure {
                    code: 2,
                    message: format!(
                        "{} is already a {}; choose another name for a {}",
                        id.name,
                        e.role,
                        id.role.name()
                    ),
                });
            }
            Some(_) => {}
            None => {
                manifest.identities.insert(
                    id.name.clone(),
                    Entry {
                        role: id.role.name().into(),
                        previous_key: None,
                    },
                );
            }
        }
    }
    for name in a.rotate.iter().chain(&a.retire) {
        if !manifest.identities.contains_key(name) {
            return Err(Failure {
                code: 2,
                message: format!("there is no identity {name} to rotate or retire"),
            });
        }
    }

    let mut users = Vec::new();
    for (name, entry) in &mut manifest.identities {
        let role = Role::parse(&entry.role)
            .ok_or_else(|| fail(format!("{name}: unknown role {:?}", entry.role)))?;
        let seed_path = herald_config::seed_path(&nats_dir, name);
        let existing = std::fs::read_to_string(&seed_path)
            .ok()
            .and_then(|s| nkeys::KeyPair::from_seed(s.trim()).ok());
        let pair = match existing {
            Some(old) if a.rotate.contains(name) => {
                entry.previous_key = Some(old.public_key());
                new_key(&seed_path)?
            }
            Some(old) => old,
            None => new_key(&seed_path)?,
        };
        if a.retire.contains(name) {
            entry.previous_key = None;
        }
        let identity = Identity::new(name.clone(), role);
        users.push(ServerUser::new(identity.clone(), pair.public_key()));
        if let Some(previous) = &entry.previous_key {
            users.push(ServerUser::new(identity, previous.clone()));
        }
    }

    let mut conf = String::from(
        "# Herald's nats-server configuration, written by `herald setup` from the\n\
         # permission table in herald_proto::access. Every identity is an nkey\n\
         # user allowed only its own subjects; there is no anonymous access.\n\
         # Regenerate it rather than editing it.\n\n",
    );
    conf.push_str("jetstream {\n");
    if let Some(store) = &a.store_dir {
        conf.push_str(&format!("  store_dir: \"{}\"\n", store.display()));
    }
    conf.push_str("}\n\n");
    conf.push_str(&access::server_users(&users));
    write_private(&a.dir.join("nats-server.conf"), &conf)?;

    let mut acl = vec!["user default off".to_string()];
    for service in herald_proto::keyspace::SERVICES {
        let path = herald_config::redis_password_path(&redis_dir, service);
        let password = match std::fs::read_to_string(&path) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                let p = random_secret()?;
                write_private(&path, &p)?;
                p
            }
        };
        acl.push(format!(
            "user {service} on #{} {}",
            hex::encode(Sha256::digest(password.as_bytes())),
            herald_proto::keyspace::acl_rules(service, &cfg.redis.prefix)
        ));
    }
    write_private(&redis_dir.join("users.acl"), &(acl.join("\n") + "\n"))?;

    let text = toml::to_string(&manifest).map_err(|e| fail(e.to_string()))?;
    write_private(&manifest_path, &text)?;

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
        "nats-server: -c {}; services: nats.credentials_dir = {}, redis.credentials_dir = {}",
        a.dir.join("nats-server.conf").display(),
        nats_dir.display(),
        redis_dir.display()
    );
    Ok(())
}

/// Declares Herald's streams as the configuration describes them.
pub async fn provision(cfg: &Config) -> Result<(), Failure> {
    let bus = crate::connect_bus(cfg, Role::Provision).await?;
    bus.provision_streams()
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
    for s in herald_runtime::bus::stream_configs(&cfg.nats) {
        println!("  {:<28} {}", s.name, s.subjects.join(" "));
    }
    Ok(())
}

fn new_key(path: &Path) -> Result<nkeys::KeyPair, Failure> {
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|e| fail(e.to_string()))?;
    write_private(path, &seed)?;
    Ok(pair)
}

fn random_secret() -> Result<String, Failure> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| fail(format!("reading /dev/urandom: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Writes a file readable by its owner only, replacing it whole.
fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(format!("writing {}: {e}", path.display())))
}

fn fail(message: String) -> Failure {
    Failure { code: 1, message }
}
