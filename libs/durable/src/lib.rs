//! Coordination that survives a restart: durable timers kept in Redis by
//! the service they belong to (response-time clocks, escalation timeouts,
//! call-back cycles), and asking delivery, which keeps the cancel keys, to
//! stop sends.

pub mod stop;
pub mod timers;
