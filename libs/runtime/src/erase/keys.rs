//! Removing a person from one's own Redis keyspace, and from nothing else.
//! Every key under the keyspace's prefix is looked at (`SCAN MATCH
//! <prefix>*`, so nothing of another service's is read), and what names
//! the person goes: a key
//! whose name names them, a string value naming them, and the members,
//! fields and elements of sets, sorted sets, hashes and lists that name
//! them (the rest of the key stays, so a broadcast keeps its other
//! recipients).
//!
//! Scanning the keyspace rather than keeping an index per person means
//! nothing has to be written at send time for a rare act, and no key can
//! be missed because its writer forgot the index; it costs one pass over
//! the service's keys per erasure.

use redis::{AsyncCommands, aio::ConnectionManager};

use super::Person;

/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 500;

/// Removes what names `person` under `prefix`; returns how many keys,
/// members, fields and elements went.
pub async fn erase(
    redis: &ConnectionManager,
    prefix: &str,
    person: &Person,
) -> redis::RedisResult<u64> {
    if person.is_empty() {
        return Ok(0);
    }
    let mut r = redis.clone();
    let pattern = format!("{}*", escape_glob(prefix));
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut r)
            .await?;
        for key in keys {
            removed += erase_key(&mut r, &key, person).await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

async fn erase_key(
    r: &mut ConnectionManager,
    key: &str,
    person: &Person,
) -> redis::RedisResult<u64> {
    if person.named_in(key.as_bytes()) {
        let n: u64 = r.del(key).await?;
        return Ok(n);
    }
    let kind: String = redis::cmd("TYPE").arg(key).query_async(r).await?;
    let named = |v: &Vec<u8>| person.named_in(v);
    Ok(match kind.as_str() {
        "string" => {
            let v: Option<Vec<u8>> = r.get(key).await?;
            if v.as_ref().is_some_and(named) {
                r.del::<_, u64>(key).await?
            } else {
                0
            }
        }
        "hash" => {
            let h: Vec<(Vec<u8>, Vec<u8>)> = r.hgetall(key).await?;
            let fields: Vec<Vec<u8>> = h
                .into_iter()
                .filter(|(f, v)| named(f) || named(v))
                .map(|(f, _)| f)
                .collect();
            if fields.is_empty() {
                0
            } else {
                r.hdel::<_, _, u64>(key, fields).await?
            }
        }
        "set" => {
            let m: Vec<Vec<u8>> = r.smembers(key).await?;
            let gone: Vec<Vec<u8>> = m.into_iter().filter(named).collect();
            if gone.is_empty() {
                0
            } else {
                r.srem::<_, _, u64>(key, gone).await?
            }
        }
        "zset" => {
            let m: Vec<Vec<u8>> = r.zrange(key, 0, -1).await?;
            let gone: Vec<Vec<u8>> = m.into_iter().filter(named).collect();
            if gone.is_empty() {
                0
            } else {
                r.zrem::<_, _, u64>(key, gone).await?
            }
        }
        "list" => {
            let m: Vec<Vec<u8>> = r.lrange(key, 0, -1).await?;
            let mut n = 0;
            for v in m.iter().filter(|v| named(v)) {
                n += r.lrem::<_, _, u64>(key, 0, v).await?;
            }
            n
        }
        // A key gone meanwhile, or a kind Herald does not write.
        _ => 0,
    })
}

/// `prefix` with the glob characters `SCAN MATCH` would read escaped.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_is_matched_literally() {
        assert_eq!(super::escape_glob("herald:delivery:"), "herald:delivery:");
        assert_eq!(super::escape_glob("h[1]*:"), "h\\[1\\]\\*:");
    }
}
