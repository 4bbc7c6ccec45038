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

    /// Adds or replaces `record` after checking it, with its id in the
    /// index, in one atomic step.
    pub(crate) async fn put(&self, record: &T) -> Result<(), DirectoryError> {
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

    /// Writes what `change` makes of the stored record `id` (`None` when
    /// there is none), with its id in the index, only if nobody wrote the
    /// record meanwhile (compared as stored), reading again if somebody
    /// did: two writers to the same record both land. `change` answers
    /// `None` to leave the record as it is. The record before and the one
    /// written (`None` if nothing was).
    pub(crate) async fn swap(
        &self,
        id: &str,
        mut change: impl FnMut(Option<T>) -> Option<T>,
    ) -> Result<(Option<T>, Option<T>), DirectoryError>
    where
        T: Clone,
    {
        const SWAP: &str = r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '1' then
  if cur ~= ARGV[1] then return 0 end
elseif cur then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return 1
"#;
        let key = self.key(id);
        let script = redis::Script::new(SWAP);
        for _ in 0..UPDATE_TRIES {
            let mut r = self.redis.clone();
            let stored: Option<String> = r.get(&key).await?;
            // A value that no longer decodes reads as no record, as
            // everywhere else, and is replaced.
            let old: Option<T> = stored.as_deref().and_then(|j| serde_json::from_str(j).ok());
            let Some(record) = change(old.clone()) else {
                return Ok((old, None));
            };
            if let Some((field, reason)) = record.problems().into_iter().next() {
                return Err(DirectoryError::Invalid {
                    id: record.id().to_string(),
                    field,
                    reason,
                });
            }
            let json = serde_json::to_string(&record)?;
            let swapped: i64 = script
                .key(&key)
                .key(self.index())
                .arg(stored.as_deref().unwrap_or_default())
                .arg(&json)
                .arg(if stored.is_some() { "1" } else { "0" })
                .arg(id)
                .invoke_async(&mut r)
                .await?;
            if swapped == 1 {
                return Ok((old, Some(record)));
            }
        }
        Err(DirectoryError::File(format!(
            "{id}: changed by others {UPDATE_TRIES} times while this change was made; try again"
        )))
    }

    /// Changes the stored record `id` with `change` ([`JsonRecords::swap`]);
    /// `change` answers false to leave it as it is. The record as it now
    /// stands and whether `change` changed it, or `None` if there is none.
    pub(crate) async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut T) -> bool,
    ) -> Result<Option<(T, bool)>, DirectoryError>
    where
        T: Clone,
    {
        let (old, new) = self
            .swap(id, |old| {
                let mut record = old?;
                change(&mut record).then_some(record)
            })
            .await?;
        Ok(match new {
            Some(record) => Some((record, true)),
            None => old.map(|record| (record, false)),
        })
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

/// How often [`JsonRecords::update`] reads again after losing a race.
const UPDATE_TRIES: usize = 16;

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
