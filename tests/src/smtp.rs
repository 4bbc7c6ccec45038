//! A real SMTP server that records every message it accepts. It speaks
//! enough ESMTP for lettre (EHLO, MAIL, RCPT, DATA with dot-unstuffing,
//! RSET, NOOP, QUIT, and STARTTLS or TLS from the first byte when started
//! so, with a certificate of its own) and can be told to misbehave: refuse
//! connections outright, answer with temporary errors, or reject some
//! mailboxes for good.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use crate::mime::Part;
use crate::mime::{decode, decode_qp, header_in, param_of};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::Notify,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The raw message: headers, blank line, body.
    pub data: String,
    /// When the end of its data arrived.
    pub at: std::time::Instant,
    /// Whether it came over TLS.
    pub encrypted: bool,
}

impl Mail {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        header_in(head, name)
    }

    pub fn subject(&self) -> String {
        let raw = self.header("Subject").unwrap_or_default();
        decode_encoded_words(&raw)
    }

    /// The body, with quoted-printable or base64 transfer encoding undone;
    /// of a multipart message, its first text/plain part.
    pub fn body(&self) -> String {
        if let Some(text) = self
            .parts()
            .into_iter()
            .find(|p| p.content_type.starts_with("text/plain"))
        {
            return String::from_utf8_lossy(&text.body).to_string();
        }
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or_default();
        String::from_utf8_lossy(&decode(body, self.header("Content-Transfer-Encoding"))).to_string()
    }

    /// The parts of a multipart message (empty for a single-part one),
    /// each with its transfer encoding undone.
    pub fn parts(&self) -> Vec<Part> {
        let Some(ct) = self.header("Content-Type") else {
            return Vec::new();
        };
        if !ct.to_ascii_lowercase().starts_with("multipart/") {
            return Vec::new();
        }
        let Some(boundary) = param_of(&ct, "boundary") else {
            return Vec::new();
        };
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or_default();
        let delimiter = format!("--{boundary}");
        body.split(delimiter.as_str())
            .skip(1)
            .take_while(|chunk| !chunk.starts_with("--"))
            .filter_map(|chunk| {
                let chunk = chunk.strip_prefix("\r\n").unwrap_or(chunk);
                let (head, content) = chunk.split_once("\r\n\r\n")?;
                let content = content.strip_suffix("\r\n").unwrap_or(content);
                let content_type = header_in(head, "Content-Type").unwrap_or_default();
                let filename =
                    header_in(head, "Content-Disposition").and_then(|d| param_of(&d, "filename"));
                Some(Part {
                    body: decode(content, header_in(head, "Content-Transfer-Encoding")),
                    content_type,
                    filename,
                })
            })
            .collect()
    }

    /// The attached file named `filename`, if there is one.
    pub fn attachment(&self, filename: &str) -> Option<Part> {
        self.parts()
            .into_iter()
            .find(|p| p.filename.as_deref() == Some(filename))
    }
}

/// Decodes RFC 2047 `=?utf-8?b?...?=` / `?q?` words, as lettre writes
/// non-ASCII subjects.
fn decode_encoded_words(s: &str) -> String {
    use base64::Engine;
    let mut out = String::new();
    let mut previous_encoded = false;
    for word in s.split(' ') {
        let decoded = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| {
                let mut p = w.splitn(3, '?');
                let (_charset, enc, text) = (p.next()?, p.next()?, p.next()?);
                match enc {
                    "b" | "B" => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).to_string()),
                    "q" | "Q" => Some(decode_qp(&text.replace('_', " "))),
                    _ => None,
                }
            });
        // Space between two encoded words is folding, not text (RFC 2047).
        let encoded = decoded.is_some();
        let folding = encoded && previous_encoded;
        if !out.is_empty() && !folding {
            out.push(' ');
        }
        out.push_str(&decoded.unwrap_or_else(|| word.to_string()));
        previous_encoded = encoded;
    }
    out
}

#[derive(Default)]
struct State {
    mails: Mutex<Vec<Mail>>,
    /// Answer every transaction with 451 (temporary failure).
    tempfail: Mutex<bool>,
    /// Mailboxes answered with 550 (permanent failure).
    rejected: Mutex<HashSet<String>>,
    /// Every recipient refused with 550, in order: attempts that never
    /// became a message.
    refusals: Mutex<Vec<String>>,
    /// Connections accepted since start.
    connections: std::sync::atomic::AtomicUsize,
    arrived: Notify,
}

/// How the sink offers TLS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SinkTls {
    /// Plain, upgraded when the client sends STARTTLS.
    StartTls,
    /// TLS from the first byte (`smtps`).
    Implicit,
}

/// The sink's certificate and how it offers it.
struct Tls {
    mode: SinkTls,
    acceptor: tokio_rustls::TlsAcceptor,
    /// The self-signed certificate, PEM: what a client must trust.
    cert_pem: String,
}

/// The SMTP server. Dropping it stops it.
pub struct SmtpSink {
    pub port: u16,
    state: Arc<State>,
    /// The listener and its connections: stopped by the token, all
    /// tracked so that a stop can wait for them to be gone.
    running: Mutex<Option<(CancellationToken, TaskTracker)>>,
    tls: Option<Arc<Tls>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        SmtpSink::start_with(None).await
    }

    /// A sink that speaks TLS as `mode` says, with a fresh self-signed
    /// certificate for 127.0.0.1 ([`SmtpSink::certificate_pem`]).
    pub async fn start_tls(mode: SinkTls) -> SmtpSink {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("a self-signed certificate");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
            )
            .expect("a TLS server configuration");
        SmtpSink::start_with(Some(Arc::new(Tls {
            mode,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            cert_pem: key.cert.pem(),
        })))
        .await
    }

    async fn start_with(tls: Option<Arc<Tls>>) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP sink");
        let port = listener.local_addr().unwrap().port();
        let sink = SmtpSink {
            port,
            state: Arc::new(State::default()),
            running: Mutex::new(None),
            tls,
        };
        sink.serve(listener);
        sink
    }

    /// The certificate a client must trust to reach a TLS sink.
    pub fn certificate_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.cert_pem.clone())
    }

    fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        *self.running.lock().unwrap() = Some((token.clone(), tracker.clone()));
        let state = self.state.clone();
        let tls = self.tls.clone();
        let sessions = tracker.clone();
        tracker.spawn(async move {
            loop {
                let (socket, _) = tokio::select! {
                    _ = token.cancelled() => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let _ = socket.set_nodelay(true);
                state
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let state = state.clone();
                let token = token.clone();
                let tls = tls.clone();
                sessions.spawn(async move {
                    let run = async {
                        match tls {
                            Some(t) if t.mode == SinkTls::Implicit => {
                                let Ok(secure) = t.acceptor.accept(socket).await else {
                                    return;
                                };
                                let _ = session(Box::new(secure), state, None, true).await;
                            }
                            other => {
                                let _ = session(Box::new(socket), state, other, false).await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = run => {}
                    }
                });
            }
        });
    }

    pub fn url(&self) -> String {
        match self.tls.as_ref().map(|t| t.mode) {
            None => format!("smtp://127.0.0.1:{}", self.port),
            Some(SinkTls::StartTls) => format!("smtp://127.0.0.1:{}?tls=required", self.port),
            Some(SinkTls::Implicit) => format!("smtps://127.0.0.1:{}", self.port),
        }
    }

    /// Closes the port and every open connection, and returns once they
    /// are gone: no message is accepted after it, and clients get
    /// "connection refused" until [`SmtpSink::up`].
    pub async fn down(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((token, tracker)) = running {
            token.cancel();
            tracker.close();
            tracker.wait().await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding SMTP sink: {e}"),
            }
        };
        self.serve(listener);
    }

    pub fn set_tempfail(&self, on: bool) {
        *self.state.tempfail.lock().unwrap() = on;
    }

    pub fn reject_mailbox(&self, address: &str) {
        self.state
            .rejected
            .lock()
            .unwrap()
            .insert(address.to_ascii_lowercase());
    }

    /// Stops refusing a mailbox.
    pub fn accept_mailbox(&self, address: &str) {
        self.state
            .rejected
            .lock()
            .unwrap()
            .remove(&address.to_ascii_lowercase());
    }

    /// Every recipient refused with 550 so far (one entry per attempt).
    pub fn refusals(&self) -> Vec<String> {
        self.state.refusals.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.state.mails.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.mails.lock().unwrap().len()
    }

    /// The messages that arrived after the first `skip`, in order (cheap to
    /// poll when many have arrived).
    pub fn mails_after(&self, skip: usize) -> Vec<Mail> {
        let mails = self.state.mails.lock().unwrap();
        mails.iter().skip(skip).cloned().collect()
    }

    /// Waits until at least `n` messages have arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} email(s) at the SMTP server within {timeout:?}, got {}",
                    self.count()
                );
            }
        }
    }
}

impl SmtpSink {
    /// The messages to `to` whose subject or body holds `needle`.
    pub fn mails_to(&self, to: &str, needle: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .filter(|m| m.subject().contains(needle) || m.body().contains(needle))
            .collect()
    }

    /// Waits for the first message to `to` whose subject or body holds
    /// `needle`.
    pub async fn wait_for_mail_to(&self, to: &str, needle: &str, timeout: Duration) -> Mail {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            if let Some(m) = self.mails_to(to, needle).into_iter().next() {
                return m;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no mail to {to} with {needle:?} within {timeout:?}; mails: {:#?}",
                    self.mails()
                        .iter()
                        .map(|m| (m.to.clone(), m.subject()))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some((token, _)) = self.running.lock().unwrap().take() {
            token.cancel();
        }
    }
}

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One client's conversation. `starttls` is the certificate to offer with
/// STARTTLS (not yet upgraded); `encrypted` whether the stream already is.
fn session(
    socket: Box<dyn Io>,
    state: Arc<State>,
    starttls: Option<Arc<Tls>>,
    encrypted: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> {
    Box::pin(async move {
        let mut lines = BufReader::new(socket);
        // After STARTTLS the client says EHLO again and no greeting comes.
        if !encrypted || starttls.is_none() {
            lines.write_all(b"220 sink.test ESMTP ready\r\n").await?;
        }
        let mut from = String::new();
        let mut to: Vec<String> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                if starttls.is_some() && !encrypted {
                    b"250-sink.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n"
                } else {
                    b"250-sink.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"
                }
            } else if upper == "STARTTLS" && !encrypted && starttls.is_some() {
                lines.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                let tls = starttls.clone().expect("checked above");
                let secure = tls.acceptor.accept(lines.into_inner()).await?;
                return session(Box::new(secure), state, Some(tls), true).await;
            } else if upper.starts_with("HELO") {
                b"250 sink.test\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                if *state.tempfail.lock().unwrap() {
                    b"451 4.3.0 try again later\r\n"
                } else {
                    from = addr(&cmd[10..]);
                    to.clear();
                    b"250 2.1.0 ok\r\n"
                }
            } else if upper.starts_with("RCPT TO:") {
                let a = addr(&cmd[8..]);
                if state
                    .rejected
                    .lock()
                    .unwrap()
                    .contains(&a.to_ascii_lowercase())
                {
                    state.refusals.lock().unwrap().push(a.to_ascii_lowercase());
                    b"550 5.1.1 no such mailbox\r\n"
                } else {
                    to.push(a);
                    b"250 2.1.5 ok\r\n"
                }
            } else if upper == "DATA" {
                lines.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let l = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(l);
                }
                let data = data.strip_suffix("\r\n").unwrap_or(&data).to_string();
                state.mails.lock().unwrap().push(Mail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                    at: std::time::Instant::now(),
                    encrypted,
                });
                state.arrived.notify_waiters();
                b"250 2.0.0 queued\r\n"
            } else if upper == "RSET" {
                to.clear();
                b"250 2.0.0 ok\r\n"
            } else if upper == "NOOP" {
                b"250 2.0.0 ok\r\n"
            } else if upper == "QUIT" {
                lines.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            } else {
                b"502 5.5.2 command not recognised\r\n"
            };
            lines.write_all(reply).await?;
        }
    })
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let inner = s
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .map(|(a, _)| a)
        .unwrap_or(s);
    inner.to_string()
}
