//! Who may say what on the bus. Every connection to NATS is one identity
//! with a role; this table says which subjects each role may publish and
//! subscribe, and the nats-server configuration is generated from it
//! ([`server_users`]), so nothing is allowed that is not written here.
//!
//! The rules that matter most:
//! - only the service that owns a step can publish what triggers the next
//!   one: only the router writes ordinary delivery jobs, only the broadcast
//!   service emergency ones, only intake accepted notifications, case
//!   events and broadcast commands;
//! - systems outside Herald reach intake's request subjects and nothing
//!   else, each under its own name ([`subjects::from_caller`]), so intake
//!   knows who asked;
//! - every identity receives replies on its own inbox prefix
//!   (`_INBOX_<name>`), so nobody can listen to another's answers;
//! - JetStream is reached only through the API subjects of the streams an
//!   identity works with; streams themselves are declared by the
//!   provisioning identity alone.

use crate::subjects::{self, STREAMS};
use crate::v1::Lane;

/// What an identity is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// One of Herald's own services (its name is the service's).
    Service,
    /// Another system that sends notifications, case events and cancels.
    Publisher,
    /// The emergency broadcast front door.
    Coordinator,
    /// Reads the trail, dead letters and case clocks; changes nothing.
    Operator,
    /// Imports and removes contacts and groups.
    Directory,
    /// Sends dead letters' jobs again.
    Replay,
    /// Declares and updates Herald's streams.
    Provision,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Service,
        Role::Publisher,
        Role::Coordinator,
        Role::Operator,
        Role::Directory,
        Role::Replay,
        Role::Provision,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Service => "service",
            Role::Publisher => "publisher",
            Role::Coordinator => "coordinator",
            Role::Operator => "operator",
            Role::Directory => "directory",
            Role::Replay => "replay",
            Role::Provision => "provision",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// What the role is for, for the README and `herald setup`.
    pub fn purpose(self) -> &'static str {
        match self {
            Role::Service => "one of Herald's services, allowed its own subjects and streams",
            Role::Publisher => "a system sending notifications, case events and cancels",
            Role::Coordinator => "starts, updates and cancels emergency broadcasts",
            Role::Operator => "reads the trail, dead letters, case clocks and broadcast status",
            Role::Directory => "imports, shows and removes contacts and groups",
            Role::Replay => "reads dead letters and sends their jobs again",
            Role::Provision => "declares and updates Herald's streams",
        }
    }
}

/// Herald's services, each its own identity.
pub use crate::keyspace::SERVICES;

/// One connection's name and role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

impl Identity {
    pub fn new(name: impl Into<String>, role: Role) -> Identity {
        Identity {
            name: name.into(),
            role,
        }
    }

    /// Every service's identity.
    pub fn services() -> Vec<Identity> {
        SERVICES
            .iter()
            .map(|s| Identity::new(*s, Role::Service))
            .collect()
    }
}

/// Whether `name` can name an identity: it becomes a subject token and an
/// inbox prefix, so lowercase letters, digits and `-`, starting with a
/// letter, at most 64 characters.
pub fn is_identity_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The inbox prefix `name` receives its replies on.
pub fn inbox_prefix(name: &str) -> String {
    format!("_INBOX_{name}")
}

/// What one identity may do on NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects (with wildcards) it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Whether it may answer requests sent to it (publish once to each
    /// request's reply subject, whatever that is).
    pub responds: bool,
}

impl Permissions {
    /// The streams this identity works with (reads, or looks at), which
    /// must exist before it can start.
    pub fn streams(&self) -> Vec<&str> {
        self.publish
            .iter()
            .filter_map(|s| s.strip_prefix("$JS.API.STREAM.INFO."))
            .collect()
    }

    fn publish(&mut self, s: impl Into<String>) -> &mut Self {
        let s = s.into();
        if !self.publish.contains(&s) {
            self.publish.push(s);
        }
        self
    }

    fn subscribe(&mut self, s: impl Into<String>) -> &mut Self {
        let s = s.into();
        if !self.subscribe.contains(&s) {
            self.subscribe.push(s);
        }
        self
    }

    /// Reads `stream` through durable or ephemeral pull consumers it
    /// creates, acking what it handled.
    fn consumes(&mut self, stream: &str) -> &mut Self {
        self.looks_at(stream)
            .publish(format!("$JS.API.CONSUMER.CREATE.{stream}"))
            .publish(format!("$JS.API.CONSUMER.CREATE.{stream}.>"))
            .publish(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"))
            .publish(format!("$JS.ACK.{stream}.>"))
    }

    /// Reads `stream` as an operator does: short-lived consumers it
    /// removes afterwards, and single messages by sequence.
    fn browses(&mut self, stream: &str) -> &mut Self {
        self.consumes(stream)
            .publish(format!("$JS.API.CONSUMER.DELETE.{stream}.>"))
            .publish(format!("$JS.API.STREAM.MSG.GET.{stream}"))
    }

    /// Reads the state of `stream` and of its consumers, never a message:
    /// for backlog metrics and for waiting until the stream exists.
    fn looks_at(&mut self, stream: &str) -> &mut Self {
        self.publish(format!("$JS.API.STREAM.INFO.{stream}"))
            .publish(format!("$JS.API.CONSUMER.INFO.{stream}.>"))
    }

    /// Sends requests under its own name and receives the answers.
    fn asks_as(&mut self, name: &str, requests: &[&str]) -> &mut Self {
        for r in requests {
            self.publish(subjects::from_caller(r, name));
        }
        self
    }

    /// Says, and hears, that emergency work is under way.
    fn keeps_precedence(&mut self) -> &mut Self {
        self.publish(subjects::EMERGENCY_BUSY)
            .subscribe(subjects::EMERGENCY_BUSY)
    }

    fn writes_audit(&mut self) -> &mut Self {
        self.publish(subjects::audit_all())
    }

    fn sets_aside(&mut self) -> &mut Self {
        self.publish(subjects::dlq_messages())
    }
}

const PUBLISHER_REQUESTS: [&str; 4] = [
    subjects::INTAKE_NOTIFY,
    subjects::INTAKE_NOTIFY_EMERGENCY,
    subjects::INTAKE_CANCEL,
    subjects::INTAKE_CASE,
];

const COORDINATOR_REQUESTS: [&str; 3] = [
    subjects::BROADCAST_START,
    subjects::BROADCAST_UPDATE,
    subjects::BROADCAST_CANCEL,
];

/// Asking delivery to stop a family of jobs, now or as soon as it runs.
fn stops(p: &mut Permissions) {
    p.publish(subjects::DELIVERY_STOP)
        .publish(subjects::DELIVERY_STOPS);
}

/// What `who` may do. An unknown service name gets nothing but its inbox.
pub fn permissions(who: &Identity) -> Permissions {
    let mut p = Permissions::default();
    p.subscribe(format!("{}.>", inbox_prefix(&who.name)));
    match who.role {
        Role::Service => service(&who.name, &mut p),
        Role::Publisher => {
            p.asks_as(&who.name, &PUBLISHER_REQUESTS);
        }
        Role::Coordinator => {
            p.asks_as(&who.name, &COORDINATOR_REQUESTS)
                .publish(subjects::BROADCAST_STATUS);
        }
        Role::Operator => {
            p.publish(subjects::SLA_QUERY)
                .publish(subjects::ESCALATION_QUERY)
                .publish(subjects::BROADCAST_STATUS)
                .browses(subjects::STREAM_AUDIT)
                .browses(subjects::STREAM_DLQ);
        }
        Role::Directory => {
            p.asks_as(&who.name, &[subjects::INTAKE_DIRECTORY]);
        }
        Role::Replay => {
            p.browses(subjects::STREAM_DLQ).writes_audit();
            for lane in Lane::ALL {
                p.publish(subjects::delivery_jobs(lane));
            }
        }
        Role::Provision => {
            for s in STREAMS {
                p.publish(format!("$JS.API.STREAM.CREATE.{}", s.stream))
                    .publish(format!("$JS.API.STREAM.UPDATE.{}", s.stream))
                    .publish(format!("$JS.API.STREAM.INFO.{}", s.stream));
            }
        }
    }
    p
}

fn service(name: &str, p: &mut Permissions) {
    // Every service: the trail, setting aside what it can never handle,
    // the emergency precedence pulse, and answering what it serves.
    if !SERVICES.contains(&name) {
        return;
    }
    p.writes_audit().sets_aside().keeps_precedence();
    match name {
        "intake" => {
            for r in subjects::FROM_CALLERS {
                p.subscribe(subjects::from_any_caller(r));
            }
            for lane in Lane::ALL {
                p.publish(subjects::notify_accepted(lane))
                    .looks_at(subjects::notify_stream(lane));
            }
            p.publish(subjects::case_events_all())
                .publish(subjects::BROADCAST_COMMANDS)
                .looks_at(subjects::STREAM_BROADCAST)
                .publish(subjects::BROADCAST_STATUS);
            stops(p);
            p.responds = true;
        }
        "router" => {
            for lane in Lane::ALL {
                p.consumes(subjects::notify_stream(lane));
            }
            p.publish(subjects::delivery_jobs(Lane::Normal))
                .publish(subjects::delivery_jobs(Lane::Emergency));
            // The backlog it feeds, for its metrics.
            for lane in Lane::ALL {
                p.looks_at(subjects::delivery_stream(lane));
            }
        }
        "delivery" => {
            for lane in Lane::ALL {
                p.consumes(subjects::delivery_stream(lane))
                    .publish(subjects::delivery_jobs(lane));
            }
            p.consumes(subjects::STREAM_STOPS)
                .looks_at(subjects::STREAM_DLQ)
                .subscribe(subjects::DELIVERY_STOP)
                .publish(subjects::delivery_statuses())
                .publish(subjects::dlq_jobs());
            p.responds = true;
        }
        "sla" => {
            p.consumes(subjects::STREAM_CASES)
                .publish(subjects::sla_events_all())
                .subscribe(subjects::SLA_QUERY);
            p.responds = true;
        }
        "escalation" => {
            p.consumes(subjects::STREAM_CASES)
                .asks_as("escalation", &[subjects::INTAKE_NOTIFY])
                .subscribe(subjects::ESCALATION_QUERY);
            stops(p);
            p.responds = true;
        }
        "broadcast" => {
            p.consumes(subjects::STREAM_BROADCAST)
                .consumes(subjects::STREAM_STATUS)
                .publish(subjects::delivery_jobs(Lane::Emergency))
                .subscribe(subjects::BROADCAST_STATUS);
            stops(p);
            p.responds = true;
        }
        _ => {}
    }
}

/// One user of the generated server configuration.
#[derive(Debug, Clone)]
pub struct ServerUser {
    pub identity: Identity,
    /// The identity's public nkey (`U…`).
    pub nkey: String,
    pub permissions: Permissions,
    /// Allowed everything: only for a test harness that plays every
    /// part; `herald setup` never writes one.
    pub unrestricted: bool,
}

impl ServerUser {
    pub fn new(identity: Identity, nkey: impl Into<String>) -> ServerUser {
        let permissions = permissions(&identity);
        ServerUser {
            identity,
            nkey: nkey.into(),
            permissions,
            unrestricted: false,
        }
    }

    /// A user allowed every subject (see [`ServerUser::unrestricted`]).
    pub fn unrestricted(name: impl Into<String>, nkey: impl Into<String>) -> ServerUser {
        ServerUser {
            identity: Identity::new(name, Role::Service),
            nkey: nkey.into(),
            permissions: Permissions::default(),
            unrestricted: true,
        }
    }
}

/// The `authorization` block of a nats-server configuration: one nkey
/// user per identity with exactly its permissions, and no other way in
/// (no default user, no anonymous access).
pub fn server_users(users: &[ServerUser]) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("authorization {\n  users = [\n");
    for u in users {
        if u.unrestricted {
            out.push_str(&format!(
                "    # {} (unrestricted)\n    {{ nkey: \"{}\" }}\n",
                u.identity.name, u.nkey
            ));
            continue;
        }
        let p = &u.permissions;
        out.push_str(&format!(
            "    # {} ({})\n    {{\n      nkey: \"{}\"\n      permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n",
            u.identity.name,
            u.identity.role.name(),
            u.nkey,
            list(&p.publish),
            list(&p.subscribe),
        ));
        if p.responds {
            out.push_str("        allow_responses: true\n");
        }
        out.push_str("      }\n    }\n");
    }
    out.push_str("  ]\n}\n");
    out
}

/// The permission table as Markdown, for the README: what each service
/// and role may publish and subscribe (inboxes left out) and what it may
/// do with which streams.
pub fn table_markdown() -> String {
    let mut rows = vec![
        "| identity | may publish | may subscribe | streams |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut who: Vec<Identity> = Identity::services();
    who.extend(
        Role::ALL[1..]
            .iter()
            .map(|r| Identity::new(format!("<{}>", r.name()), *r)),
    );
    for id in who {
        let p = permissions(&id);
        let code = |v: &mut dyn Iterator<Item = &String>| {
            let shown: Vec<String> = v.map(|s| format!("`{s}`")).collect();
            if shown.is_empty() {
                "—".to_string()
            } else {
                shown.join(" ")
            }
        };
        let publish = code(&mut p.publish.iter().filter(|s| !s.starts_with('$')));
        let mut subscribe = code(&mut p.subscribe.iter().filter(|s| !s.starts_with("_INBOX_")));
        if p.responds {
            subscribe.push_str(" (answers requests)");
        }
        let name = if id.role == Role::Service {
            id.name.clone()
        } else {
            format!("{} ({})", id.role.name(), id.role.purpose())
        };
        rows.push(format!(
            "| {name} | {publish} | {subscribe} | {} |",
            streams_summary(&p)
        ));
    }
    rows.join("\n") + "\n"
}

/// What an identity does with each stream it may reach, in words.
fn streams_summary(p: &Permissions) -> String {
    let has = |s: String| p.publish.contains(&s);
    let mut parts = Vec::new();
    for s in STREAMS {
        let name = s.stream;
        let what = if has(format!("$JS.API.STREAM.CREATE.{name}")) {
            "declares"
        } else if has(format!("$JS.API.CONSUMER.DELETE.{name}.>")) {
            "browses"
        } else if has(format!("$JS.API.CONSUMER.CREATE.{name}")) {
            "consumes"
        } else if has(format!("$JS.API.STREAM.INFO.{name}")) {
            "watches"
        } else {
            continue;
        };
        parts.push(format!("{what} {name}"));
    }
    if parts.is_empty() {
        "—".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Channel;

    /// Whether a NATS subject pattern `allow` covers the concrete subject
    /// `s` (`*` one token, `>` the rest).
    fn covers(allow: &str, s: &str) -> bool {
        let (mut a, mut b) = (allow.split('.'), s.split('.'));
        loop {
            match (a.next(), b.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(x), Some(y)) if x == y => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    fn may_publish(who: &Identity, s: &str) -> bool {
        permissions(who).publish.iter().any(|a| covers(a, s))
    }

    fn may_subscribe(who: &Identity, s: &str) -> bool {
        permissions(who).subscribe.iter().any(|a| covers(a, s))
    }

    #[test]
    fn only_the_router_and_delivery_write_ordinary_jobs_and_only_broadcast_adds_emergency_ones() {
        let job = subjects::delivery_job(Lane::Normal, Channel::Sms);
        let emergency = subjects::delivery_job(Lane::Emergency, Channel::Voice);
        for id in Identity::services() {
            let ordinary = matches!(id.name.as_str(), "router" | "delivery");
            assert_eq!(may_publish(&id, &job), ordinary, "{id:?}");
            let urgent = matches!(id.name.as_str(), "router" | "delivery" | "broadcast");
            assert_eq!(may_publish(&id, &emergency), urgent, "{id:?}");
        }
        for role in [Role::Publisher, Role::Coordinator, Role::Operator] {
            assert!(!may_publish(&Identity::new("x", role), &job));
        }
    }

    #[test]
    fn a_publisher_reaches_intake_under_its_own_name_and_nothing_else() {
        let crm = Identity::new("crm", Role::Publisher);
        assert!(may_publish(&crm, "herald.v1.intake.notify.crm"));
        assert!(may_publish(&crm, "herald.v1.intake.case.crm"));
        assert!(!may_publish(&crm, "herald.v1.intake.notify.billing"));
        assert!(!may_publish(&crm, "herald.v1.intake.directory.crm"));
        assert!(!may_publish(
            &crm,
            &subjects::from_caller(subjects::BROADCAST_START, "crm")
        ));
        assert!(!may_publish(&crm, subjects::EMERGENCY_BUSY));
        assert!(!may_publish(&crm, &subjects::case_event("C-1")));
        assert!(!may_publish(&crm, "$JS.API.CONSUMER.CREATE.HERALD_AUDIT"));
        assert!(!may_subscribe(&crm, "herald.v1.intake.notify.crm"));
        assert!(!may_subscribe(&crm, "_INBOX.abc"));
        assert!(!may_subscribe(&crm, "_INBOX_billing.abc"));
        assert!(may_subscribe(&crm, "_INBOX_crm.abc"));
    }

    #[test]
    fn the_busy_pulse_comes_only_from_services() {
        for role in Role::ALL {
            let id = Identity::new(if role == Role::Service { "sla" } else { "x" }, role);
            assert_eq!(
                may_publish(&id, subjects::EMERGENCY_BUSY),
                role == Role::Service,
                "{role:?}"
            );
        }
    }

    #[test]
    fn only_intake_writes_case_events_and_only_sla_their_clocks() {
        let event = subjects::case_event("CASE-9");
        let clock = subjects::sla_event("CASE-9");
        for id in Identity::services() {
            assert_eq!(may_publish(&id, &event), id.name == "intake", "{id:?}");
            assert_eq!(may_publish(&id, &clock), id.name == "sla", "{id:?}");
        }
    }

    #[test]
    fn every_stream_writer_in_the_owner_table_may_publish_to_it() {
        let sample = |stream: &str| -> String {
            match stream {
                subjects::STREAM_NOTIFY => subjects::NOTIFY_ACCEPTED.into(),
                subjects::STREAM_NOTIFY_EMERGENCY => subjects::NOTIFY_ACCEPTED_EMERGENCY.into(),
                subjects::STREAM_DELIVERY => subjects::delivery_job(Lane::Normal, Channel::Email),
                subjects::STREAM_DELIVERY_EMERGENCY => {
                    subjects::delivery_job(Lane::Emergency, Channel::Email)
                }
                subjects::STREAM_STOPS => subjects::DELIVERY_STOPS.into(),
                subjects::STREAM_STATUS => subjects::delivery_status(Channel::Sms),
                subjects::STREAM_BROADCAST => subjects::BROADCAST_COMMANDS.into(),
                subjects::STREAM_CASES => subjects::case_event("C-1"),
                subjects::STREAM_AUDIT => subjects::audit("C-1", "n-1"),
                subjects::STREAM_DLQ => subjects::dlq_message("router"),
                other => panic!("no sample subject for {other}"),
            }
        };
        for s in STREAMS {
            for w in s.writers {
                let id = Identity::new(*w, Role::Service);
                let subject = if s.stream == subjects::STREAM_CASES && *w == "sla" {
                    subjects::sla_event("C-1")
                } else {
                    sample(s.stream)
                };
                assert!(may_publish(&id, &subject), "{w} → {}", s.stream);
            }
            for r in s.readers {
                if SERVICES.contains(r) {
                    let id = Identity::new(*r, Role::Service);
                    assert!(
                        may_publish(&id, &format!("$JS.API.CONSUMER.CREATE.{}.d.f", s.stream)),
                        "{r} reads {}",
                        s.stream
                    );
                }
            }
        }
    }

    #[test]
    fn the_server_configuration_lists_every_user_with_its_permissions() {
        let users = vec![
            ServerUser::new(Identity::new("router", Role::Service), "UROUTER"),
            ServerUser::new(Identity::new("ops", Role::Operator), "UOPS"),
        ];
        let conf = server_users(&users);
        assert!(conf.starts_with("authorization {"), "{conf}");
        assert!(conf.contains("nkey: \"UROUTER\""), "{conf}");
        assert!(conf.contains("\"herald.v1.delivery.job.*\""), "{conf}");
        assert!(conf.contains("\"_INBOX_ops.>\""), "{conf}");
        assert!(!conf.contains("no_auth_user"), "{conf}");
        assert!(!conf.contains("allow_responses"), "neither answers: {conf}");
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let table = table_markdown();
        assert!(
            readme.contains(&table),
            "README.md's permission table is out of date; it should read:\n<<<\n{table}>>>"
        );
    }

    #[test]
    fn names_are_safe_as_subject_tokens() {
        assert!(is_identity_name("crm-eu-1"));
        for bad in ["", "Crm", "1crm", "a.b", "a*", "a b", "_x", &"a".repeat(65)] {
            assert!(!is_identity_name(bad), "{bad:?}");
        }
        for s in SERVICES {
            assert!(is_identity_name(s));
        }
    }
}
