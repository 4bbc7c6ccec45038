//! Approval before first contact (SOP 004: staff receive their
//! supervisor's approval before contacting a parent). An organisation's
//! rules (`[approvals]`) name whom they protect, by directory role or
//! recipient group, and for which kinds of communication. A notification
//! that would be the first to such a person about a matter (its case,
//! else the client it is about) is stored and answered "accepted,
//! awaiting approval"; the approvers get a message with signed approve
//! and deny links (and can use `herald approvals`); the notification goes
//! out once one approves, and is refused if one denies or nobody decides
//! within `approvals.timeout`. Either way the trail says so and the
//! requester is told. An approval covers the person and the matter:
//! later messages to them about it go straight through.
//!
//! What intake keeps, in its own keyspace:
//!
//! * `approval:<id>`: the approval's state ([`state::Held`], JSON), moved
//!   only by compare-and-set together with its timer;
//! * `approval:<id>:notification`: the held notification as it would have
//!   been stored, released unchanged (less its "accepted" record, which
//!   the trail already has) when approved;
//! * `approval:grant:<contact>:<matter>`: an approval given, for
//!   `approvals.grant_ttl`;
//! * `timer:approvals:*`: one durable timer per approval, which asks the
//!   approvers, times the wait out and carries out each decision.
//!
//! The emergency lane is never held, nor are inline recipients (a rule
//! knows people by their directory record).

mod desk;
mod links;
mod run;
pub mod state;

pub(crate) use links::{Links, routes};

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use herald_config::{ApprovalRule, ApprovalsConfig};
use herald_directory::{
    contacts::{Contact, Directory, MemberOf},
    groups::Groups,
};
use herald_durable::timers::{TimerChange, Timers};
use herald_proto::v1::{CommunicationType, ErrorCode, Lane, NotificationRequest, Rejected};
use redis::{AsyncCommands, aio::ConnectionManager};

use crate::validate::reject;
use state::Held;

/// How long a decided approval is kept for `herald approvals show`.
const KEEP_DECIDED: Duration = Duration::from_secs(30 * 24 * 3600);

/// The timer queue of approvals, in intake's keyspace.
const QUEUE: &str = "approvals";

#[derive(Clone)]
pub(crate) struct Approvals {
    cfg: Arc<ApprovalsConfig>,
    redis: ConnectionManager,
    /// Intake's keyspace prefix.
    prefix: String,
    timers: Timers,
    directory: Directory,
    groups: Groups,
    links: Option<Links>,
}

/// What a rule asks of one notification: whom it is a first contact with,
/// and who may let it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub rule: String,
    pub contact_ids: Vec<String>,
    pub matter: String,
    pub approvers: Vec<String>,
    pub tell: Option<String>,
}

impl Approvals {
    pub fn new(cfg: &ApprovalsConfig, redis: ConnectionManager, deployment: &str) -> Approvals {
        let prefix = herald_proto::keyspace::INTAKE.prefix(deployment);
        Approvals {
            cfg: Arc::new(cfg.clone()),
            timers: Timers::new(redis.clone(), &prefix, QUEUE),
            directory: Directory::new(redis.clone(), deployment),
            groups: Groups::new(redis.clone(), deployment),
            links: cfg
                .signing_key
                .as_ref()
                .map(|k| Links::new(k.expose_secret(), &cfg.public_url)),
            redis,
            prefix,
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    fn state_key(&self, id: &str) -> String {
        format!("{}approval:{id}", self.prefix)
    }

    fn notification_key(&self, id: &str) -> String {
        format!("{}approval:{id}:notification", self.prefix)
    }

    fn grant_key(&self, contact: &str, matter: &str) -> String {
        format!("{}approval:grant:{contact}:{matter}", self.prefix)
    }

    /// Whether `req` (with `recipients`, the directory contacts it names,
    /// in order) is a first contact a rule holds, and if so whom with and
    /// who decides. `None` for everything that goes straight through. A
    /// rule whose approvers are nowhere in the directory refuses the
    /// notification rather than hold it for nobody.
    pub async fn plan(
        &self,
        req: &NotificationRequest,
        lane: Lane,
        recipients: &[(usize, Contact)],
    ) -> anyhow::Result<Result<Option<Plan>, Rejected>> {
        if self.cfg.rules.is_empty() || lane == Lane::Emergency || recipients.is_empty() {
            return Ok(Ok(None));
        }
        let kind = CommunicationType::try_from(req.communication_type).unwrap_or_default();
        let rules: Vec<&ApprovalRule> = self.cfg.rules.iter().filter(|r| r.covers(kind)).collect();
        if rules.is_empty() {
            return Ok(Ok(None));
        }
        let group_ids: Vec<String> = rules
            .iter()
            .flat_map(|r| r.groups.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let groups = if group_ids.is_empty() {
            Vec::new()
        } else {
            self.groups.get_many(&group_ids).await?
        };
        let in_group = |group: &str, contact: &str| {
            groups
                .iter()
                .flatten()
                .any(|g| g.id == group && g.members.iter().any(|m| m == contact))
        };
        let mut matched: Vec<(usize, &Contact, &ApprovalRule)> = Vec::new();
        for (i, c) in recipients {
            let rule = rules.iter().find(|r| {
                c.role
                    .as_deref()
                    .is_some_and(|role| r.roles.iter().any(|x| x == role))
                    || r.groups.iter().any(|g| in_group(g, &c.id))
            });
            if let Some(rule) = rule
                && !matched.iter().any(|(_, m, _)| m.id == c.id)
            {
                matched.push((*i, c, rule));
            }
        }
        if matched.is_empty() {
            return Ok(Ok(None));
        }
        let matter = matter_of(req);
        let keys: Vec<String> = matched
            .iter()
            .map(|(_, c, _)| self.grant_key(&c.id, &matter))
            .collect();
        let mut redis = self.redis.clone();
        let granted: Vec<Option<String>> = redis.mget(&keys).await?;
        let first: Vec<(usize, &Contact, &ApprovalRule)> = matched
            .into_iter()
            .zip(granted)
            .filter_map(|(m, g)| g.is_none().then_some(m))
            .collect();
        let Some(&(index, _, _)) = first.first() else {
            return Ok(Ok(None));
        };
        let staff = match req.responsible_staff.as_str() {
            "" => None,
            id => self.directory.get(id).await?,
        };
        let mut approvers = BTreeSet::new();
        let mut names = BTreeSet::new();
        // The approvers the rules name, looked up in one round trip: only
        // those the directory knows can be asked.
        let named: Vec<String> = first
            .iter()
            .flat_map(|(_, _, r)| r.approvers.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let known = self.directory.get_many(&named).await?;
        approvers.extend(
            named
                .into_iter()
                .zip(known)
                .filter_map(|(id, c)| c.map(|_| id)),
        );
        for (_, _, rule) in &first {
            names.insert(rule.name.clone());
            if let Some(role) = &rule.approver_role {
                let all = self.directory.in_group(MemberOf::Role, role).await?;
                let team = staff.as_ref().and_then(|s| s.team.clone());
                let in_team: Vec<&Contact> = all
                    .iter()
                    .filter(|c| team.is_some() && c.team == team)
                    .collect();
                let chosen = if in_team.is_empty() {
                    all.iter().collect()
                } else {
                    in_team
                };
                approvers.extend(chosen.into_iter().map(|c| c.id.clone()));
            }
        }
        let rule = names.into_iter().collect::<Vec<_>>().join(",");
        if approvers.is_empty() {
            return Ok(Err(reject(
                ErrorCode::InvalidState,
                format!("recipients[{index}].contact_id"),
                format!(
                    "a first contact with this person needs approval (rule {rule}), and the \
                     directory has none of the rule's approvers"
                ),
            )));
        }
        let mut tell = None;
        for candidate in [&req.requester, &req.responsible_staff] {
            if !candidate.is_empty()
                && herald_proto::subjects::is_subject_token(candidate)
                && self.directory.get(candidate).await?.is_some()
            {
                tell = Some(candidate.clone());
                break;
            }
        }
        Ok(Ok(Some(Plan {
            rule,
            contact_ids: first.iter().map(|(_, c, _)| c.id.clone()).collect(),
            matter,
            approvers: approvers.into_iter().collect(),
            tell,
        })))
    }

    /// Stores a held notification and arms its timer, which asks the
    /// approvers at once. False if it was already held (a retried
    /// request): nothing changes.
    pub async fn hold(&self, held: &Held, notification: &[u8]) -> anyhow::Result<bool> {
        let mut redis = self.redis.clone();
        // Outlives the wait: a decided approval's notification is removed
        // once what follows from the decision is done.
        let keep = self.cfg.timeout + Duration::from_secs(24 * 3600);
        let _: () = redis
            .set_ex(
                self.notification_key(&held.id),
                notification,
                keep.as_secs(),
            )
            .await?;
        let value = serde_json::to_vec(held)?;
        let now = herald_runtime::clock::millis(chrono::Utc::now());
        Ok(self
            .timers
            .swap_state(
                &self.state_key(&held.id),
                None,
                &value,
                Duration::ZERO,
                &[TimerChange::At(held.id.clone(), now)],
            )
            .await?)
    }

    /// An approval's state as stored (the bytes, for compare-and-set) and
    /// read.
    pub async fn load(&self, id: &str) -> anyhow::Result<Option<(Vec<u8>, Held)>> {
        let mut redis = self.redis.clone();
        let raw: Option<Vec<u8>> = redis.get(self.state_key(id)).await?;
        match raw {
            None => Ok(None),
            Some(raw) => {
                let held = serde_json::from_slice(&raw)?;
                Ok(Some((raw, held)))
            }
        }
    }

    /// Replaces the state read as `seen` with `next` and moves its timer;
    /// false if someone changed it meanwhile.
    pub async fn swap(
        &self,
        seen: &[u8],
        next: &Held,
        change: TimerChange,
    ) -> anyhow::Result<bool> {
        let value = serde_json::to_vec(next)?;
        let ttl = if next.done {
            KEEP_DECIDED
        } else {
            Duration::ZERO
        };
        Ok(self
            .timers
            .swap_state(
                &self.state_key(&next.id),
                Some(seen),
                &value,
                ttl,
                &[change],
            )
            .await?)
    }

    /// The held notification, as intake would have stored it.
    pub async fn notification(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut redis = self.redis.clone();
        Ok(redis.get(self.notification_key(id)).await?)
    }

    /// Records the approval of first contact with `contacts` about
    /// `matter`, and drops the held copy once it has been released.
    pub async fn grant(&self, contacts: &[String], matter: &str) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for c in contacts {
            pipe.set_ex(self.grant_key(c, matter), "1", self.cfg.grant_ttl.as_secs())
                .ignore();
        }
        let mut redis = self.redis.clone();
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }

    pub async fn forget_notification(&self, id: &str) -> anyhow::Result<()> {
        let mut redis = self.redis.clone();
        let _: () = redis.del(self.notification_key(id)).await?;
        Ok(())
    }

    /// Every approval with a timer still set (those waiting, and decisions
    /// whose effects are under way), earliest first.
    pub async fn open(&self) -> anyhow::Result<Vec<Held>> {
        let (due, lease) = self.timers.keys();
        let mut redis = self.redis.clone();
        let (mut ids, leased): (Vec<String>, Vec<String>) = redis::pipe()
            .zrange(due, 0, -1)
            .zrange(lease, 0, -1)
            .query_async(&mut redis)
            .await?;
        ids.extend(leased);
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.state_key(id)).collect();
        let raw: Vec<Option<Vec<u8>>> = redis.mget(&keys).await?;
        let mut out: Vec<Held> = raw
            .into_iter()
            .flatten()
            .filter_map(|r| serde_json::from_slice(&r).ok())
            .collect();
        out.sort_by_key(|h: &Held| h.requested_at_ms);
        Ok(out)
    }

    pub fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    pub fn links(&self) -> Option<&Links> {
        self.links.as_ref()
    }
}

/// The matter an approval covers: the case, else the client the message is
/// about, else the person in general (`-`).
pub(crate) fn matter_of(req: &NotificationRequest) -> String {
    if !req.case_id.is_empty() {
        req.case_id.clone()
    } else if !req.about_contact_id.is_empty() {
        format!("about:{}", req.about_contact_id)
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matter_is_the_case_else_the_client_else_the_person() {
        let mut req = NotificationRequest {
            about_contact_id: "kid".into(),
            ..Default::default()
        };
        assert_eq!(matter_of(&req), "about:kid");
        req.case_id = "CASE-9".into();
        assert_eq!(matter_of(&req), "CASE-9");
        assert_eq!(matter_of(&NotificationRequest::default()), "-");
    }
}
