//! Three nats-servers clustered on loopback ports, run with the
//! credentials and permissions `herald setup` writes: each with its own
//! server name, JetStream store and route port, all routed to each other,
//! so streams declared with `nats.replicas = 3` keep a copy on every node
//! and survive one of them being SIGKILLed.
//!
//! Every node serves the same certificate (valid for 127.0.0.1) and the
//! same users, so a client checks whichever node it lands on, and follows
//! the cluster as async-nats does: from the servers `nats.url` names and
//! those the nodes announce.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use tempfile::TempDir;

use crate::servers::{KIT_ADMIN, find_binary, free_port, kit_deployment, wait_for_port};

/// One node of the cluster.
pub struct NatsNode {
    /// Its `server_name`, as stream info names a stream's leader.
    pub name: String,
    pub port: u16,
    cluster_port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The cluster (see the module).
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    layout: herald_setup::Layout,
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until JetStream has a leader. An error
    /// says why the machine could not run them (the caller skips, saying
    /// so).
    pub async fn start(n: usize) -> Result<NatsCluster, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let layout = kit_deployment(dir.path(), None);
        let nodes = (0..n)
            .map(|i| NatsNode {
                name: format!("herald-n{}", i + 1),
                port: free_port(),
                cluster_port: free_port(),
                store: dir.path().join(format!("js-{}", i + 1)),
                log: dir.path().join(format!("nats-{}.log", i + 1)),
                child: None,
            })
            .collect();
        let mut c = NatsCluster {
            nodes,
            layout,
            _dir: dir,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        c.wait_for_jetstream(Duration::from_secs(30)).await?;
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(&node.log).map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(find_binary("nats-server"))
            .arg("-c")
            .arg(self.layout.server_config())
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-n", &node.name, "-sd"])
            .arg(&node.store)
            .args([
                "--cluster_name",
                "herald",
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
                "--routes",
                &routes.join(","),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("nats-server does not start: {e}"))?;
        node.child = Some(child);
        if !wait_for_port(node.port, Duration::from_secs(15)) {
            return Err(format!(
                "{} did not listen on {}:\n{}",
                node.name,
                node.port,
                std::fs::read_to_string(&node.log).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Waits until the cluster answers JetStream requests (a meta leader
    /// was elected).
    async fn wait_for_jetstream(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let client = self.admin().await;
        let js = async_nats::jetstream::new(client);
        loop {
            match js.query_account().await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("JetStream on the cluster never answered: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Every node, comma-separated, as `nats.url` takes a cluster.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn credentials_dir(&self) -> PathBuf {
        self.layout.nats_credentials()
    }

    pub fn tls_ca(&self) -> PathBuf {
        self.layout.tls_ca()
    }

    /// A client connected as `identity` to whichever node answers first.
    pub async fn connect_as(&self, identity: &str) -> async_nats::Client {
        let seed =
            std::fs::read_to_string(herald_config::seed_path(&self.credentials_dir(), identity))
                .unwrap_or_else(|e| panic!("the kit has no identity {identity}: {e}"));
        let servers: Vec<async_nats::ServerAddr> = self
            .url()
            .split(',')
            .map(|u| u.parse().unwrap_or_else(|e| panic!("{u}: {e}")))
            .collect();
        async_nats::ConnectOptions::with_nkey(seed.trim().to_string())
            .custom_inbox_prefix(herald_proto::access::inbox_prefix(identity))
            .add_root_certificates(self.tls_ca())
            .require_tls(true)
            .max_reconnects(None)
            .connect(servers)
            .await
            .unwrap_or_else(|e| panic!("connecting to the cluster as {identity}: {e}"))
    }

    /// The kit's own client, allowed everything.
    pub async fn admin(&self) -> async_nats::Client {
        self.connect_as(KIT_ADMIN).await
    }

    /// Points `cfg` at the cluster: every node, the deployment's keys and CA.
    pub fn configure(&self, cfg: &mut herald_config::NatsConfig) {
        cfg.url = self.url();
        cfg.credentials_dir = Some(self.credentials_dir());
        cfg.tls_ca_file = Some(self.tls_ca());
    }

    /// Declares Herald's streams as `cfg` describes them (its `replicas`
    /// included), as the provisioning identity.
    pub async fn provision(&self, cfg: &herald_config::NatsConfig) {
        let mut cfg = cfg.clone();
        self.configure(&mut cfg);
        let bus = herald_runtime::bus::Bus::connect(
            &cfg,
            "provision",
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("provisioning identity connects: {e}"));
        bus.provision_streams(&herald_config::RetentionConfig::default())
            .await
            .unwrap_or_else(|e| panic!("streams declared: {e}"));
    }

    /// Each stream's leader and replica count, by stream name.
    pub async fn stream_leaders(&self) -> BTreeMap<String, (Option<String>, usize)> {
        self.try_stream_leaders()
            .await
            .unwrap_or_else(|e| panic!("stream info: {e}"))
    }

    /// As [`NatsCluster::stream_leaders`], or why the cluster could not
    /// say (while it elects leaders, for one).
    pub async fn try_stream_leaders(
        &self,
    ) -> Result<BTreeMap<String, (Option<String>, usize)>, String> {
        let js = async_nats::jetstream::new(self.admin().await);
        let mut streams = js.streams();
        let mut out = BTreeMap::new();
        while let Some(info) = streams.next().await {
            let info = info.map_err(|e| e.to_string())?;
            let leader = info.cluster.and_then(|c| c.leader);
            out.insert(info.config.name, (leader, info.config.num_replicas));
        }
        Ok(out)
    }

    /// The node leading `stream` now.
    pub async fn leader_of(&self, stream: &str) -> usize {
        let leaders = self.stream_leaders().await;
        let name = leaders
            .get(stream)
            .and_then(|(l, _)| l.clone())
            .unwrap_or_else(|| panic!("{stream} has no leader: {leaders:?}"));
        self.index_of(&name)
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// SIGKILLs node `i`, keeping its store.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again on its ports with its store; it catches up
    /// from the others.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i)
            .unwrap_or_else(|e| panic!("restarting {}: {e}", self.nodes[i].name));
    }

    /// Whether every stream has a leader on a running node: the cluster has
    /// recovered from a node's loss.
    pub async fn every_stream_led(&self) -> bool {
        let running: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.name.as_str())
            .collect();
        self.try_stream_leaders().await.is_ok_and(|leaders| {
            leaders
                .values()
                .all(|(l, _)| l.as_deref().is_some_and(|l| running.contains(&l)))
        })
    }

    /// Watches, in a task of its own, for every stream to have a leader
    /// other than node `lost` again; the task ends with how long that took
    /// from now (or `None` after `timeout`).
    pub async fn watch_re_lead(
        &self,
        lost: usize,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<Option<Duration>> {
        let js = async_nats::jetstream::new(self.admin().await);
        let lost = self.nodes[lost].name.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            while start.elapsed() < timeout {
                let mut streams = js.streams();
                let mut all = true;
                while let Some(info) = streams.next().await {
                    let led = info.ok().and_then(|i| i.cluster).and_then(|c| c.leader);
                    all &= led.is_some_and(|l| l != lost);
                }
                if all {
                    return Some(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        })
    }

    /// The log of node `i` so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
