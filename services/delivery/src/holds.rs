//! Holds: a data breach's containment (SOP 003 §8, "contain the breach and
//! prevent further exposure"). While a breach holds a contact, no job with
//! sensitive content goes to them: it waits in its stream, coming back now
//! and then, and is sent once the Data Protection Officer releases every
//! hold on that contact. Other content flows as before.
//!
//! Keys, in delivery's keyspace: `hold:<contact>` (the ids holding the
//! contact), `hold-of:<id>` (the contacts an id holds) and
//! `hold-released:<id>` (a release, kept so that a late copy of the
//! holding, replayed from the stops stream, holds nothing). Holding and
//! releasing are each one script, so neither can interleave with the
//! other. Holds do not expire: only a release ends them.

use redis::{Script, aio::ConnectionManager};

use crate::cancel::TTL;

/// KEYS[1] released marker, KEYS[2] the id's contacts, KEYS[3..] each
/// contact's holds. ARGV[1] the id, ARGV[2..] the contacts.
const HOLD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[i - 1])
end
return 1
"#;

/// KEYS[1] released marker, KEYS[2] the id's contacts. ARGV[1] the id,
/// ARGV[2] the contact key prefix, ARGV[3] the marker's lifetime in s.
/// Returns how many contacts it released.
const RELEASE: &str = r#"
redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
local contacts = redis.call('SMEMBERS', KEYS[2])
for _, c in ipairs(contacts) do
  redis.call('SREM', ARGV[2] .. c, ARGV[1])
end
redis.call('DEL', KEYS[2])
return #contacts
"#;

#[derive(Clone)]
pub struct Holds {
    redis: ConnectionManager,
    prefix: String,
}

impl Holds {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Holds {
        Holds {
            redis,
            prefix: herald_proto::keyspace::DELIVERY.prefix(prefix),
        }
    }

    fn contact_prefix(&self) -> String {
        format!("{}hold:", self.prefix)
    }

    fn of_key(&self, id: &str) -> String {
        format!("{}hold-of:{id}", self.prefix)
    }

    fn released_key(&self, id: &str) -> String {
        format!("{}hold-released:{id}", self.prefix)
    }

    /// Holds `contacts` under `id`, unless `id` was already released. True
    /// if it holds them now.
    pub async fn hold(&self, id: &str, contacts: &[String]) -> redis::RedisResult<bool> {
        let script = Script::new(HOLD);
        let mut call = script.key(self.released_key(id));
        call.key(self.of_key(id)).arg(id);
        for c in contacts {
            call.key(format!("{}{c}", self.contact_prefix())).arg(c);
        }
        let mut r = self.redis.clone();
        let held: i64 = call.invoke_async(&mut r).await?;
        Ok(held == 1)
    }

    /// Releases everything `id` holds; how many contacts it held.
    pub async fn release(&self, id: &str) -> redis::RedisResult<u64> {
        let mut r = self.redis.clone();
        Script::new(RELEASE)
            .key(self.released_key(id))
            .key(self.of_key(id))
            .arg(id)
            .arg(self.contact_prefix())
            .arg(TTL.as_secs())
            .invoke_async(&mut r)
            .await
    }

    /// The ids holding `contact`, sorted; empty when none does.
    pub async fn on(&self, contact: &str) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}{contact}", self.contact_prefix()))
            .query_async(&mut r)
            .await?;
        ids.sort();
        Ok(ids)
    }
}
