//! A service's part of an erasure, on `herald.v1.<service>.erase`: the
//! streams it owns ([`herald_proto::subjects::STREAMS`]) and the keyspaces
//! it owns ([`herald_proto::keyspace::ALL`]), nothing else, each reported
//! with what it removed. A store that fails is reported and the rest still
//! erased, so asking again finishes the job; a repeat removes nothing more.

use herald_proto::{
    Message, keyspace, subjects,
    v1::{ErasePartReply, ErasePerson, ErasedPart},
};
use redis::aio::ConnectionManager;
use tracing::{error, info};

use super::{Person, keys, streams};
use crate::bus::Bus;

/// Addresses a service derives from a person's, to find what it keeps
/// under them (hashes of a number, say).
pub type Derive = fn(&ErasePerson) -> Vec<String>;

/// What one service erases, and with which connections.
#[derive(Clone)]
pub struct Eraser {
    service: String,
    bus: Bus,
    redis: ConnectionManager,
    /// The deployment's key prefix (`redis.prefix`).
    deployment: String,
    derive: Option<Derive>,
}

impl Eraser {
    pub fn new(service: &str, bus: &Bus, redis: &ConnectionManager, deployment: &str) -> Eraser {
        Eraser {
            service: service.to_string(),
            bus: bus.clone(),
            redis: redis.clone(),
            deployment: deployment.to_string(),
            derive: None,
        }
    }

    /// Also looks for what `derive` makes of the person's addresses.
    pub fn deriving(mut self, derive: Derive) -> Eraser {
        self.derive = Some(derive);
        self
    }

    /// The person `req` names, with this service's derived addresses.
    pub fn person(&self, req: &ErasePerson) -> Person {
        let mut p = Person::from_request(req);
        for a in self.derive.map(|d| d(req)).unwrap_or_default() {
            p.add_address(&a);
        }
        p
    }

    /// Answers one request from intake.
    pub async fn answer(&self, payload: &[u8]) -> ErasePartReply {
        let req = match ErasePerson::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                return ErasePartReply {
                    parts: Vec::new(),
                    error: format!("not a herald.v1.ErasePerson: {e}"),
                };
            }
        };
        let person = self.person(&req);
        let (mut parts, stream_error) = self.erase_streams(&person, &mut streams::Nothing).await;
        let (key_parts, key_error) = self.erase_keys(&person, &[]).await;
        parts.extend(key_parts);
        let error = [stream_error, key_error]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        let removed: u64 = parts.iter().map(|p| p.removed).sum();
        info!(erasure = %req.erasure_id, removed, complete = error.is_empty(), "erasure part done");
        ErasePartReply { parts, error }
    }

    fn part(&self, store: String, removed: u64) -> ErasedPart {
        ErasedPart {
            service: self.service.clone(),
            store,
            removed,
            error: String::new(),
        }
    }

    /// Deletes the messages naming `person` from every stream this service
    /// owns that may name people ([`subjects::NAMES_NOBODY`] are left
    /// alone), each handed to `before` first ([`streams::erase`]): what each
    /// stream lost, and the first failure.
    pub async fn erase_streams(
        &self,
        person: &Person,
        before: &mut dyn streams::BeforeErase,
    ) -> (Vec<ErasedPart>, Option<String>) {
        let mut parts = Vec::new();
        let mut failure = None;
        for s in subjects::STREAMS
            .iter()
            .filter(|s| s.owner == self.service && s.may_name_people())
        {
            match streams::erase(&self.bus.js, s.stream, person, before).await {
                Ok(n) => parts.push(self.part(s.stream.to_string(), n)),
                Err(e) => {
                    error!(stream = s.stream, error = %e, "erasure of a stream failed");
                    failure.get_or_insert_with(|| format!("{}: {e}", s.stream));
                }
            }
        }
        (parts, failure)
    }

    /// Removes what names `person` from every keyspace this service owns,
    /// except those named in `skip` (erased by their own rules).
    pub async fn erase_keys(
        &self,
        person: &Person,
        skip: &[&str],
    ) -> (Vec<ErasedPart>, Option<String>) {
        let mut parts = Vec::new();
        let mut failure = None;
        for k in keyspace::ALL
            .iter()
            .filter(|k| k.owner == self.service && !skip.contains(&k.name))
        {
            match keys::erase(&self.redis, &k.prefix(&self.deployment), person).await {
                Ok(n) => parts.push(self.part(redis_store(k.name), n)),
                Err(e) => {
                    error!(keyspace = k.name, error = %e, "erasure of a keyspace failed");
                    failure.get_or_insert_with(|| format!("redis {}: {e}", k.name));
                }
            }
        }
        (parts, failure)
    }
}

/// How a keyspace is named as a store in an erasure's report.
pub fn redis_store(keyspace: &str) -> String {
    format!("redis:{keyspace}")
}
