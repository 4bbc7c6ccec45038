//! Following a Redis primary through Sentinel: a forwarder on a loopback
//! port of the process's own, which the service's ordinary Redis
//! connection (a `ConnectionManager`, unchanged) connects to.
//!
//! Each connection the forwarder accepts goes to the server the Sentinels
//! name as primary at that moment (`SENTINEL GET-MASTER-ADDR-BY-NAME`,
//! asked of each Sentinel in turn until one answers). It also asks again
//! twice a second, and when the answer changes (a failover) it closes
//! every connection it carries to the old primary. The connection manager
//! sees its socket close, as after any Redis restart, and reconnects,
//! which lands on the new primary. A command in flight at that instant
//! fails as it would in a restart, and every caller already retries those.
//!
//! The data servers' user and password travel inside the forwarded
//! connection, untouched; the Sentinels get their own
//! (`redis.sentinel_username`, `redis.sentinel_password`).

use std::{net::SocketAddr, time::Duration};

use herald_config::{RedisConfig, SentinelUrl};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tracing::{info, warn};

/// How often the Sentinels are asked which server is primary.
const POLL: Duration = Duration::from_millis(500);

/// Starts the forwarder for `cfg`'s `redis+sentinel://` URL and returns the
/// plain `redis://` URL that reaches the primary through it (with the data
/// servers' user and password from the URL).
///
/// It runs as long as the process does, not only until shutdown begins:
/// a service that is draining still records what it sent, and a send
/// whose record cannot reach Redis is held under its lease and sent again
/// once that runs out.
pub async fn forward(cfg: &RedisConfig) -> anyhow::Result<String> {
    let url = cfg
        .sentinel_url()
        .map_err(|e| anyhow::anyhow!("redis.url: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let (tx, rx) = watch::channel(None);
    let asker = Asker {
        url: url.clone(),
        username: cfg.sentinel_username.clone(),
        password: cfg
            .sentinel_password
            .as_ref()
            .map(|p| p.expose_secret().to_string()),
    };
    tokio::spawn(watch_primary(asker, tx));
    tokio::spawn(accept(listener, rx));
    Ok(local_url(&url, local))
}

/// The URL of the forwarder at `local`, with the data servers' credentials.
fn local_url(url: &SentinelUrl, local: SocketAddr) -> String {
    let auth = match (&url.username, &url.password) {
        (Some(u), Some(p)) => format!("{u}:{p}@"),
        (None, Some(p)) => format!(":{p}@"),
        (Some(u), None) => format!("{u}@"),
        (None, None) => String::new(),
    };
    format!("redis://{auth}{local}/{}", url.db)
}

/// Asks the Sentinels which server is primary.
struct Asker {
    url: SentinelUrl,
    username: Option<String>,
    password: Option<String>,
}

impl Asker {
    /// The primary's address as the first Sentinel that answers gives it.
    async fn primary(&self) -> Option<(String, u16)> {
        for (host, port) in &self.url.sentinels {
            match tokio::time::timeout(Duration::from_secs(2), self.ask(host, *port)).await {
                Ok(Ok(Some(addr))) => return Some(addr),
                Ok(Ok(None)) => warn!(sentinel = %host, port, "Sentinel knows no such primary"),
                Ok(Err(e)) => warn!(sentinel = %host, port, error = %e, "Sentinel did not answer"),
                Err(_) => warn!(sentinel = %host, port, "Sentinel did not answer in time"),
            }
        }
        None
    }

    async fn ask(&self, host: &str, port: u16) -> redis::RedisResult<Option<(String, u16)>> {
        let mut settings = redis::RedisConnectionInfo::default();
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        use redis::IntoConnectionInfo;
        let info = redis::ConnectionAddr::Tcp(host.to_string(), port)
            .into_connection_info()?
            .set_redis_settings(settings);
        let mut c = redis::Client::open(info)?
            .get_multiplexed_async_connection()
            .await?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.url.primary)
            .query_async(&mut c)
            .await?;
        Ok(addr.and_then(|(h, p)| Some((h, p.parse().ok()?))))
    }
}

/// Keeps `tx` at the primary the Sentinels name, asking every [`POLL`].
async fn watch_primary(asker: Asker, tx: watch::Sender<Option<(String, u16)>>) {
    loop {
        if let Some(addr) = asker.primary().await {
            tx.send_if_modified(|now| {
                if now.as_ref() == Some(&addr) {
                    return false;
                }
                info!(primary = %format!("{}:{}", addr.0, addr.1), "Redis primary, as Sentinel names it");
                *now = Some(addr);
                true
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn accept(listener: TcpListener, rx: watch::Receiver<Option<(String, u16)>>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(carry(client, rx.clone()));
            }
            Err(e) => {
                warn!(error = %e, "the Redis forwarder could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Carries one connection to the current primary until either side
/// closes it or the Sentinels name another primary.
async fn carry(mut client: TcpStream, mut rx: watch::Receiver<Option<(String, u16)>>) {
    // Until the Sentinels have answered once, wait (the client's own
    // connection timeout bounds this).
    let primary = match rx.wait_for(Option::is_some).await {
        Ok(p) => p.clone(),
        Err(_) => return,
    };
    let Some((host, port)) = primary else { return };
    let mut server = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) => {
            warn!(primary = %format!("{host}:{port}"), error = %e, "Redis primary not reachable");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let moved = async {
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            if rx.borrow().as_ref() != Some(&(host.clone(), port)) {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = moved => info!(old = %format!("{host}:{port}"), "Redis primary moved: connection closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarder_s_url_carries_the_data_servers_credentials_and_database() {
        let cfg = RedisConfig {
            url: "redis+sentinel://router:pw@127.0.0.1:26379/herald/3".into(),
            ..RedisConfig::default()
        };
        let url = cfg.sentinel_url().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(
            local_url(&url, local),
            "redis://router:pw@127.0.0.1:40000/3"
        );
    }
}
