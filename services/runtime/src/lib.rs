//! What every Herald service stands on. Services share this crate and
//! `herald-proto`, and never import each other.

pub mod audit;
pub mod broadcasts;
pub mod bus;
pub mod calendar;
pub mod cancel;
pub mod clock;
pub mod config;
pub mod contacts;
pub mod coordinators;
pub mod groups;
pub mod health;
pub mod ids;
mod listfile;
pub mod metrics;
pub mod pii;
pub mod priority;
pub mod query;
mod records;
pub mod routing;
pub mod service;
pub mod shutdown;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod timers;
pub mod validate;

pub use config::Config;

/// Installs the process-wide TLS crypto provider (rustls with ring) that
/// reqwest and lettre use. Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
