//! Records kept as one JSON value per key with a set of their ids
//! (contacts, groups): checked before they are written, written with
//! their index in one atomic step, read in as few round trips as possible.

use std::marker::PhantomData;

use redis::{AsyncCommands, Pipeline, aio::ConnectionManager};
use serde::{Serialize, de::DeserializeOwned};

use crate::{contacts::DirectoryError, listfile::Record};

/// The records of one kind (`contact`, `group`) under a keyspace prefix:
/// `<prefix><kind>:<id>` and the set `<prefix><index>` of every id.
#[derive(Clone)]
pub(crate) struct JsonRecords<T> {
    redis: ConnectionManager,
    prefix: String,
    kind: &'static str,
    index: &'static str,
    _records: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Record> JsonRecords<T> {
    pub(crate) fn new(
        redis: ConnectionManager,
        prefix: String,
        kind: &'static str,
        index: &'static str,
    ) -> JsonRecords<T> {
        JsonRecords {
            redis,
            prefix,
            kind,
            index,
            _records: PhantomData,
        }
    }

    pub(crate) fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// A key beside the records, in the same keyspace (an index).
    pub(crate) fn key_of(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn key(&self, id: &str) -> String {
        format!("{}{}:{id}", self.prefix, self.kind)
    }

    fn index(&self) -> String {
        self.key_of(self.index)
    }

    /// Adds or replaces `record` after checking it, with whatever else
    /// `more` adds to the same atomic step.
    pub(crate) async fn put_with(
        &self,
        record: &T,
        more: impl FnOnce(&mut Pipeline),
    ) -> Result<(), DirectoryError> {
        if let Some((field, reason)) = record.problems().into_iter().next() {
            return Err(DirectoryError::Invalid {
                id: record.id().to_string(),
                field,
                reason,
            });
        }
        let json = serde_json::to_string(record)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(self.key(record.id()), json)
            .sadd(self.index(), record.id());
        more(&mut pipe);
        let mut r = self.redis.clone();
        pipe.exec_async(&mut r).await?;
        Ok(())
    }

    /// Removes a record (and whatever `more` adds to the same step). True
    /// if there was one.
    pub(crate) async fn remove_with(
        &self,
        id: &str,
        more: impl FnOnce(&mut Pipeline),
    ) -> Result<bool, DirectoryError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.key(id))
            .srem(self.index(), id)
            .ignore();
        more(&mut pipe);
        let mut r = self.redis.clone();
        let (n,): (i64,) = pipe.query_async(&mut r).await?;
        Ok(n > 0)
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<T>, DirectoryError> {
        Ok(self.get_many(&[id.to_string()]).await?.pop().flatten())
    }

    /// The records with these ids, in one round trip; `None` where an id
    /// is unknown (or its value no longer decodes).
    pub(crate) async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<T>>, DirectoryError> {
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        Ok(get_json(&self.redis, &keys).await?)
    }

    /// Every id, sorted.
    pub(crate) async fn ids(&self) -> Result<Vec<String>, DirectoryError> {
        Ok(sorted_members(&self.redis, &self.index()).await?)
    }
}

/// The values at `keys`, in one round trip; `None` where a key is absent
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
