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
//! The breach protocol lives here too: a data-breach notification also
//! starts a broadcast to the roles in `[broadcast] breach_roles` (the Data
//! Protection Officer and management), by email and phone, with
//! confirmation.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use herald_config::{BroadcastConfig, MAX_CYCLES};
use herald_content::templates::TemplateStore;
use herald_directory::{
    contacts::{Directory, MemberOf},
    coordinators,
    groups::Groups,
    validate,
};
use herald_durable::stop::Stop;
use herald_proto::broadcasts;
use herald_proto::{
    Message, subjects,
    v1::{
        Audience, AuditStep, BroadcastAccepted, BroadcastCommand, BroadcastMessage, BroadcastReply,
        BroadcastState, BroadcastStatusReply, BroadcastStatusRequest, CancelBroadcast, Cycles,
        ErrorCode, Lane, NotificationRequest, Rejected, Severity, StartBroadcast, UpdateBroadcast,
        broadcast_command::Command, broadcast_reply, broadcast_status_reply,
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

const MAX_LANGUAGES: usize = 20;
const MAX_AUDIENCE_ENTRIES: usize = 1000;
const MAX_SUBJECT: usize = 200;
const MAX_BODY: usize = 8000;
const MAX_SPEAK: usize = 1000;
const MAX_SMS: usize = 1600;
const MAX_REASON: usize = 200;
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

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
}

impl<'a> Attempt<'a> {
    fn new(action: &'static str, broadcast_id: &'a str, case_id: &'a str) -> Attempt<'a> {
        Attempt {
            action,
            broadcast_id,
            case_id,
            coordinator: None,
        }
    }
}

/// A command as intake stores it: without its credential, with who sent it.
fn command(who: &str, command_id: String, command: Command) -> BroadcastCommand {
    BroadcastCommand {
        command_id,
        actor: who.to_string(),
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
            match msg.subject.as_str() {
                subjects::BROADCAST_START => match StartBroadcast::decode(msg.payload.clone()) {
                    Ok(req) => self.start(req).await,
                    Err(e) => undecodable("StartBroadcast", e),
                },
                subjects::BROADCAST_UPDATE => match UpdateBroadcast::decode(msg.payload.clone()) {
                    Ok(req) => self.update(req).await,
                    Err(e) => undecodable("UpdateBroadcast", e),
                },
                _ => match CancelBroadcast::decode(msg.payload.clone()) {
                    Ok(req) => self.cancel(req).await,
                    Err(e) => undecodable("CancelBroadcast", e),
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

    async fn start(&self, mut req: StartBroadcast) -> BroadcastReply {
        let credential = std::mem::take(&mut req.credential);
        let (id, case_id) = (req.broadcast_id.clone(), req.case_id.clone());
        let mut attempt = Attempt::new("start", &id, &case_id);
        let who = match self.authorise(&attempt, &credential).await {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        attempt.coordinator = Some(&who);
        let req = match check_start(req, &self.cfg, &self.templates) {
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
        let command = command(&who, format!("start-{id}"), Command::Start(req));
        let reply = self.accept(&attempt, command, summary, duplicate).await;
        if let Some(broadcast_reply::Result::Accepted(_)) = &reply.result
            && let Err(e) = self.dedupe.complete_at(&key, &fp, &who).await
        {
            warn!(error = %e, "could not mark the broadcast claim done");
        }
        reply
    }

    async fn update(&self, mut req: UpdateBroadcast) -> BroadcastReply {
        let credential = std::mem::take(&mut req.credential);
        let id = req.broadcast_id.clone();
        let mut attempt = Attempt::new("update", &id, "");
        let who = match self.authorise(&attempt, &credential).await {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        attempt.coordinator = Some(&who);
        match check_messages(&req.messages, &req.default_language, "messages") {
            Ok(lang) => req.default_language = lang,
            Err(r) => return self.refuse(&attempt, r).await,
        }
        let refusal = match self.existing(&attempt, &credential).await {
            Ok(BroadcastState::Cancelled) => ended("was cancelled; start a new broadcast"),
            Ok(BroadcastState::Finished) => ended("has finished; start a new broadcast"),
            Ok(_) => {
                let summary = format!(
                    "update accepted from coordinator {who}: new message in {} language(s)",
                    req.messages.len()
                );
                let command_id = format!("update-{id}-{}", fingerprint(&req));
                let command = command(&who, command_id, Command::Update(req));
                return self.accept(&attempt, command, summary, false).await;
            }
            Err(reply) => return reply,
        };
        self.refuse(&attempt, refusal).await
    }

    async fn cancel(&self, mut req: CancelBroadcast) -> BroadcastReply {
        let credential = std::mem::take(&mut req.credential);
        let id = req.broadcast_id.clone();
        let mut attempt = Attempt::new("cancel", &id, "");
        let who = match self.authorise(&attempt, &credential).await {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        attempt.coordinator = Some(&who);
        if req.reason.chars().count() > MAX_REASON || req.reason.chars().any(char::is_control) {
            let r = reject(
                ErrorCode::InvalidArgument,
                "reason",
                format!("must be at most {MAX_REASON} printable characters"),
            );
            return self.refuse(&attempt, r).await;
        }
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
        let command = command(&who, format!("cancel-{id}"), Command::Cancel(req));
        self.accept(&attempt, command, summary, !first).await
    }

    /// Stores an accepted command and answers "accepted", or "unavailable"
    /// if it could not be stored (the coordinator may send it again).
    async fn accept(
        &self,
        attempt: &Attempt<'_>,
        command: BroadcastCommand,
        summary: String,
        duplicate: bool,
    ) -> BroadcastReply {
        let who = attempt.coordinator.unwrap_or_default();
        if let Err(e) = self
            .store(
                &command,
                attempt.broadcast_id,
                attempt.case_id,
                who,
                summary,
            )
            .await
        {
            error!(error = %e, action = attempt.action, "broadcast command not stored");
            return self.refuse(attempt, unavailable()).await;
        }
        self.count(
            attempt.action,
            if duplicate { "duplicate" } else { "accepted" },
        );
        herald_runtime::telemetry::record_outcome(&tracing::Span::current(), "accepted", false);
        accepted(attempt.broadcast_id, duplicate, who)
    }

    /// The state of the broadcast an update or cancel names, or the
    /// (documented) refusal when it names none.
    async fn existing(
        &self,
        attempt: &Attempt<'_>,
        credential: &str,
    ) -> Result<BroadcastState, BroadcastReply> {
        match broadcast_id_ok(attempt.broadcast_id) {
            Ok(()) => {}
            Err(r) => return Err(self.refuse(attempt, r).await),
        }
        match self.running(attempt.broadcast_id, credential).await {
            Ok(state) => Ok(state),
            Err(r) => Err(self.refuse(attempt, r).await),
        }
    }

    fn claim_key(&self, broadcast_id: &str) -> String {
        self.dedupe
            .key_for(&format!("broadcast-claim:{broadcast_id}"))
    }

    /// The state of a broadcast that was started, or why an update or
    /// cancel cannot name it. The broadcast service owns the state and is
    /// asked; intake's own record of the starts it accepted answers for a
    /// broadcast the service has not read yet, and while the service does
    /// not answer, so that a cancel still stops delivery at once.
    async fn running(
        &self,
        broadcast_id: &str,
        credential: &str,
    ) -> Result<BroadcastState, Rejected> {
        let ask = BroadcastStatusRequest {
            broadcast_id: broadcast_id.to_string(),
            credential: credential.to_string(),
            recipients: false,
        };
        let known = match self
            .bus
            .ask::<_, BroadcastStatusReply>(subjects::BROADCAST_STATUS, &ask, STATUS_WAIT)
            .await
        {
            Ok(BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Status(s)),
            }) => return Ok(BroadcastState::try_from(s.state).unwrap_or_default()),
            Ok(BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Rejected(r)),
            }) if r.code == ErrorCode::NotFound as i32 => "not read yet",
            Ok(other) => {
                warn!(answer = ?other.result.map(|_| ()), "the broadcast service refused a status query");
                "refused"
            }
            Err(e) => {
                warn!(error = %e, "the broadcast service did not answer");
                "not answering"
            }
        };
        match redis::cmd("EXISTS")
            .arg(self.claim_key(broadcast_id))
            .query_async::<bool>(&mut self.redis.clone())
            .await
        {
            // Accepted here; the broadcast service acts on the command
            // once it reads it.
            Ok(true) => Ok(BroadcastState::Starting),
            Ok(false) => Err(reject(
                ErrorCode::NotFound,
                "broadcast_id",
                "no broadcast with this id was started",
            )),
            Err(e) => {
                error!(error = %e, broadcast_service = known, "broadcast claim unreadable");
                Err(unavailable())
            }
        }
    }

    /// Every contact, group, organisation and role the audience names
    /// exists, and together they stay within `max_recipients`.
    async fn check_audience(&self, audience: Option<&Audience>) -> Result<(), Rejected> {
        let a = audience.cloned().unwrap_or_default();
        let lookup = |e: herald_directory::contacts::DirectoryError| {
            error!(error = %e, "directory lookup failed");
            unavailable()
        };
        let mut people: BTreeSet<String> = BTreeSet::new();
        let found = self
            .directory
            .get_many(&a.contact_ids)
            .await
            .map_err(lookup)?;
        for (i, (id, c)) in a.contact_ids.iter().zip(found).enumerate() {
            if c.is_none() {
                return Err(reject(
                    ErrorCode::UnknownContact,
                    format!("audience.contact_ids[{i}]"),
                    format!("no contact with id {id:?} in the directory"),
                ));
            }
            people.insert(id.clone());
        }
        let groups = self.groups.get_many(&a.group_ids).await.map_err(lookup)?;
        for (i, (id, g)) in a.group_ids.iter().zip(groups).enumerate() {
            let Some(g) = g else {
                return Err(reject(
                    ErrorCode::NotFound,
                    format!("audience.group_ids[{i}]"),
                    format!("no group with id {id:?} (herald groups list)"),
                ));
            };
            people.extend(g.members);
        }
        // The organisation and role sets may still name people who moved
        // (the broadcast service checks each), so they only add a largest
        // possible count, not people.
        let mut largest = people.len() as u64;
        for (field, by, values) in [
            ("organisations", MemberOf::Organisation, &a.organisations),
            ("roles", MemberOf::Role, &a.roles),
        ] {
            for (i, v) in values.iter().enumerate() {
                let n = self.directory.count_in(by, v).await.map_err(lookup)?;
                if n == 0 {
                    return Err(reject(
                        ErrorCode::NotFound,
                        format!("audience.{field}[{i}]"),
                        format!(
                            "no contact in the directory has {} {v:?}",
                            match by {
                                MemberOf::Organisation => "organisation",
                                MemberOf::Role => "role",
                            }
                        ),
                    ));
                }
                largest += n;
            }
        }
        // Only a sure excess is refused here: the people named directly
        // and through groups, each once. Beyond that the broadcast service
        // counts exactly and refuses to start (documented in the trail).
        if people.len() > self.cfg.max_recipients {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "audience",
                format!(
                    "reaches more than {} people (broadcast.max_recipients)",
                    self.cfg.max_recipients
                ),
            ));
        }
        if largest as usize > self.cfg.max_recipients {
            info!(
                largest,
                "audience may exceed broadcast.max_recipients; counted when resolved"
            );
        }
        Ok(())
    }

    /// Documents the command in the trail, then writes it to the stream;
    /// `Err` means the caller must hear "unavailable" and may retry.
    async fn store(
        &self,
        command: &BroadcastCommand,
        broadcast_id: &str,
        case_id: &str,
        who: &str,
        summary: String,
    ) -> Result<(), PublishError> {
        let entry = Entry {
            notification_id: broadcast_id.to_string(),
            case_id: trail_case(case_id),
            lane: Lane::Emergency,
            actor: Some(who.to_string()),
            record_id: Some(format!("{}-accepted", command.command_id)),
            ..Entry::new(AuditStep::Broadcast, summary)
        }
        .attr("command", &command.command_id);
        let audit = self.auditor.record(entry).await;
        self.bus
            .publish_durable(
                subjects::BROADCAST_COMMANDS.to_string(),
                command,
                Some(&command.command_id),
            )
            .await?;
        match audit {
            Ok(ack) => {
                if let Err(e) =
                    herald_runtime::bus::confirm(subjects::audit_all().into(), ack).await
                {
                    error!(error = %e, "broadcast command not documented");
                }
            }
            Err(e) => error!(error = %e, "broadcast command not documented"),
        }
        info!(command = %command.command_id, "broadcast command accepted");
        Ok(())
    }

    /// SOP 003 §8: a data-breach notification also reaches the Data
    /// Protection Officer and management at once, by email and phone, each
    /// asked to confirm. Runs before the notification itself is stored, so
    /// a retry of the request (same notification id) repeats it harmlessly.
    pub(crate) async fn breach_protocol(
        &self,
        notification_id: &str,
        req: &NotificationRequest,
    ) -> Result<(), PublishError> {
        let broadcast_id = broadcasts::breach_id(notification_id);
        let reference = if req.case_id.is_empty() {
            notification_id.to_string()
        } else {
            req.case_id.clone()
        };
        let start = StartBroadcast {
            broadcast_id: broadcast_id.clone(),
            severity: Severity::Severe as i32,
            audience: Some(Audience {
                roles: self.cfg.breach_roles.clone(),
                ..Default::default()
            }),
            template_id: broadcasts::BREACH_TEMPLATE.into(),
            params: [("reference".to_string(), reference)].into(),
            case_id: req.case_id.clone(),
            cycles: Some(Cycles {
                interval_seconds: self.cfg.interval.as_secs() as u32,
                cycles: self.cfg.cycles,
                duration_seconds: self.cfg.duration.as_secs() as u32,
            }),
            ..Default::default()
        };
        let command = BroadcastCommand {
            notification_id: notification_id.to_string(),
            ..command(
                broadcasts::BREACH_ACTOR,
                format!("start-{broadcast_id}"),
                Command::Start(start),
            )
        };
        self.bus
            .publish_durable(
                subjects::BROADCAST_COMMANDS.to_string(),
                &command,
                Some(&command.command_id),
            )
            .await?;
        let entry = Entry {
            notification_id: notification_id.to_string(),
            case_id: req.case_id.clone(),
            lane: Lane::Emergency,
            actor: Some(broadcasts::BREACH_ACTOR.into()),
            record_id: Some(format!("{notification_id}-breach-protocol")),
            ..Entry::new(
                AuditStep::Broadcast,
                format!(
                    "breach protocol: broadcast {broadcast_id} to every {} by email and phone",
                    self.cfg.breach_roles.join(" and ")
                ),
            )
        }
        .attr("broadcast_id", &broadcast_id);
        if let Err(e) = self.auditor.record_durable(entry).await {
            error!(error = %e, "breach protocol not documented");
        }
        Ok(())
    }
}

/// Checks a start request field by field and fills in its defaults
/// (default language, cycle settings).
pub fn check_start(
    mut req: StartBroadcast,
    cfg: &BroadcastConfig,
    templates: &TemplateStore,
) -> Result<StartBroadcast, Rejected> {
    use ErrorCode as E;
    broadcast_id_ok(&req.broadcast_id)?;
    match Severity::try_from(req.severity) {
        Ok(Severity::Unspecified) | Err(_) => {
            return Err(reject(
                E::InvalidArgument,
                "severity",
                "is required: minor, moderate, severe or extreme",
            ));
        }
        Ok(_) => {}
    }
    if !req.case_id.is_empty() && !herald_proto::subjects::is_subject_token(&req.case_id) {
        return Err(reject(
            E::InvalidArgument,
            "case_id",
            "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
        ));
    }
    let a = req.audience.clone().unwrap_or_default();
    if a.contact_ids.is_empty()
        && a.group_ids.is_empty()
        && a.organisations.is_empty()
        && a.roles.is_empty()
    {
        return Err(reject(
            E::EmptyRecipients,
            "audience",
            "name at least one contact, group, organisation or role",
        ));
    }
    for (field, values) in [
        ("contact_ids", &a.contact_ids),
        ("group_ids", &a.group_ids),
        ("organisations", &a.organisations),
        ("roles", &a.roles),
    ] {
        if values.len() > MAX_AUDIENCE_ENTRIES {
            return Err(reject(
                E::InvalidArgument,
                format!("audience.{field}"),
                format!("has more than {MAX_AUDIENCE_ENTRIES} entries; use a group"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            if !herald_proto::subjects::is_subject_token(v) {
                return Err(reject(
                    E::InvalidArgument,
                    format!("audience.{field}[{i}]"),
                    "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
                ));
            }
            if !seen.insert(v) {
                return Err(reject(
                    E::InvalidArgument,
                    format!("audience.{field}[{i}]"),
                    format!("{v} is named twice"),
                ));
            }
        }
    }
    match (req.messages.is_empty(), req.template_id.is_empty()) {
        (true, true) => {
            return Err(reject(
                E::InvalidArgument,
                "messages",
                "give the message in at least one language (or a template_id)",
            ));
        }
        (false, false) => {
            return Err(reject(
                E::InvalidArgument,
                "template_id",
                "give either messages or a template, not both",
            ));
        }
        (false, true) => {
            req.default_language =
                check_messages(&req.messages, &req.default_language, "messages")?;
        }
        (true, false) => {
            let params = req.params.clone();
            if let Err(e) = templates.check(&req.template_id, 0, &params) {
                let field = match &e {
                    herald_content::templates::TemplateError::MissingParam { param, .. } => {
                        format!("params.{param}")
                    }
                    _ => "template_id".into(),
                };
                return Err(reject(E::UnknownTemplate, field, e.to_string()));
            }
        }
    }
    req.cycles = Some(check_cycles(req.cycles.unwrap_or_default(), cfg)?);
    Ok(req)
}

fn broadcast_id_ok(id: &str) -> Result<(), Rejected> {
    broadcasts::check_id(id).map_err(|why| reject(ErrorCode::InvalidArgument, "broadcast_id", why))
}

/// Checks the messages; returns the default language (the given one, or the
/// first message's).
fn check_messages(
    messages: &[BroadcastMessage],
    default_language: &str,
    field: &str,
) -> Result<String, Rejected> {
    use ErrorCode as E;
    if messages.is_empty() {
        return Err(reject(
            E::InvalidArgument,
            field,
            "give the message in at least one language",
        ));
    }
    if messages.len() > MAX_LANGUAGES {
        return Err(reject(
            E::InvalidArgument,
            field,
            format!("has more than {MAX_LANGUAGES} languages"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, m) in messages.iter().enumerate() {
        let f = |name: &str| format!("{field}[{i}].{name}");
        validate::language(&m.language)
            .map_err(|why| reject(E::InvalidArgument, f("language"), why))?;
        if !seen.insert(m.language.to_ascii_lowercase()) {
            return Err(reject(
                E::InvalidArgument,
                f("language"),
                format!("{} is given twice", m.language),
            ));
        }
        for (name, text, max, required) in [
            ("subject", &m.subject, MAX_SUBJECT, true),
            ("body", &m.body, MAX_BODY, true),
            ("speak", &m.speak, MAX_SPEAK, true),
            ("sms", &m.sms, MAX_SMS, false),
        ] {
            if required && text.trim().is_empty() {
                return Err(reject(E::InvalidArgument, f(name), "is required"));
            }
            if text.chars().count() > max {
                return Err(reject(
                    E::InvalidArgument,
                    f(name),
                    format!("is longer than {max} characters"),
                ));
            }
        }
        if m.subject.chars().any(char::is_control) {
            return Err(reject(E::InvalidArgument, f("subject"), "must be one line"));
        }
    }
    if default_language.is_empty() {
        return Ok(messages[0].language.clone());
    }
    if !messages
        .iter()
        .any(|m| m.language.eq_ignore_ascii_case(default_language))
    {
        return Err(reject(
            E::InvalidArgument,
            "default_language",
            format!("{default_language:?} is not one of the messages' languages"),
        ));
    }
    Ok(default_language.to_string())
}

/// Fills zero cycle settings from the configuration and checks the rest.
fn check_cycles(c: Cycles, cfg: &BroadcastConfig) -> Result<Cycles, Rejected> {
    use ErrorCode as E;
    let c = Cycles {
        interval_seconds: if c.interval_seconds == 0 {
            cfg.interval.as_secs().max(1) as u32
        } else {
            c.interval_seconds
        },
        cycles: if c.cycles == 0 { cfg.cycles } else { c.cycles },
        duration_seconds: c.duration_seconds,
    };
    if c.cycles > MAX_CYCLES {
        return Err(reject(
            E::InvalidArgument,
            "cycles.cycles",
            format!("must be at most {MAX_CYCLES}"),
        ));
    }
    let needed = c.interval_seconds as u64 * (c.cycles as u64 - 1);
    let duration = if c.duration_seconds == 0 {
        (cfg.duration.as_secs()).max(needed + c.interval_seconds as u64)
    } else {
        c.duration_seconds as u64
    };
    if duration < needed {
        return Err(reject(
            E::InvalidArgument,
            "cycles.duration_seconds",
            format!(
                "is {duration}s, shorter than the {needed}s the {} call cycles {}s apart need",
                c.cycles, c.interval_seconds
            ),
        ));
    }
    if duration > MAX_DURATION.as_secs() {
        return Err(reject(
            E::InvalidArgument,
            "cycles.duration_seconds",
            "must be at most 7 days",
        ));
    }
    Ok(Cycles {
        duration_seconds: duration as u32,
        ..c
    })
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

fn undecodable(what: &str, e: prost::DecodeError) -> BroadcastReply {
    BroadcastReply {
        result: Some(broadcast_reply::Result::Rejected(reject(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.{what}: {e}"),
        ))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> TemplateStore {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        TemplateStore::load(&dir).expect("shipped templates load")
    }

    fn message(lang: &str) -> BroadcastMessage {
        BroadcastMessage {
            language: lang.into(),
            subject: "Evacuate building B".into(),
            body: "Leave building B by the nearest exit now.".into(),
            speak: "Leave building B now.".into(),
            sms: String::new(),
        }
    }

    fn good() -> StartBroadcast {
        StartBroadcast {
            broadcast_id: "fire-b".into(),
            severity: Severity::Extreme as i32,
            audience: Some(Audience {
                group_ids: vec!["wardens".into()],
                ..Default::default()
            }),
            messages: vec![message("en"), message("fr")],
            ..Default::default()
        }
    }

    fn field_of(req: StartBroadcast) -> (ErrorCode, String) {
        let r = check_start(req, &BroadcastConfig::default(), &templates()).unwrap_err();
        (ErrorCode::try_from(r.code).unwrap(), r.field)
    }

    #[test]
    fn a_good_start_gets_its_defaults() {
        let r = check_start(good(), &BroadcastConfig::default(), &templates()).unwrap();
        assert_eq!(r.default_language, "en");
        let c = r.cycles.unwrap();
        assert_eq!(
            (c.interval_seconds, c.cycles, c.duration_seconds),
            (300, 3, 3600)
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = good();
        r.broadcast_id = "a b".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "broadcast_id".into())
        );

        let mut r = good();
        r.severity = 0;
        assert_eq!(field_of(r), (ErrorCode::InvalidArgument, "severity".into()));

        let mut r = good();
        r.audience = None;
        assert_eq!(field_of(r), (ErrorCode::EmptyRecipients, "audience".into()));

        let mut r = good();
        r.audience
            .as_mut()
            .unwrap()
            .group_ids
            .push("wardens".into());
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "audience.group_ids[1]".into())
        );

        let mut r = good();
        r.messages[1].speak = " ".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "messages[1].speak".into())
        );

        let mut r = good();
        r.messages[1].language = "EN".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "messages[1].language".into())
        );

        let mut r = good();
        r.default_language = "de".into();
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "default_language".into())
        );

        let mut r = good();
        r.messages.clear();
        assert_eq!(field_of(r), (ErrorCode::InvalidArgument, "messages".into()));

        let mut r = good();
        r.cycles = Some(Cycles {
            interval_seconds: 60,
            cycles: 5,
            duration_seconds: 120,
        });
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "cycles.duration_seconds".into())
        );

        let mut r = good();
        r.cycles = Some(Cycles {
            cycles: 99,
            ..Default::default()
        });
        assert_eq!(
            field_of(r),
            (ErrorCode::InvalidArgument, "cycles.cycles".into())
        );
    }

    #[test]
    fn a_template_broadcast_needs_its_parameters() {
        let mut r = good();
        r.messages.clear();
        r.template_id = broadcasts::BREACH_TEMPLATE.into();
        assert_eq!(
            field_of(r.clone()),
            (ErrorCode::UnknownTemplate, "params.reference".into())
        );
        r.params.insert("reference".into(), "CASE-1".into());
        assert!(check_start(r, &BroadcastConfig::default(), &templates()).is_ok());
    }

    #[test]
    fn short_cycles_stretch_the_default_duration_to_fit() {
        let cfg = BroadcastConfig::default();
        let c = check_cycles(
            Cycles {
                interval_seconds: 1800,
                cycles: 4,
                duration_seconds: 0,
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(c.duration_seconds, 1800 * 4);
        let c = check_cycles(
            Cycles {
                interval_seconds: 2,
                cycles: 3,
                duration_seconds: 0,
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(c.duration_seconds, 3600);
    }
}
