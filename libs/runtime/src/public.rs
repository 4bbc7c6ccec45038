//! A service's public endpoints (provider callbacks, confirmation links)
//! on a listener of their own, served over TLS when a certificate is
//! configured, apart from health and metrics, which stay open and plain on
//! the service's HTTP port for probes and scrapers.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::Router;
use herald_config::PublicListener;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The TLS configuration a listener serves with, read from PEM files.
pub fn tls_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the private key from {}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds `addr` and serves `routes` there until `shutdown`: over TLS
/// when the listener has a certificate, else plain.
pub async fn serve(
    addr: &str,
    listener: &PublicListener,
    routes: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let tls = match (&listener.tls_cert_file, &listener.tls_key_file) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
            cert, key,
        )?))),
        _ => None,
    };
    let socket = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the public listener {addr}"))?;
    let bound = socket.local_addr()?;
    let task = match tls {
        None => tokio::spawn(async move {
            let _ = axum::serve(socket, routes)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        }),
        Some(acceptor) => tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = socket.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            debug!(error = %e, "accepting a public connection failed");
                            continue;
                        }
                    },
                };
                let (acceptor, routes) = (acceptor.clone(), routes.clone());
                tokio::spawn(async move {
                    // A client that cannot finish the handshake (plain
                    // text, an unknown CA) is simply not served.
                    let stream = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let served = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(routes))
                        .await;
                    if let Err(e) = served {
                        debug!(%peer, error = %e, "public connection ended with an error");
                    }
                });
            }
        }),
    };
    Ok((bound, task))
}

/// The small HTML page a link in a message opens: a title, a sentence and,
/// with `button`, a form that posts back to the same address (opening a
/// link must change nothing, since mail scanners open links before people
/// do). Every text is escaped.
pub fn link_page(
    code: axum::http::StatusCode,
    title: &str,
    text: &str,
    button: Option<&str>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let escape = herald_content::twiml::xml_escape;
    let form = button
        .map(|label| {
            format!(
                "<form method=\"post\"><button type=\"submit\">{}</button></form>",
                escape(label)
            )
        })
        .unwrap_or_default();
    let (title, text) = (escape(title), escape(text));
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p>{form}</body></html>\n"
    );
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// A TwiML answer to a voice provider's callback, read out to the caller.
pub fn say(twiml: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/xml")],
        twiml,
    )
        .into_response()
}
