//! Cancel keys: how a caller stops a notification that is already on its
//! way. A request names keys (`NotificationRequest.cancel_keys`); the router
//! copies them onto every job; delivery looks them up after claiming a job
//! and before handing it to a provider, and drops the job if any is
//! cancelled. Escalation gives each escalation of a case its own key, so an
//! acknowledgement stops every level and client notice still pending, not
//! only the timers.
//!
//! A cancelled key is `<prefix>cancel:<key>` holding the reason, kept for
//! `TTL` (well past any job's total time limit).

use std::time::Duration;

use redis::aio::ConnectionManager;

/// Keys one request may carry.
pub const MAX_KEYS: usize = 8;
/// How long a cancellation is remembered.
pub const TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// Whether `key` can be a cancel key: the same alphabet as a subject token,
/// so it never needs escaping in Redis or in the trail.
pub fn check_key(key: &str) -> Result<(), String> {
    if herald_proto::subjects::is_subject_token(key) {
        Ok(())
    } else {
        Err("must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)".into())
    }
}

#[derive(Clone)]
pub struct Cancellations {
    redis: ConnectionManager,
    prefix: String,
}

impl Cancellations {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Cancellations {
        Cancellations {
            redis,
            prefix: format!("{prefix}cancel:"),
        }
    }

    /// Cancels `key`. True the first time, false if it already was (the
    /// first reason is kept).
    pub async fn cancel(&self, key: &str, reason: &str) -> redis::RedisResult<bool> {
        let mut c = self.redis.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(reason)
            .arg("NX")
            .arg("EX")
            .arg(TTL.as_secs())
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// The first of `keys` that is cancelled, with its reason.
    pub async fn first_cancelled(
        &self,
        keys: &[String],
    ) -> redis::RedisResult<Option<(String, String)>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let mut c = self.redis.clone();
        let full: Vec<String> = keys.iter().map(|k| format!("{}{k}", self.prefix)).collect();
        // MGET spelled out: the typed helper sends GET for a single key,
        // whose reply does not decode as a list.
        let reasons: Vec<Option<String>> =
            redis::cmd("MGET").arg(&full).query_async(&mut c).await?;
        Ok(keys
            .iter()
            .zip(reasons)
            .find_map(|(k, r)| r.map(|r| (k.clone(), r))))
    }
}
