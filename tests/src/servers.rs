//! nats-server and redis-server, each started on a free loopback port in its
//! own temporary folder, killed when dropped. Tests can stop and restart
//! them (same port, same data) to prove nothing is lost.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// A free TCP port on 127.0.0.1 (free when asked; bind promptly).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Finds a server binary: `HERALD_KIT_<NAME>_BIN` (not `HERALD_<SECTION>_…`,
/// which Herald reads as configuration), else the project's own
/// `tools/bin` (where `make deps` puts the current nats-server), else PATH
/// and the usual Debian places.
pub fn find_binary(name: &str) -> PathBuf {
    let env_key = format!(
        "HERALD_KIT_{}_BIN",
        name.to_ascii_uppercase().replace('-', "_")
    );
    if let Some(p) = std::env::var_os(&env_key) {
        return PathBuf::from(p);
    }
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(tools)
        .chain(std::env::split_paths(&path))
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: install it (make test does) or set {env_key}"))
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A deployment's credentials and certificates as `herald setup` writes
/// them, in a folder of their own that lasts as long as the `TempDir`.
pub fn deployment() -> (TempDir, herald_setup::Layout) {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = herald_setup::Layout::new(dir.path().join("secrets"));
    herald_setup::write(
        &layout,
        &herald_setup::Options {
            redis_prefix: herald_config::RedisConfig::default().prefix,
            ..Default::default()
        },
    )
    .expect("the deployment's credentials");
    (dir, layout)
}

/// A nats-server with JetStream on file storage, run with the
/// credentials and configuration `herald setup` writes (`herald_setup`):
/// TLS with the deployment's own CA, every service and role an nkey user
/// with exactly its permissions, no anonymous access. The kit itself
/// connects as [`KIT_ADMIN`], allowed everything, to play the outside
/// world and look inside; services connect as themselves from
/// [`NatsServer::credentials_dir`].
pub struct NatsServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    layout: herald_setup::Layout,
}

/// The kit's own identity: allowed every subject.
pub const KIT_ADMIN: &str = "herald-kit";

/// The system the kit sends notifications as.
pub const PUBLISHER: &str = "publisher";

/// Identities a test system has besides the services and one per role
/// named after it: a second publisher, to tell callers apart.
pub const KIT_IDENTITIES: [(&str, Role); 1] = [("billing", Role::Publisher)];

use herald_proto::access::{Identity, Role, ServerUser};

/// The credentials and server configuration of a test deployment under
/// `dir`/secrets, as [`NatsServer`] and [`crate::cluster::NatsCluster`] run
/// them: `herald setup`'s, with the kit's identities and its own
/// administrator ([`KIT_ADMIN`]), whose seed lies beside the others so a
/// `Bus` of the kit finds it as a service finds its own.
pub(crate) fn kit_deployment(dir: &Path, store_dir: Option<PathBuf>) -> herald_setup::Layout {
    let layout = herald_setup::Layout::new(dir.join("secrets"));
    let admin = nkeys::KeyPair::new_user();
    let options = herald_setup::Options {
        identities: KIT_IDENTITIES
            .iter()
            .map(|(n, r)| Identity::new(*n, *r))
            .collect(),
        store_dir,
        redis_prefix: herald_config::RedisConfig::default().prefix,
        extra_users: vec![ServerUser::unrestricted(KIT_ADMIN, admin.public_key())],
        ..Default::default()
    };
    herald_setup::write(&layout, &options).expect("the deployment's credentials");
    let admin_seed = herald_config::seed_path(&layout.nats_credentials(), KIT_ADMIN);
    std::fs::write(&admin_seed, admin.seed().expect("nkey seed")).expect("kit key written");
    layout
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = kit_deployment(dir.path(), Some(dir.path().join("js")));
        let mut s = NatsServer {
            port: free_port(),
            dir,
            child: None,
            layout,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(find_binary("nats-server"))
            .arg("-c")
            .arg(self.layout.server_config())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(15)),
            "nats-server did not listen on {}; see {}",
            self.port,
            self.dir.path().join("nats.log").display()
        );
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Where every identity's nkey seed is (`<name>.nk`), as
    /// `nats.credentials_dir` takes it.
    pub fn credentials_dir(&self) -> PathBuf {
        self.layout.nats_credentials()
    }

    /// The CA the server's certificate is signed by, as
    /// `nats.tls_ca_file` takes it.
    pub fn tls_ca(&self) -> PathBuf {
        self.layout.tls_ca()
    }

    /// The nkey seed of `identity`.
    pub fn seed(&self, identity: &str) -> String {
        std::fs::read_to_string(herald_config::seed_path(&self.credentials_dir(), identity))
            .unwrap_or_else(|e| panic!("the kit has no identity {identity}: {e}"))
            .trim()
            .to_string()
    }

    /// A client connected as `identity`, with its own inbox prefix, as a
    /// Herald process of that identity would be.
    pub async fn connect_as(&self, identity: &str) -> async_nats::Client {
        self.options_for(identity)
            .connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connecting as {identity}: {e}"))
    }

    /// The connection options of `identity`: its key, its inbox, and TLS
    /// checked against the deployment's CA.
    pub fn options_for(&self, identity: &str) -> async_nats::ConnectOptions {
        async_nats::ConnectOptions::with_nkey(self.seed(identity))
            .custom_inbox_prefix(herald_proto::access::inbox_prefix(identity))
            .add_root_certificates(self.tls_ca())
            .require_tls(true)
    }

    /// The kit's own client, allowed everything.
    pub async fn admin(&self) -> async_nats::Client {
        self.connect_as(KIT_ADMIN).await
    }

    /// Declares Herald's streams as `cfg` describes them, as the
    /// provisioning identity (what `herald provision` does).
    pub async fn provision(&self, cfg: &herald_config::NatsConfig) {
        self.provision_keeping(cfg, &herald_config::RetentionConfig::default())
            .await
    }

    /// [`NatsServer::provision`], each stream kept as long as `keep` says.
    pub async fn provision_keeping(
        &self,
        cfg: &herald_config::NatsConfig,
        keep: &herald_config::RetentionConfig,
    ) {
        let mut cfg = cfg.clone();
        cfg.url = self.url();
        cfg.credentials_dir = Some(self.credentials_dir());
        cfg.tls_ca_file = Some(self.tls_ca());
        let bus = herald_runtime::bus::Bus::connect(
            &cfg,
            "provision",
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("provisioning identity connects");
        bus.provision_streams(keep).await.expect("streams declared");
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Messages JetStream has stored, per stream, since the streams were
    /// made: each stream's last sequence (work-queue streams delete what is
    /// consumed, so their message count says nothing of what was written).
    pub async fn stored_messages(&self) -> std::collections::BTreeMap<String, u64> {
        self.per_stream(|s| s.last_sequence).await
    }

    /// Distinct subjects each stream holds messages on: what nats-server
    /// keeps per-subject state for.
    pub async fn subject_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.per_stream(|s| s.subjects_count).await
    }

    /// One figure of each stream's state, by stream name.
    async fn per_stream(
        &self,
        figure: impl Fn(&async_nats::jetstream::stream::State) -> u64,
    ) -> std::collections::BTreeMap<String, u64> {
        use futures::StreamExt;
        let js = async_nats::jetstream::new(self.admin().await);
        let mut streams = js.streams();
        let mut out = std::collections::BTreeMap::new();
        while let Some(info) = streams.next().await {
            let info = info.expect("stream info");
            out.insert(info.config.name.clone(), figure(&info.state));
        }
        out
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A redis-server with an append-only file, so a restart keeps its data.
/// A redis-server whose anonymous user is off: the kit connects as an
/// administrator (`url`), each service as its own ACL user limited to the
/// keyspaces it owns or reads (`url_for`, from `herald_proto::keyspace`),
/// so a service touching another's keys fails the test that makes it.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// The kit's own user, allowed everything.
pub(crate) const ADMIN: &str = "herald-kit";

/// A service user's password: fixed per user, so a restarted server reads
/// the same ACL file. Loopback only, and the server lives as long as the
/// test.
pub(crate) fn password(user: &str) -> String {
    format!("{user}-test-password")
}

/// The kit's Redis users: every service's from the keyspace table, the
/// kit's administrator, and no anonymous access.
pub(crate) fn acl_lines() -> Vec<String> {
    let mut lines = vec![
        "user default off".to_string(),
        format!("user {ADMIN} on >{} ~* &* +@all", password(ADMIN)),
    ];
    for service in herald_proto::keyspace::SERVICES {
        lines.push(format!(
            "user {service} on >{} {}",
            password(service),
            herald_proto::keyspace::acl_rules(
                service,
                &herald_config::RedisConfig::default().prefix
            )
        ));
    }
    lines
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = RedisServer {
            port: free_port(),
            dir,
            child: None,
        };
        s.spawn();
        s
    }

    /// The ACL file: every service's user from the keyspace table, the
    /// kit's administrator, and no anonymous access.
    fn acl_file(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("users.acl");
        std::fs::write(&path, acl_lines().join("\n") + "\n").expect("ACL file written");
        path
    }

    fn spawn(&mut self) {
        let acl = self.acl_file();
        let child = Command::new(find_binary("redis-server"))
            .arg("--aclfile")
            .arg(&acl)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--daemonize",
                "no",
                "--logfile",
                "redis.log",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(15)),
            "redis-server did not listen on {}",
            self.port
        );
    }

    /// The kit's administrator: everything.
    pub fn url(&self) -> String {
        format!(
            "redis://{ADMIN}:{}@127.0.0.1:{}",
            password(ADMIN),
            self.port
        )
    }

    /// `service`'s own user: only the keys it owns or reads.
    pub fn url_for(&self, service: &str) -> String {
        format!(
            "redis://{service}:{}@127.0.0.1:{}",
            password(service),
            self.port
        )
    }

    /// Commands the server refused for want of permission, as `ACL LOG`
    /// lists them (user, command or key, reason).
    pub fn denials(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut c = client.get_connection().expect("redis connection");
        let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut c).expect("ACL LOG");
        log.iter().map(|entry| format!("{entry:?}")).collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the server was started and not killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Commands the server has run since it started, by name, as
    /// `INFO commandstats` counts them (a Lua script's own `redis.call`s
    /// are counted under their commands, beside the `evalsha`).
    pub fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut c = client.get_connection().expect("redis connection");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }

    /// Resident memory of the server process, in bytes, as Redis reports it.
    pub fn used_memory(&self) -> u64 {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut c = client.get_connection().expect("redis connection");
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut c)
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
