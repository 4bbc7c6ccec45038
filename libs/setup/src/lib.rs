//! A deployment's credentials, written once and kept: what `herald setup`
//! makes, and what the test kit runs every test with.
//!
//! Under the deployment's folder (owner-only):
//! - `nats/<name>.nk`: each identity's nkey seed (the server keeps only the
//!   public half);
//! - `nats-server.conf`: JetStream, TLS, and one nkey user per identity
//!   with exactly the permissions of its role (`herald_proto::access`); no
//!   anonymous access;
//! - `tls/ca.pem`, `tls/server.pem`, `tls/server-key.pem`: a certificate
//!   authority made for the deployment and the server certificate it
//!   signed, which clients check (`nats.tls_ca_file`);
//! - `redis/<service>.password`, `redis/users.acl`: one Redis user per
//!   service limited to its keyspaces (`herald_proto::keyspace`), the
//!   default user off, passwords kept only as SHA-256 in the ACL file;
//! - `identities.toml`: who exists, with which role.
//!
//! Written again, it keeps every key, password and certificate it has and
//! adds the identities named. Rotating an identity gives it a new key while
//! the server still accepts the old one, so the process can move to the
//! new key at leisure; retiring it then stops accepting the old one.

mod files;
mod tls;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use herald_directory::credentials::{new_secret, sha256_hex};
use herald_proto::access::{self, Identity, Role, ServerUser};
use serde::{Deserialize, Serialize};

use files::{make_private_dir, write_private};

/// Why a deployment's credentials could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Something asked for cannot be: a bad name, a name taken by another
    /// role, an unknown identity to rotate.
    #[error("{0}")]
    Refused(String),
    /// Reading or writing the folder failed.
    #[error("{0}")]
    Io(String),
}

/// What to make.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Identities to have besides the services (each kept once made). A
    /// new deployment also gets one identity per role, named after it,
    /// whatever is named here.
    pub identities: Vec<Identity>,
    /// Identities to give a new key (the old stays accepted until retired).
    pub rotate: Vec<String>,
    /// Identities whose key from before their rotation is no longer accepted.
    pub retire: Vec<String>,
    /// JetStream's store directory, written into the server configuration.
    pub store_dir: Option<PathBuf>,
    /// Names the server certificate is valid for (beyond `localhost`,
    /// `127.0.0.1` and `::1`).
    pub tls_names: Vec<String>,
    /// The deployment's Redis key prefix (`redis.prefix`).
    pub redis_prefix: String,
    /// Users added to the server configuration as they are (a test
    /// harness's own); `herald setup` adds none.
    pub extra_users: Vec<ServerUser>,
}

/// `identities.toml`: every identity, its role, and the public key it had
/// before a rotation that is not retired yet.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub identities: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<String>,
}

/// Where a deployment's files are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }
    /// What `nats.credentials_dir` names.
    pub fn nats_credentials(&self) -> PathBuf {
        self.dir.join("nats")
    }
    /// What `redis.credentials_dir` names.
    pub fn redis_credentials(&self) -> PathBuf {
        self.dir.join("redis")
    }
    pub fn server_config(&self) -> PathBuf {
        self.dir.join("nats-server.conf")
    }
    pub fn redis_acl(&self) -> PathBuf {
        self.redis_credentials().join("users.acl")
    }
    /// What `nats.tls_ca_file` names.
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.dir.join("tls").join("server.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.dir.join("tls").join("server-key.pem")
    }
    fn manifest(&self) -> PathBuf {
        self.dir.join("identities.toml")
    }
}

/// Writes (or completes) the deployment's credentials under `layout`.
pub fn write(layout: &Layout, o: &Options) -> Result<Manifest, SetupError> {
    for d in [
        layout.dir.clone(),
        layout.nats_credentials(),
        layout.redis_credentials(),
        layout.dir.join("tls"),
    ] {
        make_private_dir(&d)?;
    }
    let mut manifest: Manifest = match std::fs::read_to_string(layout.manifest()) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| SetupError::Refused(format!("{}: {e}", layout.manifest().display())))?,
        Err(_) => Manifest::default(),
    };
    let mut wanted = Identity::services();
    if manifest.identities.is_empty() {
        wanted.extend(Role::ALL[1..].iter().map(|r| Identity::new(r.name(), *r)));
    }
    wanted.extend(o.identities.iter().cloned());
    for id in &wanted {
        admit(&mut manifest, id)?;
    }
    for name in o.rotate.iter().chain(&o.retire) {
        if !manifest.identities.contains_key(name) {
            return Err(SetupError::Refused(format!(
                "there is no identity {name} to rotate or retire"
            )));
        }
    }

    let mut users = Vec::new();
    for (name, entry) in &mut manifest.identities {
        let role = Role::parse(&entry.role)
            .ok_or_else(|| SetupError::Refused(format!("{name}: unknown role {:?}", entry.role)))?;
        let seed_path = herald_config::seed_path(&layout.nats_credentials(), name);
        let existing = std::fs::read_to_string(&seed_path)
            .ok()
            .and_then(|s| nkeys::KeyPair::from_seed(s.trim()).ok());
        let pair = match existing {
            Some(old) if o.rotate.contains(name) => {
                entry.previous_key = Some(old.public_key());
                new_key(&seed_path)?
            }
            Some(old) => old,
            None => new_key(&seed_path)?,
        };
        if o.retire.contains(name) {
            entry.previous_key = None;
        }
        let identity = Identity::new(name.clone(), role);
        users.push(ServerUser::new(identity.clone(), pair.public_key()));
        if let Some(previous) = &entry.previous_key {
            users.push(ServerUser::new(identity, previous.clone()));
        }
    }
    users.extend(o.extra_users.iter().cloned());

    tls::ensure(layout, &o.tls_names)?;
    write_private(&layout.server_config(), &server_config(layout, o, &users))?;
    write_redis_acl(layout, &o.redis_prefix)?;
    let text = toml::to_string(&manifest).map_err(|e| SetupError::Io(e.to_string()))?;
    write_private(&layout.manifest(), &text)?;
    Ok(manifest)
}

/// Adds `id` to the manifest unless it is there; a name is one role's.
fn admit(manifest: &mut Manifest, id: &Identity) -> Result<(), SetupError> {
    if !access::is_identity_name(&id.name) {
        return Err(SetupError::Refused(format!(
            "{:?}: an identity is lowercase letters, digits and `-`, starting with a letter",
            id.name
        )));
    }
    match manifest.identities.get(&id.name) {
        Some(e) if e.role != id.role.name() => Err(SetupError::Refused(format!(
            "{} is already a {}; choose another name for a {}",
            id.name,
            e.role,
            id.role.name()
        ))),
        Some(_) => Ok(()),
        None => {
            manifest.identities.insert(
                id.name.clone(),
                Entry {
                    role: id.role.name().into(),
                    previous_key: None,
                },
            );
            Ok(())
        }
    }
}

fn server_config(layout: &Layout, o: &Options, users: &[ServerUser]) -> String {
    let mut conf = String::from(
        "# Herald's nats-server configuration, written by `herald setup` from the\n\
         # permission table in herald_proto::access. Every identity is an nkey\n\
         # user allowed only its own subjects; there is no anonymous access,\n\
         # and every connection is TLS. Regenerate it rather than editing it.\n\n",
    );
    conf.push_str("jetstream {\n");
    if let Some(store) = &o.store_dir {
        conf.push_str(&format!("  store_dir: \"{}\"\n", store.display()));
    }
    conf.push_str("}\n\n");
    conf.push_str(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}\n\n",
        layout.tls_cert().display(),
        layout.tls_key().display()
    ));
    conf.push_str(&access::server_users(users));
    conf
}

/// One Redis user per service, each with a password made once.
fn write_redis_acl(layout: &Layout, prefix: &str) -> Result<(), SetupError> {
    let mut acl = vec!["user default off".to_string()];
    for service in herald_proto::keyspace::SERVICES {
        let path = herald_config::redis_password_path(&layout.redis_credentials(), service);
        let password = match std::fs::read_to_string(&path) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                let (p, _) = new_secret().map_err(|e| {
                    SetupError::Io(format!("the operating system's random generator: {e}"))
                })?;
                write_private(&path, &p)?;
                p
            }
        };
        acl.push(format!(
            "user {service} on #{} {}",
            sha256_hex(&password),
            herald_proto::keyspace::acl_rules(service, prefix)
        ));
    }
    write_private(&layout.redis_acl(), &(acl.join("\n") + "\n"))
}

fn new_key(path: &Path) -> Result<nkeys::KeyPair, SetupError> {
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().map_err(|e| SetupError::Io(e.to_string()))?;
    write_private(path, &seed)?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            redis_prefix: "herald:".into(),
            ..Options::default()
        }
    }

    #[test]
    fn a_new_deployment_gets_every_service_and_one_identity_per_role() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let m = write(&layout, &options()).unwrap();
        for name in ["intake", "router", "publisher", "operator", "provision"] {
            assert!(m.identities.contains_key(name), "{name}");
            assert!(herald_config::seed_path(&layout.nats_credentials(), name).is_file());
        }
        let conf = std::fs::read_to_string(layout.server_config()).unwrap();
        assert!(conf.contains("authorization {"), "{conf}");
        assert!(conf.contains("tls {"), "{conf}");
        assert!(!conf.contains("no_auth_user"), "{conf}");
        let acl = std::fs::read_to_string(layout.redis_acl()).unwrap();
        assert!(acl.starts_with("user default off\n"), "{acl}");
        let pw = std::fs::read_to_string(herald_config::redis_password_path(
            &layout.redis_credentials(),
            "delivery",
        ))
        .unwrap();
        assert!(!acl.contains(&pw), "the ACL keeps hashes, not passwords");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(herald_config::seed_path(
            &layout.nats_credentials(),
            "router",
        ))
        .unwrap()
        .permissions()
        .mode();
        assert_eq!(mode & 0o077, 0, "a key readable by others: {mode:o}");
    }

    #[test]
    fn writing_again_keeps_keys_and_a_rotation_accepts_both_until_retired() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        write(&layout, &options()).unwrap();
        let seed = |name: &str| {
            std::fs::read_to_string(herald_config::seed_path(&layout.nats_credentials(), name))
                .unwrap()
        };
        let public = |s: &str| nkeys::KeyPair::from_seed(s).unwrap().public_key();
        let before = seed("publisher");
        let crm = Options {
            identities: vec![Identity::new("crm", Role::Publisher)],
            ..options()
        };
        write(&layout, &crm).unwrap();
        assert_eq!(seed("publisher"), before, "an existing key was replaced");
        assert!(seed("crm").starts_with('S'));

        let old = public(&seed("crm"));
        write(
            &layout,
            &Options {
                rotate: vec!["crm".into()],
                ..options()
            },
        )
        .unwrap();
        let conf = std::fs::read_to_string(layout.server_config()).unwrap();
        let new = public(&seed("crm"));
        assert_ne!(old, new);
        assert_eq!(conf.matches("# crm (publisher)").count(), 2, "{conf}");
        assert!(conf.contains(&old) && conf.contains(&new), "{conf}");
        write(
            &layout,
            &Options {
                retire: vec!["crm".into()],
                ..options()
            },
        )
        .unwrap();
        let conf = std::fs::read_to_string(layout.server_config()).unwrap();
        assert_eq!(conf.matches("# crm (publisher)").count(), 1, "{conf}");
        assert!(!conf.contains(&old) && conf.contains(&new), "{conf}");
    }

    #[test]
    fn a_name_is_one_role_s_and_must_be_a_subject_token() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for bad in [
            Identity::new("router", Role::Publisher),
            Identity::new("Crm.eu", Role::Publisher),
        ] {
            let o = Options {
                identities: vec![bad.clone()],
                ..options()
            };
            assert!(
                matches!(write(&layout, &o), Err(SetupError::Refused(_))),
                "{bad:?}"
            );
        }
    }
}
