//! Coordination that survives a restart, kept in Redis by the service that
//! owns it: durable timers (response-time clocks, escalation timeouts,
//! call-back cycles) and the cancel-key store delivery checks before a send.

pub mod cancel;
pub mod timers;
