//! The deployment's own certificate authority and the server certificate
//! it signs, made once: clients trust the authority (`nats.tls_ca_file`)
//! and check the server's name against the certificate.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::{Layout, SetupError, files::write_private};

/// Makes the authority and the server certificate unless both are there.
/// The server certificate is valid for `localhost`, `127.0.0.1`, `::1`
/// and `names`.
pub(crate) fn ensure(layout: &Layout, names: &[String]) -> Result<(), SetupError> {
    if layout.tls_ca().is_file() && layout.tls_cert().is_file() && layout.tls_key().is_file() {
        return Ok(());
    }
    let tls = |e: rcgen::Error| SetupError::Io(format!("making the TLS certificates: {e}"));
    let ca_key = KeyPair::generate().map_err(tls)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Herald deployment CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    sans.extend(names.iter().cloned());
    let server_key = KeyPair::generate().map_err(tls)?;
    let mut server = CertificateParams::new(sans).map_err(tls)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "Herald NATS server");
    let server_cert = server.signed_by(&server_key, &issuer).map_err(tls)?;

    write_private(&layout.tls_key(), &server_key.serialize_pem())?;
    write_private(&layout.tls_cert(), &server_cert.pem())?;
    write_private(&layout.tls_ca(), &ca_cert.pem())
}
