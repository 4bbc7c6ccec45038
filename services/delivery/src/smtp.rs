//! SMTP connections, pooled, with Nagle's algorithm off.
//!
//! lettre writes a message's content and its closing `<CRLF>.<CRLF>` as two
//! writes and then waits for the server's reply. On a socket with Nagle's
//! algorithm on, the second write waits for the first to be acknowledged,
//! and a server that has nothing to say until the message is complete
//! delays that acknowledgement (40 ms on Linux): every email would cost a
//! stall, capping a connection at about twenty messages a second. lettre's
//! own pool opens its sockets without `TCP_NODELAY`, so Herald opens them
//! itself and hands them to lettre's connection, and keeps them here.
//!
//! The URL forms are lettre's: `smtp://host:port` (plain),
//! `smtp://host:port?tls=required` or `?tls=opportunistic` (STARTTLS),
//! `smtps://host:port` (TLS from the start), optionally with
//! `user:password@` and a `/hello-name` path.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use lettre::{
    address::Envelope,
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters},
        extension::ClientId,
    },
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Semaphore,
};

/// Why a send failed: the server's reply or lettre's protocol error, or a
/// failure to reach the server at all.
#[derive(Debug)]
pub enum SmtpError {
    Smtp(lettre::transport::smtp::Error),
    /// Connecting, or the TLS handshake of `smtps`.
    Connect(String),
    /// The connection has to be encrypted and the server does not offer
    /// STARTTLS: nothing was sent.
    NoStartTls,
}

impl fmt::Display for SmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpError::Smtp(e) => write!(f, "{e}"),
            SmtpError::Connect(e) => write!(f, "connection failed: {e}"),
            SmtpError::NoStartTls => f.write_str(
                "the server does not offer STARTTLS, and the message may only go encrypted",
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Security {
    Plain,
    /// STARTTLS; `required` refuses a server that does not offer it.
    StartTls {
        required: bool,
    },
    /// TLS from the first byte (`smtps`).
    Wrapper,
}

/// Where and how to connect, from the URL.
#[derive(Clone)]
struct Server {
    host: String,
    port: u16,
    security: Security,
    hello: ClientId,
    credentials: Option<Credentials>,
}

impl Server {
    fn parse(url: &str) -> anyhow::Result<Server> {
        let u = reqwest::Url::parse(url)?;
        let host = u
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("no host in the URL"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let tls = u
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_string());
        let (security, default_port) = match (u.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls { required: true }, 587),
            ("smtp", Some("opportunistic")) => (Security::StartTls { required: false }, 587),
            ("smtps", None) => (Security::Wrapper, 465),
            (scheme, tls) => anyhow::bail!(
                "scheme {scheme:?} with tls={tls:?}: expected smtp://, smtp://…?tls=required, smtp://…?tls=opportunistic or smtps://"
            ),
        };
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| anyhow::anyhow!("the user or password is not UTF-8"))
        };
        let credentials = match u.password() {
            Some(p) => Some(Credentials::new(decode(u.username())?, decode(p)?)),
            None => None,
        };
        let path = u.path().trim_matches('/');
        Ok(Server {
            port: u.port().unwrap_or(default_port),
            security,
            hello: if path.is_empty() {
                ClientId::default()
            } else {
                ClientId::Domain(path.to_string())
            },
            credentials,
            host,
        })
    }
}

/// `%xx` escapes in a URL's user or password.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// Up to `max_size` open connections to one server, reused while fresh.
#[derive(Clone)]
pub struct SmtpPool {
    server: Arc<Server>,
    timeout: Duration,
    idle_timeout: Duration,
    slots: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<Idle>>>,
    /// `smtps`: the handshake made before the greeting.
    wrapper: Option<tokio_rustls::TlsConnector>,
    /// STARTTLS: what lettre upgrades the connection with.
    starttls: Option<TlsParameters>,
}

/// A connection unused for longer than this is checked with NOOP before it
/// carries a message: the server may have closed it meanwhile.
const CHECK_AFTER: Duration = Duration::from_secs(2);

impl SmtpPool {
    /// A pool for the server at `url`. TLS trusts the public web roots,
    /// and also the certificates in `extra_roots_pem` (a private relay's
    /// own authority). With `encrypted`, it sends only encrypted: a plain
    /// or opportunistic URL is upgraded to STARTTLS required, on the same
    /// port.
    pub fn new(
        url: &str,
        encrypted: bool,
        max_size: u32,
        timeout: Duration,
        idle_timeout: Duration,
        extra_roots_pem: Option<&[u8]>,
    ) -> anyhow::Result<SmtpPool> {
        let mut server = Server::parse(url)?;
        if encrypted && server.security != Security::Wrapper {
            server.security = Security::StartTls { required: true };
        }
        Self::build(server, max_size, timeout, idle_timeout, extra_roots_pem)
    }

    /// Whether every message of this pool travels encrypted (STARTTLS
    /// required, or TLS from the first byte).
    pub fn encrypted(&self) -> bool {
        matches!(
            self.server.security,
            Security::Wrapper | Security::StartTls { required: true }
        )
    }

    fn build(
        server: Server,
        max_size: u32,
        timeout: Duration,
        idle_timeout: Duration,
        extra_roots_pem: Option<&[u8]>,
    ) -> anyhow::Result<SmtpPool> {
        let extra: Vec<rustls::pki_types::CertificateDer<'static>> = match extra_roots_pem {
            None => Vec::new(),
            Some(pem) => {
                use rustls::pki_types::pem::PemObject;
                let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("certificates: {e}"))?;
                anyhow::ensure!(!certs.is_empty(), "certificates: none in the file");
                certs
            }
        };
        let wrapper = if server.security == Security::Wrapper {
            let mut roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for c in &extra {
                roots.add(c.clone())?;
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        let starttls = if let Security::StartTls { .. } = server.security {
            let mut builder = TlsParameters::builder(server.host.clone());
            for c in &extra {
                builder = builder.add_root_certificate(Certificate::from_der(c.to_vec())?);
            }
            Some(builder.build_rustls()?)
        } else {
            None
        };
        Ok(SmtpPool {
            server: Arc::new(server),
            timeout,
            idle_timeout,
            slots: Arc::new(Semaphore::new(max_size.max(1) as usize)),
            idle: Arc::new(Mutex::new(Vec::new())),
            wrapper,
            starttls,
        })
    }

    /// Sends one message: the envelope's sender and recipients, then the
    /// formatted message. A connection that fails is closed, never reused.
    pub async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<(), SmtpError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SmtpError::Connect("the pool is closed".into()))?;
        let mut conn = match self.reuse().await {
            Some(c) => c,
            None => self.connect().await?,
        };
        match conn.send(envelope, email).await {
            Ok(_) => {
                self.put_back(conn);
                Ok(())
            }
            Err(e) => {
                conn.abort().await;
                Err(SmtpError::Smtp(e))
            }
        }
    }

    /// The most recently used idle connection that is still fresh and
    /// answers, closing the stale ones found on the way.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            let age = idle.since.elapsed();
            let mut conn = idle.conn;
            if age > self.idle_timeout || conn.has_broken() {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.quit()).await;
                continue;
            }
            if age > CHECK_AFTER
                && !tokio::time::timeout(self.timeout, conn.test_connected())
                    .await
                    .unwrap_or(false)
            {
                conn.abort().await;
                continue;
            }
            return Some(conn);
        }
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Idle {
                conn,
                since: Instant::now(),
            });
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let s = &self.server;
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((s.host.as_str(), s.port)))
            .await
            .map_err(|_| SmtpError::Connect(format!("no connection within {:?}", self.timeout)))?
            .map_err(|e| SmtpError::Connect(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| SmtpError::Connect(e.to_string()))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.wrapper {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(s.host.clone())
                    .map_err(|e| SmtpError::Connect(format!("server name: {e}")))?;
                let stream = tokio::time::timeout(self.timeout, tls.connect(name, tcp))
                    .await
                    .map_err(|_| SmtpError::Connect("TLS handshake timed out".into()))?
                    .map_err(|e| SmtpError::Connect(format!("TLS handshake: {e}")))?;
                Box::new(Tls(stream))
            }
            None => Box::new(tcp),
        };
        let setup = async {
            let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &s.hello).await?;
            if let (Security::StartTls { required }, Some(tls)) = (s.security, &self.starttls) {
                if conn.can_starttls() {
                    conn.starttls(tls.clone(), &s.hello).await?;
                } else if required {
                    conn.abort().await;
                    return Ok(Err(SmtpError::NoStartTls));
                }
            }
            if let Some(credentials) = &s.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await?;
            }
            Ok(Ok(conn))
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(SmtpError::Smtp(e)),
            Err(_) => Err(SmtpError::Connect(format!(
                "no greeting within {:?}",
                self.timeout
            ))),
        }
    }
}

/// A TLS stream as lettre's connection takes it.
struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_as_lettre_reads_them() {
        let s = Server::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((s.port, s.security), (2525, Security::Plain));
        let s = Server::parse("smtp://mail.example.org?tls=required").unwrap();
        assert_eq!(
            (s.port, s.security),
            (587, Security::StartTls { required: true })
        );
        let s = Server::parse("smtps://u%40x:p%20w@mail.example.org/herald.example.org").unwrap();
        assert_eq!((s.port, s.security), (465, Security::Wrapper));
        assert_eq!(s.hello, ClientId::Domain("herald.example.org".into()));
        assert!(s.credentials.is_some());
        for bad in ["http://x", "smtp://x?tls=sometimes", "smtp://"] {
            assert!(Server::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes_in_credentials_are_decoded() {
        assert_eq!(percent_decode("u%40x").as_deref(), Some("u@x"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%zz"), None);
    }
}
