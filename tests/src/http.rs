//! A real HTTP listener standing in for SMS and voice providers. It records
//! every request (path, headers, form fields) and answers as the test
//! scripts it: 201 with a message id by default, or errors such as 503 and
//! 429 with `Retry-After`. It can be told to honour `Idempotency-Key` the
//! way real providers do, and to take its time answering.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub form: Vec<(String, String)>,
    pub at: Instant,
    /// The status the listener answered with.
    pub answered: u16,
    /// Answered from the idempotency cache: a repeat of a request already
    /// accepted under the same `Idempotency-Key`, which a provider that
    /// honours the key does not send on again.
    pub replayed: bool,
}

impl Request {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the listener answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn ok(id: &str) -> Reply {
        Reply {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!("{{\"sid\":\"{id}\",\"status\":\"queued\"}}"),
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: format!("{{\"error\":{status}}}"),
        }
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.headers.push(("retry-after".into(), value.into()));
        self
    }
}

type Responder = Box<dyn Fn(&Request, usize) -> Reply + Send + Sync>;

struct State_ {
    requests: Mutex<Vec<Request>>,
    responder: Mutex<Option<Responder>>,
    arrived: Notify,
    /// `Some` when honouring `Idempotency-Key`: key → the 2xx reply given.
    idempotency: Mutex<Option<HashMap<String, Reply>>>,
    /// How long to wait before answering.
    delay: Mutex<Duration>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

pub struct HttpSink {
    pub port: u16,
    state: Arc<State_>,
    stop: CancellationToken,
    /// HTTPS: the certificate (PEM) clients must trust, and the folder
    /// holding it and its key.
    tls: Option<(String, tempfile::TempDir)>,
}

impl HttpSink {
    pub async fn start() -> HttpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP sink");
        let port = listener.local_addr().unwrap().port();
        let (state, app) = Self::app();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        HttpSink {
            port,
            state,
            stop,
            tls: None,
        }
    }

    /// A sink served over HTTPS only, with a fresh self-signed certificate
    /// for 127.0.0.1 ([`HttpSink::certificate_pem`]), as providers are.
    pub async fn start_tls() -> HttpSink {
        herald_runtime::install_crypto();
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("a self-signed certificate");
        let dir = tempfile::tempdir().expect("certificate dir");
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, key.cert.pem()).expect("certificate written");
        std::fs::write(&key_file, key.signing_key.serialize_pem()).expect("key written");
        let (state, app) = Self::app();
        let stop = CancellationToken::new();
        let listener = herald_config::PublicListener {
            addr: None,
            tls_cert_file: Some(cert_file),
            tls_key_file: Some(key_file),
        };
        let (bound, _) = herald_runtime::public::serve("127.0.0.1:0", &listener, app, stop.clone())
            .await
            .expect("HTTPS sink");
        HttpSink {
            port: bound.port(),
            state,
            stop,
            tls: Some((key.cert.pem(), dir)),
        }
    }

    /// The certificate a client must trust to reach an HTTPS sink.
    pub fn certificate_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|(pem, _)| pem.clone())
    }

    fn app() -> (Arc<State_>, Router) {
        let state = Arc::new(State_ {
            requests: Mutex::new(Vec::new()),
            responder: Mutex::new(None),
            arrived: Notify::new(),
            idempotency: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
        });
        let app = Router::new().fallback(record).with_state(state.clone());
        (state, app)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Answers every request with `f(request, how many came before it)`.
    pub fn respond_with(&self, f: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Some(Box::new(f));
    }

    /// From now on, behave like a provider that honours `Idempotency-Key`:
    /// a request whose key was already answered with a 2xx gets that same
    /// answer again and is marked [`Request::replayed`]; it is not a new
    /// message. Requests stay recorded either way, for raw wire counts.
    pub fn honour_idempotency_keys(&self) {
        let mut cache = self.state.idempotency.lock().unwrap();
        if cache.is_none() {
            *cache = Some(HashMap::new());
        }
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Requests at `path` the listener accepted (2xx): what a provider
    /// would go on to deliver.
    pub fn accepted_at(&self, path: &str) -> Vec<Request> {
        self.requests_to(path)
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits until at least `n` requests have arrived at `path`.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} request(s) at {path} within {timeout:?}, got {}",
                    self.requests_to(path).len()
                );
            }
        }
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(
    State(state): State<Arc<State_>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let request = Request {
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        form,
        at: Instant::now(),
        answered: 0,
        replayed: false,
    };
    use std::sync::atomic::Ordering;
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let key = request.header("idempotency-key").map(str::to_string);
    let reply = {
        let mut requests = state.requests.lock().unwrap();
        let mut cache = state.idempotency.lock().unwrap();
        let cached = match (cache.as_ref(), &key) {
            (Some(c), Some(k)) => c.get(k).cloned(),
            _ => None,
        };
        let mut request = request;
        let reply = match cached {
            Some(reply) => {
                request.replayed = true;
                reply
            }
            None => {
                let before = requests.iter().filter(|r| r.path == request.path).count();
                let reply = match &*state.responder.lock().unwrap() {
                    Some(f) => f(&request, before),
                    None => Reply::ok(&format!("SM{:06}", requests.len())),
                };
                if let (Some(c), Some(k)) = (cache.as_mut(), key)
                    && (200..300).contains(&reply.status)
                {
                    c.insert(k, reply.clone());
                }
                reply
            }
        };
        request.answered = reply.status;
        requests.push(request);
        reply
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    state.arrived.notify_waiters();
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
