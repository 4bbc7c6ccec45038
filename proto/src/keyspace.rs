//! Who keeps what in Redis. Every key Herald writes lies under
//! `<deployment prefix><keyspace>:`, and every keyspace has exactly one
//! owning service: the only one that writes it. A few services read the
//! directory, which intake keeps; nothing else is read by anyone but its
//! owner — others ask the owner over NATS. The Redis ACL of each service
//! is generated from this table, so a service that strays is refused.

/// One service's share of Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyspace {
    /// The key segment after the deployment prefix (`herald:delivery:…`).
    pub name: &'static str,
    /// The service that writes it.
    pub owner: &'static str,
    /// Services that may read it too.
    pub readers: &'static [&'static str],
    /// What it holds, for the README and operators.
    pub holds: &'static str,
}

impl Keyspace {
    /// The prefix of every key in this keyspace for a deployment whose
    /// keys start with `deployment` (`redis.prefix`, e.g. `herald:`).
    pub fn prefix(&self, deployment: &str) -> String {
        format!("{deployment}{}:", self.name)
    }
}

pub const DIRECTORY: Keyspace = Keyspace {
    name: "dir",
    owner: "intake",
    readers: &["router", "broadcast", "escalation"],
    holds: "contacts, recipient groups, and the organisation and role indexes",
};

pub const INTAKE: Keyspace = Keyspace {
    name: "intake",
    owner: "intake",
    readers: &[],
    holds: "idempotency keys, whether each case is open and the channel its client last wrote on, broadcast start claims, the case each integration's alert has, first contacts held for approval and the approvals given, the meetings about each case and each organiser's busy times, the trail's index by client and staff, the template versions proposed at run time and how each was decided, each client's report schedules and their timers",
};

pub const DELIVERY: Keyspace = Keyspace {
    name: "delivery",
    owner: "delivery",
    readers: &[],
    holds: "the send ledger and attempt history, provider pacing and pauses, per-person windows, cancel keys, what a reply to each address may answer",
};

pub const BROADCAST: Keyspace = Keyspace {
    name: "broadcast",
    owner: "broadcast",
    readers: &[],
    holds: "each broadcast's state, recipients, jobs and confirmations; its call-cycle timers",
};

pub const SLA: Keyspace = Keyspace {
    name: "sla",
    owner: "sla",
    readers: &[],
    holds: "each case's response-time clocks and their timers",
};

pub const ESCALATION: Keyspace = Keyspace {
    name: "escalation",
    owner: "escalation",
    readers: &[],
    holds: "each case's escalation, follow-up and meetings, and their timers; the acknowledgement codes sent to each number; every case's feedback and the feedback trend report's timer",
};

/// Every keyspace, each once.
pub const ALL: [Keyspace; 6] = [DIRECTORY, INTAKE, DELIVERY, BROADCAST, SLA, ESCALATION];

/// The services that touch Redis.
pub const SERVICES: [&str; 6] = [
    "intake",
    "router",
    "delivery",
    "broadcast",
    "sla",
    "escalation",
];

/// What `service` may write and what it may only read.
pub fn access(service: &str) -> (Vec<Keyspace>, Vec<Keyspace>) {
    let writes = ALL.iter().filter(|k| k.owner == service).copied().collect();
    let reads = ALL
        .iter()
        .filter(|k| k.readers.contains(&service))
        .copied()
        .collect();
    (writes, reads)
}

/// The commands a service may run: reading and writing its keys, Lua
/// scripts (whose own calls are checked against the same key patterns),
/// MULTI/EXEC, PING and the client handshake. Nothing that lists,
/// flushes, reconfigures or reaches past the key patterns (`@dangerous`
/// covers KEYS, FLUSHALL, CONFIG, DEBUG, MIGRATE and the like).
pub const COMMANDS: &str =
    "-@all +@read +@write +@scripting +@transaction +@connection +time -@dangerous";

/// The Redis ACL rules of `service` for a deployment whose keys start
/// with `deployment`, to follow `user <name> on ><password>`: its own
/// keyspaces read-write, the ones it reads read-only (`%R~`), no pub/sub
/// channels, [`COMMANDS`].
pub fn acl_rules(service: &str, deployment: &str) -> String {
    let (writes, reads) = access(service);
    let mut rules = vec!["resetkeys".to_string(), "resetchannels".to_string()];
    rules.extend(writes.iter().map(|k| format!("~{}*", k.prefix(deployment))));
    rules.extend(
        reads
            .iter()
            .map(|k| format!("%R~{}*", k.prefix(deployment))),
    );
    rules.push(COMMANDS.to_string());
    rules.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspaces_have_one_owner_and_never_overlap() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(SERVICES.contains(&a.owner), "{a:?}");
            assert!(!a.readers.contains(&a.owner), "{a:?}");
            for b in &ALL[i + 1..] {
                // `herald:dir:` never starts `herald:dirx:`: names end
                // with the separator, so distinct names are disjoint.
                assert_ne!(a.name, b.name);
                assert!(!a.prefix("").starts_with(&b.prefix("")));
            }
        }
        let (writes, reads) = access("router");
        assert!(writes.is_empty());
        assert_eq!(reads, [DIRECTORY]);
    }

    #[test]
    fn each_service_may_write_only_its_own_keys() {
        assert_eq!(
            acl_rules("delivery", "herald:"),
            format!("resetkeys resetchannels ~herald:delivery:* {COMMANDS}")
        );
        assert_eq!(
            acl_rules("intake", "h:"),
            format!("resetkeys resetchannels ~h:dir:* ~h:intake:* {COMMANDS}")
        );
        assert_eq!(
            acl_rules("router", "herald:"),
            format!("resetkeys resetchannels %R~herald:dir:* {COMMANDS}")
        );
    }
}
