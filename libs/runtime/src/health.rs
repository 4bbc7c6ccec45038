//! Each service's HTTP port: `/healthz` (the process is alive), `/readyz`
//! (connected to NATS and Redis, consumers running) and `/metrics`
//! (Prometheus text format). Services may mount more routes on it.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `/readyz` checks.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    nats: Mutex<Option<async_nats::Client>>,
    redis: Mutex<Option<ConnectionManager>>,
    flags: Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    pub fn watch_nats(&self, client: &async_nats::Client) {
        *lock(&self.inner.nats) = Some(client.clone());
    }

    pub fn watch_redis(&self, redis: &ConnectionManager) {
        *lock(&self.inner.redis) = Some(redis.clone());
    }

    /// A named condition (a consumer running, a listener bound) that must be
    /// true for the service to be ready. Starts false.
    pub fn flag(&self, name: impl Into<String>) -> Arc<AtomicBool> {
        let f = Arc::new(AtomicBool::new(false));
        lock(&self.inner.flags).push((name.into(), f.clone()));
        f
    }

    /// Every check with whether it passed.
    pub async fn check(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let nats = lock(&self.inner.nats).clone();
        if let Some(client) = nats {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            out.push(("nats".to_string(), connected));
        }
        let redis = lock(&self.inner.redis).clone();
        if let Some(mut r) = redis {
            let ping = tokio::time::timeout(
                Duration::from_millis(500),
                redis::cmd("PING").query_async::<String>(&mut r),
            )
            .await;
            out.push(("redis".to_string(), matches!(ping, Ok(Ok(_)))));
        }
        for (name, flag) in lock(&self.inner.flags).iter() {
            out.push((name.clone(), flag.load(Ordering::Relaxed)));
        }
        out
    }

    pub async fn is_ready(&self) -> bool {
        self.check().await.iter().all(|(_, ok)| *ok)
    }
}

/// The value behind a lock, even if a thread panicked holding it: these
/// are plain values, never left half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct AppState {
    health: Health,
    registry: Arc<Registry>,
}

/// Binds `addr` (port 0 picks a free one) and serves health, readiness and
/// metrics, plus `extra` routes, until `shutdown`.
pub async fn serve(
    addr: &str,
    health: Health,
    registry: Arc<Registry>,
    extra: Option<Router>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding HTTP listener {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { health, registry });
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok((bound, task))
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let checks = s.health.check().await;
    let ready = checks.iter().all(|(_, ok)| *ok);
    let body: String = checks
        .iter()
        .map(|(name, ok)| format!("{name}: {}\n", if *ok { "ok" } else { "not ready" }))
        .collect();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
