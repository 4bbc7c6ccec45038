//! Intake's gRPC API as a calling system reaches it: with an API key in
//! `authorization: Bearer <key>` (or deliberately without), over plain
//! HTTP/2 or over TLS trusting a certificate authority made for the test.

use std::fmt::Display;

use herald_proto::v1::intake_client::IntakeClient;
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig},
};

use crate::system::GRPC_KEY;

/// An Intake client that puts its key, if it has one, on every call.
pub type Client = IntakeClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>` to each request.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Bearer {
    pub fn new(key: Option<&str>) -> Bearer {
        Bearer(key.map(|k| {
            MetadataValue::try_from(format!("Bearer {k}")).expect("a key is printable ASCII")
        }))
    }
}

/// The test system's own client: the `grpc-client` system with its key
/// ([`GRPC_KEY`]), over plain HTTP/2.
pub async fn client(addr: impl Display) -> Client {
    client_with_key(addr, Some(GRPC_KEY)).await
}

/// A plain HTTP/2 client sending `key` (`None`: no `authorization` at all).
pub async fn client_with_key(addr: impl Display, key: Option<&str>) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a gRPC address")
        .connect()
        .await
        .expect("intake's gRPC listener accepts a connection");
    IntakeClient::with_interceptor(channel, Bearer::new(key))
}

/// A client over TLS that trusts only `ca_pem` and expects the server to
/// prove the name `domain`, sending [`GRPC_KEY`].
pub async fn tls_client(
    addr: impl Display,
    ca_pem: &str,
    domain: &str,
) -> Result<Client, tonic::transport::Error> {
    herald_runtime::install_crypto();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(domain);
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("a gRPC address")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(IntakeClient::with_interceptor(
        channel,
        Bearer::new(Some(GRPC_KEY)),
    ))
}

/// A certificate authority made for one test, and a server certificate it
/// signed for `localhost` and 127.0.0.1, all as PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Herald test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("a server key");
        let server_cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server parameters")
            .signed_by(&server_key, &issuer)
            .expect("a server certificate");
        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
