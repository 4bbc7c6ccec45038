//! Redis that survives losing a server: a primary and a replica on
//! loopback ports, both with every service's ACL user (so whichever is
//! primary holds each service to its keyspace), watched by three Sentinels
//! that need a password too. Services reach it with a `redis+sentinel://`
//! URL; the kit can kill the primary and watch the Sentinels promote the
//! replica.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{
    fleet::RedisUrls,
    servers::{ADMIN, acl_lines, find_binary, free_port, password, wait_for_port},
};

/// The primary's name among the Sentinels.
pub const PRIMARY: &str = "herald";
/// The user replicas replicate as.
const REPLICATION: &str = "herald-replica";
/// The user Sentinels reach the data servers as.
const SENTINEL_ON_DATA: &str = "herald-sentinel";
/// The user Sentinels know each other by.
const SENTINEL_PEER: &str = "herald-sentinel-peer";
/// The user Herald asks Sentinel as: only which server is primary.
pub const SENTINEL_CLIENT: &str = "herald";

struct Proc {
    port: u16,
    conf: PathBuf,
    dir: PathBuf,
    sentinel: bool,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(find_binary("redis-server"));
        cmd.arg(&self.conf);
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server does not start: {e}"))?;
        self.child = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(15)) {
            return Err(format!(
                "redis on {} did not listen: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            ));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The primary, its replica and three Sentinels (see the module).
pub struct RedisHa {
    data: Vec<Proc>,
    sentinels: Vec<Proc>,
    _dir: TempDir,
}

impl RedisHa {
    /// Starts the two data servers (the first primary), three Sentinels,
    /// and waits until the replica is in sync and every Sentinel knows it.
    pub async fn start() -> Result<RedisHa, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ports = [free_port(), free_port()];
        let mut data = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let d = dir.path().join(format!("data-{i}"));
            std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
            let acl = d.join("users.acl");
            let mut users = acl_lines();
            users.push(format!(
                "user {REPLICATION} on >{} +psync +replconf +ping",
                password(REPLICATION)
            ));
            users.push(format!(
                "user {SENTINEL_ON_DATA} on >{} allchannels +multi +slaveof +ping +exec \
                 +subscribe +config|rewrite +role +publish +info +client|setname +client|kill \
                 +script|kill",
                password(SENTINEL_ON_DATA)
            ));
            std::fs::write(&acl, users.join("\n") + "\n").map_err(|e| e.to_string())?;
            let mut conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\nappendonly no\n\
                 logfile redis.log\ndir {}\naclfile {}\n\
                 masteruser {REPLICATION}\nmasterauth {}\n",
                d.display(),
                acl.display(),
                password(REPLICATION)
            );
            if i > 0 {
                conf.push_str(&format!("replicaof 127.0.0.1 {}\n", ports[0]));
            }
            let path = d.join("redis.conf");
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
            data.push(Proc {
                port: *port,
                conf: path,
                dir: d,
                sentinel: false,
                child: None,
            });
        }
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let d = dir.path().join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile redis.log\ndir {}\n\
                 sentinel monitor {PRIMARY} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {PRIMARY} 1000\n\
                 sentinel failover-timeout {PRIMARY} 10000\n\
                 sentinel auth-user {PRIMARY} {SENTINEL_ON_DATA}\n\
                 sentinel auth-pass {PRIMARY} {}\n\
                 sentinel sentinel-user {SENTINEL_PEER}\n\
                 sentinel sentinel-pass {}\n\
                 user default off\n\
                 user {SENTINEL_PEER} on >{} allchannels +@all\n\
                 user {ADMIN} on >{} allchannels +@all\n\
                 user {SENTINEL_CLIENT} on >{} -@all +auth +hello +ping \
                 +sentinel|get-master-addr-by-name\n",
                d.display(),
                ports[0],
                password(SENTINEL_ON_DATA),
                password(SENTINEL_PEER),
                password(SENTINEL_PEER),
                password(ADMIN),
                password(SENTINEL_CLIENT),
            );
            let path = d.join("sentinel.conf");
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
            sentinels.push(Proc {
                port,
                conf: path,
                dir: d,
                sentinel: true,
                child: None,
            });
        }
        let mut ha = RedisHa {
            data,
            sentinels,
            _dir: dir,
        };
        for p in ha.data.iter_mut().chain(ha.sentinels.iter_mut()) {
            p.spawn()?;
        }
        ha.wait_in_sync(Duration::from_secs(30)).await?;
        Ok(ha)
    }

    /// Waits until the replica of the current primary is online and every
    /// Sentinel counts it and the other two Sentinels.
    async fn wait_in_sync(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.replicas_online().await == Some(1) && {
                let mut all = true;
                for s in &self.sentinels {
                    let info = self
                        .sentinel_query(s.port, &["SENTINEL", "MASTER", PRIMARY])
                        .await;
                    let field = |name: &str| {
                        info.as_ref().ok().and_then(|v| {
                            v.chunks(2).find(|kv| kv[0] == name).map(|kv| kv[1].clone())
                        })
                    };
                    all &= field("num-slaves").as_deref() == Some("1")
                        && field("num-other-sentinels").as_deref() == Some("2");
                }
                all
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the Redis replica and Sentinels never came together".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sentinel_query(&self, port: u16, args: &[&str]) -> Result<Vec<String>, String> {
        let url = format!("redis://{ADMIN}:{}@127.0.0.1:{port}", password(ADMIN));
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await.map_err(|e| e.to_string())
    }

    /// The data server the Sentinels name as primary (its index).
    pub async fn primary(&self) -> Option<usize> {
        for s in &self.sentinels {
            if let Ok(addr) = self
                .sentinel_query(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY])
                .await
                && let Some(port) = addr.get(1).and_then(|p| p.parse::<u16>().ok())
            {
                return self.data.iter().position(|d| d.port == port);
            }
        }
        None
    }

    /// Replicas the primary counts online, if it answers.
    async fn replicas_online(&self) -> Option<usize> {
        let i = self.primary().await?;
        let client = redis::Client::open(admin_url(self.data[i].port)).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await
            .ok()?;
        Some(
            info.lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count(),
        )
    }

    /// SIGKILLs the current primary; returns its index.
    pub async fn kill_primary(&mut self) -> usize {
        let i = self
            .primary()
            .await
            .unwrap_or_else(|| panic!("no Sentinel names a primary"));
        self.data[i].kill();
        i
    }

    /// Waits until the Sentinels name a primary other than `old`.
    pub async fn wait_for_failover(&self, old: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(p) = self.primary().await
                && p != old
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "the Sentinels did not fail over within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts data server `i` again; the Sentinels make it a replica of
    /// the new primary. Waits until it is in sync.
    pub async fn restart(&mut self, i: usize) {
        self.data[i]
            .spawn()
            .unwrap_or_else(|e| panic!("restarting Redis {i}: {e}"));
        self.wait_in_sync(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The Sentinels, as a `redis+sentinel://` URL takes them.
    fn sentinel_list(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn admin_url(port: u16) -> String {
    format!("redis://{ADMIN}:{}@127.0.0.1:{port}", password(ADMIN))
}

impl RedisUrls for RedisHa {
    fn url(&self) -> String {
        format!(
            "redis+sentinel://{ADMIN}:{}@{}/{PRIMARY}",
            password(ADMIN),
            self.sentinel_list()
        )
    }

    fn url_for(&self, service: &str) -> String {
        format!(
            "redis+sentinel://{service}:{}@{}/{PRIMARY}",
            password(service),
            self.sentinel_list()
        )
    }

    fn configure(&self, cfg: &mut herald_config::RedisConfig) {
        cfg.sentinel_username = Some(SENTINEL_CLIENT.into());
        cfg.sentinel_password = Some(password(SENTINEL_CLIENT).into());
    }

    /// Refusals on every data server still running: each was primary at
    /// some point, or a replica that any service could have reached.
    fn denials(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in self.data.iter().filter(|d| d.child.is_some()) {
            let Ok(client) = redis::Client::open(admin_url(d.port)) else {
                continue;
            };
            let Ok(mut c) = client.get_connection() else {
                continue;
            };
            let log: Vec<redis::Value> = redis::cmd("ACL")
                .arg("LOG")
                .query(&mut c)
                .unwrap_or_default();
            out.extend(log.iter().map(|e| format!("redis {}: {e:?}", d.port)));
        }
        out
    }
}

impl Drop for RedisHa {
    fn drop(&mut self) {
        for p in self.data.iter_mut().chain(self.sentinels.iter_mut()) {
            p.kill();
        }
    }
}
