//! Reading records kept as one JSON value per key with a set of their ids
//! (contacts, groups), in as few round trips as possible.

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::de::DeserializeOwned;

/// The records at `keys`, in one round trip; `None` where a key is absent
/// (or no longer decodes).
pub(crate) async fn get_json<T: DeserializeOwned>(
    redis: &ConnectionManager,
    keys: &[String],
) -> redis::RedisResult<Vec<Option<T>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = redis.clone();
    // MGET spelled out: the typed helper sends GET for a single key, whose
    // reply does not decode as a list.
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut r).await?;
    Ok(values
        .into_iter()
        .map(|v| v.and_then(|json| serde_json::from_str(&json).ok()))
        .collect())
}

/// The members of a set, sorted.
pub(crate) async fn sorted_members(
    redis: &ConnectionManager,
    set: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut r = redis.clone();
    let mut ids: Vec<String> = r.smembers(set).await?;
    ids.sort();
    Ok(ids)
}
