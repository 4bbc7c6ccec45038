//! The floor every Herald service stands on: telemetry, the NATS bus,
//! emergency precedence, health and metrics plumbing, Redis connections,
//! the clock, the audit trail writer, retries, request serving, shutdown,
//! the templates kept current from the approved-templates stream, and the
//! service builder that wires them together. The configuration it reads is
//! `herald-config`'s; no domain type lives here.

pub mod audit;
pub mod bus;
pub mod clock;
pub mod erase;
pub mod health;
pub mod metrics;
pub mod pii;
pub mod priority;
pub mod public;
pub mod query;
pub mod retry;
pub mod sentinel;
pub mod serve;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod trail_export;

/// Installs the process-wide TLS crypto provider (rustls with ring) that
/// reqwest and lettre use. Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
