//! Emergency broadcasts at the front door (SOP 002 §8.2, SOP 004, SOP 003
//! §8).
//!
//! Coordinators send `StartBroadcast`, `UpdateBroadcast` and
//! `CancelBroadcast` by request/reply on `herald.v1.emergency.broadcast.*`.
//! Each is checked in this order, and the first problem is the answer:
//!
//! 1. it decodes;
//! 2. the credential belongs to a coordinator (`[broadcast] coordinators`)
//!    — before any field is looked at, so nobody without one learns
//!    anything, and nothing is sent;
//! 3. every field, named in the refusal (`audience.group_ids[1]`, …), and
//!    that every contact, group, organisation and role named exists;
//! 4. the broadcast id: a start is deduplicated by it (a retry is answered
//!    "duplicate"; the same id with another broadcast is refused), an update
//!    or cancel needs a broadcast that exists and has not ended.
//!
//! An accepted command, stripped of its credential and stamped with the
//! coordinator's id, is written to `HERALD_EMERGENCY_BROADCAST` for the
//! broadcast service; only once JetStream confirms it is the coordinator
//! told "accepted". A cancel also cancels the broadcast's cancel key at
//! once, so delivery drops whatever is still waiting even before the
//! broadcast service reads the cancel.
//!
//! Every attempt, accepted or refused, is in the audit trail under the
//! broadcast's id, with who made it.
//!
//! The breach protocol lives here too ([`breach`]): a data-breach
//! notification also starts a broadcast to the roles in `[broadcast]
//! breach_roles` (the Data Protection Officer and management), by email and
//! phone, with confirmation.

mod breach;
mod cap;
pub(crate) mod check;
mod lookup;
mod record;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use herald_config::BroadcastConfig;
use herald_content::templates::TemplateStore;
use herald_directory::{
    contacts::{Directory, MemberOf},
    coordinators,
    groups::Groups,
};
use herald_durable::stop::Stop;
use herald_proto::broadcasts;
use herald_proto::{
    subjects,
    v1::{
        Audience, AuditStep, BroadcastAccepted, BroadcastCommand, BroadcastReply, BroadcastState,
        BroadcastStatusReply, BroadcastStatusRequest, CancelBroadcast, ErrorCode, Lane, Rejected,
        Severity, StartBroadcast, UpdateBroadcast, broadcast_command::Command, broadcast_reply,
        broadcast_status_reply,
    },
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::{Bus, PublishError},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use redis::aio::ConnectionManager;
use tracing::{Instrument, error, info, warn};

use crate::{
    dedupe::{Claim, Dedupe, fingerprint},
    validate::reject,
};

use check::{check_cancel, check_start, check_update};

/// How long an update or cancel waits for the broadcast service to say
/// where a broadcast stands.
const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    action: String,
    outcome: String,
}

/// Everything the broadcast subjects need.
#[derive(Clone)]
pub(crate) struct Desk {
    bus: Bus,
    redis: ConnectionManager,
    directory: Directory,
    groups: Groups,
    templates: Arc<TemplateStore>,
    dedupe: Dedupe,
    auditor: Auditor,
    cfg: Arc<BroadcastConfig>,
    idempotency_ttl: Duration,
    requests: Family<RequestLabel, Counter>,
}

/// What a refusal is about, for the trail and the metrics.
struct Attempt<'a> {
    action: &'static str,
    broadcast_id: &'a str,
    case_id: &'a str,
    coordinator: Option<&'a str>,
    /// The identity the request came through, as NATS verified it.
    caller: &'a str,
}

impl<'a> Attempt<'a> {
    fn new(
        action: &'static str,
        broadcast_id: &'a str,
        case_id: &'a str,
        caller: &'a str,
    ) -> Attempt<'a> {
        Attempt {
            action,
            broadcast_id,
            case_id,
            coordinator: None,
            caller,
        }
    }
}

/// A command as intake stores it: without its credential, with who sent it
/// and the identity it came through.
fn command(who: &str, caller: &str, command_id: String, command: Command) -> BroadcastCommand {
    BroadcastCommand {
        command_id,
        actor: who.to_string(),
        caller: caller.to_string(),
        accepted_at: Some(herald_proto::now()),
        notification_id: String::new(),
        command: Some(command),
    }
}

fn ended(why: &str) -> Rejected {
    reject(ErrorCode::InvalidState, "broadcast_id", why)
}

impl Desk {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        bus: Bus,
        redis: ConnectionManager,
        cfg: &herald_config::Config,
        templates: Arc<TemplateStore>,
        dedupe: Dedupe,
        registry: &mut Registry,
    ) -> Desk {
        let requests = Family::<RequestLabel, Counter>::default();
        registry.register(
            "intake_broadcast_requests",
            "Broadcast start, update and cancel requests, by outcome (accepted, duplicate, refused, unauthorized)",
            requests.clone(),
        );
        Desk {
            directory: Directory::new(redis.clone(), &cfg.redis.prefix),
            groups: Groups::new(redis.clone(), &cfg.redis.prefix),
            auditor: Auditor::new(bus.clone(), "intake"),
            cfg: Arc::new(cfg.broadcast.clone()),
            idempotency_ttl: cfg.intake.idempotency_ttl,
            bus,
            redis,
            templates,
            dedupe,
            requests,
        }
    }

    /// Answers a start, update or cancel.
    pub(crate) async fn answer(&self, msg: async_nats::Message) -> BroadcastReply {
        let span = herald_runtime::bus::process_span("intake broadcast", &msg);
        async {
            // The server lets a coordinator publish only under its own
            // name, so the subject says who is asking.
            let Some((request, caller)) = subjects::caller_of(&msg.subject) else {
                return BroadcastReply {
                    result: Some(broadcast_reply::Result::Rejected(crate::unnamed_caller())),
                };
            };
            match check::decode(request, &msg.payload) {
                Ok(Command::Start(req)) => self.start(req, caller).await,
                Ok(Command::Update(req)) => self.update(req, caller).await,
                Ok(Command::Cancel(req)) => self.cancel(req, caller).await,
                Err(r) => BroadcastReply {
                    result: Some(broadcast_reply::Result::Rejected(r)),
                },
            }
        }
        .instrument(span)
        .await
    }

    /// The coordinator a credential belongs to, or the refusal to send,
    /// documented.
    async fn authorise(
        &self,
        attempt: &Attempt<'_>,
        credential: &str,
    ) -> Result<String, BroadcastReply> {
        match coordinators::authenticate(&self.cfg.coordinators, credential) {
            Some(who) => Ok(who),
            None => {
                let why = if credential.trim().is_empty() {
                    format!(
                        "is required: only a coordinator may {} a broadcast, and nothing was sent (set --credential or HERALD_COORDINATOR_TOKEN)",
                        attempt.action
                    )
                } else {
                    format!(
                        "is not a coordinator credential: the {} was refused and nothing was sent",
                        attempt.action
                    )
                };
                Err(self
                    .refuse(attempt, reject(ErrorCode::Unauthorized, "credential", why))
                    .await)
            }
        }
    }

    /// Counts, logs and documents a refusal, and builds the reply.
    async fn refuse(&self, attempt: &Attempt<'_>, r: Rejected) -> BroadcastReply {
        let outcome = if r.code == ErrorCode::Unauthorized as i32 {
            "unauthorized"
        } else if r.code == ErrorCode::Unavailable as i32 {
            "unavailable"
        } else {
            "refused"
        };
        self.count(attempt.action, outcome);
        herald_runtime::telemetry::record_outcome(&tracing::Span::current(), outcome, false);
        info!(action = attempt.action, field = %r.field, outcome, "broadcast request refused");
        if r.code != ErrorCode::Unavailable as i32 {
            let who = attempt.coordinator.unwrap_or("unauthenticated caller");
            let entry = Entry {
                notification_id: broadcast_trail_id(attempt.broadcast_id),
                case_id: trail_case(attempt.case_id),
                lane: Lane::Emergency,
                actor: Some(who.to_string()),
                caller: attempt.caller.to_string(),
                ..Entry::new(
                    AuditStep::Broadcast,
                    format!(
                        "{} refused ({}): {}",
                        attempt.action,
                        if r.field.is_empty() {
                            "request"
                        } else {
                            &r.field
                        },
                        ErrorCode::name_of(r.code)
                    ),
                )
            }
            .attr("action", attempt.action)
            .attr("outcome", outcome);
            if let Err(e) = self.auditor.record_durable(entry).await {
                error!(error = %e, "refused broadcast attempt not documented");
            }
        }
        BroadcastReply {
            result: Some(broadcast_reply::Result::Rejected(r)),
        }
    }

    fn count(&self, action: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabel {
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) async fn start(&self, mut req: StartBroadcast, caller: &str) -> BroadcastReply {
        let credential = std::mem::take(&mut req.credential);
        // Kept by intake for the broadcast's CAP export, not sent on.
        let cap = std::mem::take(&mut req.cap);
        let (id, case_id) = (req.broadcast_id.clone(), req.case_id.clone());
        let mut attempt = Attempt::new("start", &id, &case_id, caller);
        let who = match self.authorise(&attempt, &credential).await {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        attempt.coordinator = Some(&who);
        let req = match check_start(req, &self.cfg, &self.templates)
            .and_then(|r| check::check_cap(&cap, &r.broadcast_id).map(|()| r))
        {
            Ok(r) => r,
            Err(r) => return self.refuse(&attempt, r).await,
        };
        if let Err(r) = self.check_audience(req.audience.as_ref()).await {
            return self.refuse(&attempt, r).await;
        }
        let cycles = req.cycles.unwrap_or_default();
        let ttl = self.idempotency_ttl.max(Duration::from_secs(
            cycles.duration_seconds as u64 + 24 * 3600,
        ));
        let key = self.claim_key(&id);
        let fp = fingerprint(&req);
        let duplicate = match self.dedupe.claim_at(&key, &fp, &who, ttl.as_secs()).await {
            Ok(Claim::New) => false,
            Ok(Claim::Done(_)) => {
                self.count("start", "duplicate");
                return accepted(&id, true, &who);
            }
            Ok(Claim::Pending(_)) => true,
            Ok(Claim::Conflict) => {
                let r = reject(
                    ErrorCode::IdempotencyConflict,
                    "broadcast_id",
                    "already names a different broadcast; choose a new id",
                );
                return self.refuse(&attempt, r).await;
            }
            Err(e) => {
                error!(error = %e, "broadcast claim failed");
                return self.refuse(&attempt, unavailable()).await;
            }
        };
        let summary = format!(
            "start accepted from coordinator {who}: severity {}, {}",
            Severity::name_of(req.severity),
            describe_audience(req.audience.as_ref())
        );
        let command = command(&who, caller, format!("start-{id}"), Command::Start(req));
        let reply = self.accept(&attempt, command, summary, duplicate).await;
        if let Some(broadcast_reply::Result::Accepted(_)) = &reply.result {
            self.keep_cap(&id, &cap, false).await;
            if let Err(e) = self.dedupe.complete_at(&key, &fp, &who).await {
                warn!(error = %e, "could not mark the broadcast claim done");
            }
        }
        reply
    }

    pub(crate) async fn update(&self, mut req: UpdateBroadcast, caller: &str) -> BroadcastReply {
        let credential = std::mem::take(&mut req.credential);
        let cap = std::mem::take(&mut req.cap);
        let id = req.broadcast_id.clone();
        let mut attempt = Attempt::new("update", &id, "", caller);
        let who = match self.authorise(&attempt, &credential).await {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        attempt.coordinator = Some(&who);
        let req = match check_update(req)
            .and_then(|r| check::check_cap(&cap, &r.broadcast_id).map(|()| r))
        {
            Ok(r) => r,
            Err(r) => return self.refuse(&attempt, r).await,
        };
        let refusal = match self.existing(&attempt, &credential).await {
            Ok(BroadcastState::Cancelled) => ended("was cancelled; start a new broadcast"),
            Ok(BroadcastState::Finished) => ended("has finished; start a new broadcast"),
            Ok(_) => {
                let summary = format!(
                    "update accepted from coordinator {who}: new message in {} language(s)",
                    req.messages.len()
                );
                let command_id = format!("update-{id}-{}", fingerprint(&req));
                let command = command(&who, caller, command_id, Command::Update(req));
                let reply = self.accept(&attempt, command, summary, false).await;
                if let Some(broadcast_reply::Result::Accepted(_)) = &reply.result {
                    self.keep_cap(&id, &cap, true).await;
                }
                return reply;
            }
            Err(reply) => return reply,
        };
        self.refuse(&attempt, refusal).await
    }

    pub(crate) async fn cancel(&self, mut req: CancelBroadcast, caller: &str) -> BroadcastReply {
        let credential = std::mem::take(&mut req.credential);
        let id = req.broadcast_id.clone();
        let mut attempt = Attempt::new("cancel", &id, "", caller);
        let who = match self.authorise(&attempt, &credential).await {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        attempt.coordinator = Some(&who);
        let req = match check_cancel(req) {
            Ok(r) => r,
            Err(r) => return self.refuse(&attempt, r).await,
        };
        match self.existing(&attempt, &credential).await {
            Ok(BroadcastState::Cancelled) => {
                self.count("cancel", "duplicate");
                return accepted(&id, true, &who);
            }
            Ok(BroadcastState::Finished) => {
                let r = ended("has already finished; nothing is left to stop");
                return self.refuse(&attempt, r).await;
            }
            Ok(_) => {}
            Err(reply) => return reply,
        }
        // Stop delivery first: from here on no job of the broadcast reaches
        // a provider, whatever the broadcast service is doing.
        let why = match req.reason.trim() {
            "" => format!("broadcast cancelled by {who}"),
            reason => format!("broadcast cancelled by {who}: {reason}"),
        };
        let first = match Stop::key(broadcasts::cancel_key(&id), why)
            .send(&self.bus)
            .await
        {
            Ok(stopped) => stopped.first.first().copied().unwrap_or(false),
            Err(e) => {
                error!(error = %e, "could not cancel the broadcast's key");
                return self.refuse(&attempt, unavailable()).await;
            }
        };
        let summary = format!("cancel accepted from coordinator {who}");
        let command = command(&who, caller, format!("cancel-{id}"), Command::Cancel(req));
        self.accept(&attempt, command, summary, !first).await
    }
}

fn accepted(broadcast_id: &str, duplicate: bool, who: &str) -> BroadcastReply {
    BroadcastReply {
        result: Some(broadcast_reply::Result::Accepted(BroadcastAccepted {
            broadcast_id: broadcast_id.to_string(),
            duplicate,
            coordinator: who.to_string(),
        })),
    }
}

fn unavailable() -> Rejected {
    reject(
        ErrorCode::Unavailable,
        "",
        "Herald could not store the request just now; send it again (a repeated start is harmless)",
    )
}

/// The trail a broadcast's records go to: its id, when it is a valid one.
fn broadcast_trail_id(id: &str) -> String {
    if broadcasts::check_id(id).is_ok() {
        id.to_string()
    } else {
        String::new()
    }
}

fn trail_case(case_id: &str) -> String {
    if herald_proto::subjects::is_subject_token(case_id) {
        case_id.to_string()
    } else {
        String::new()
    }
}

fn describe_audience(a: Option<&Audience>) -> String {
    let a = a.cloned().unwrap_or_default();
    let mut parts = Vec::new();
    for (n, what) in [
        (a.contact_ids.len(), "contact(s)"),
        (a.group_ids.len(), "group(s)"),
        (a.organisations.len(), "organisation(s)"),
        (a.roles.len(), "role(s)"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}
