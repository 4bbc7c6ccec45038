//! Who may say what on the bus. Every connection to NATS is one identity
//! with a role; this table says which subjects each role may publish and
//! subscribe, and the nats-server configuration is generated from it
//! ([`server_users`], in `server.rs`; the README's table comes from
//! `table.rs`), so nothing is allowed that is not written here.
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

mod server;
mod table;
#[cfg(test)]
mod tests;

pub use server::{ServerUser, server_users};
pub use table::table_markdown;

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
    /// Reads the trail, dead letters, case clocks and feedback; sends
    /// reports, and changes nothing else.
    Operator,
    /// Imports and removes contacts and groups.
    Directory,
    /// Sends dead letters' jobs again.
    Replay,
    /// Declares and updates Herald's streams.
    Provision,
    /// The Data Protection Officer: releases a data breach's containment
    /// and erases people.
    Dpo,
    /// Decides the first contacts an approval rule holds and the template
    /// versions editors propose (SOP 004).
    Approver,
    /// Proposes new template versions and reads them (SOP 004).
    Editor,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Service,
        Role::Publisher,
        Role::Coordinator,
        Role::Operator,
        Role::Directory,
        Role::Replay,
        Role::Provision,
        Role::Dpo,
        Role::Approver,
        Role::Editor,
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
            Role::Dpo => "dpo",
            Role::Approver => "approver",
            Role::Editor => "editor",
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
            Role::Operator => {
                "reads the trail, dead letters, case clocks, feedback and broadcast status; sends reports"
            }
            Role::Directory => "imports, shows and removes contacts and groups",
            Role::Replay => "reads dead letters and sends their jobs again",
            Role::Provision => "declares and updates Herald's streams",
            Role::Dpo => {
                "the Data Protection Officer: releases a data breach's containment, erases people"
            }
            Role::Approver => {
                "decides the first contacts held for approval and proposed template versions"
            }
            Role::Editor => "proposes template versions and reads them",
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

    /// Reads `stream` message by message and deletes (securely erases)
    /// the ones that name a person being erased: for the stream's owner.
    fn erases(&mut self, stream: &str) -> &mut Self {
        self.looks_at(stream)
            .publish(format!("$JS.API.STREAM.MSG.GET.{stream}"))
            .publish(format!("$JS.API.STREAM.MSG.DELETE.{stream}"))
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
            p.asks_as(
                &who.name,
                &[subjects::INTAKE_TRAIL, subjects::INTAKE_REPORTS],
            )
            .publish(subjects::SLA_QUERY)
            .publish(subjects::ESCALATION_QUERY)
            .publish(subjects::ESCALATION_FEEDBACK)
            .publish(subjects::BROADCAST_STATUS)
            .browses(subjects::STREAM_AUDIT)
            .browses(subjects::STREAM_DLQ);
        }
        Role::Directory => {
            p.asks_as(&who.name, &[subjects::INTAKE_DIRECTORY]);
        }
        Role::Dpo => {
            p.asks_as(
                &who.name,
                &[subjects::INTAKE_BREACH, subjects::INTAKE_ERASE],
            );
        }
        Role::Approver => {
            p.asks_as(
                &who.name,
                &[
                    subjects::INTAKE_APPROVALS,
                    subjects::INTAKE_TEMPLATE_DECISIONS,
                ],
            );
        }
        Role::Editor => {
            p.asks_as(&who.name, &[subjects::INTAKE_TEMPLATES]);
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
    // Erasure: each owner erases its own streams; intake asks the others.
    for s in STREAMS
        .iter()
        .filter(|s| s.owner == name && s.may_name_people())
    {
        p.erases(s.stream);
    }
    if subjects::ERASING_SERVICES.contains(&name) {
        p.subscribe(subjects::erase_part(name));
        p.responds = true;
    }
    if name == "intake" {
        for s in subjects::ERASING_SERVICES {
            p.publish(subjects::erase_part(s));
        }
    }
    match name {
        "intake" => {
            for r in subjects::FROM_CALLERS {
                p.subscribe(subjects::from_any_caller(r));
            }
            for lane in Lane::ALL {
                p.publish(subjects::notify_accepted(lane))
                    .looks_at(subjects::notify_stream(lane));
            }
            // Callers read their own notifications' trails over HTTP.
            p.browses(subjects::STREAM_AUDIT)
                .publish(subjects::case_events_all())
                .publish(subjects::BROADCAST_COMMANDS)
                .looks_at(subjects::STREAM_BROADCAST)
                .publish(subjects::BROADCAST_STATUS)
                // Approved template versions: written, and followed to
                // check requests against them.
                .publish(subjects::templates_all())
                .consumes(subjects::STREAM_TEMPLATES);
            stops(p);
            p.responds = true;
        }
        "router" => {
            for lane in Lane::ALL {
                p.consumes(subjects::notify_stream(lane));
            }
            p.publish(subjects::delivery_jobs(Lane::Normal))
                .publish(subjects::delivery_jobs(Lane::Emergency))
                .consumes(subjects::STREAM_TEMPLATES);
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
                .publish(subjects::broadcast_delivery_statuses())
                .publish(subjects::inbound_all())
                .looks_at(subjects::STREAM_INBOUND)
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
            // Acknowledgements and replies people send back become case
            // events, through intake like anyone else's.
            p.consumes(subjects::STREAM_CASES)
                .consumes(subjects::STREAM_INBOUND)
                .asks_as(
                    "escalation",
                    &[subjects::INTAKE_NOTIFY, subjects::INTAKE_CASE],
                )
                .subscribe(subjects::ESCALATION_QUERY)
                .subscribe(subjects::ESCALATION_FEEDBACK);
            stops(p);
            p.responds = true;
        }
        "broadcast" => {
            p.consumes(subjects::STREAM_BROADCAST)
                .consumes(subjects::STREAM_STATUS)
                .consumes(subjects::STREAM_INBOUND)
                .publish(subjects::delivery_jobs(Lane::Emergency))
                .subscribe(subjects::BROADCAST_STATUS);
            stops(p);
            p.responds = true;
        }
        _ => {}
    }
}
