//! Template versions approved before use (SOP 004 "procedures for updating
//! and approving templates"; SOP 001 §4.1 "approved templates"). Editors
//! propose a new version of a template on `herald.v1.intake.templates`; it
//! is a draft, checked fully before it is stored ([`records`]), until an
//! approver other than its proposer approves or rejects it on
//! `herald.v1.intake.template_decisions`. An approved version is written to
//! the approved-templates stream, which every intake and router follows,
//! so it is checked and rendered from then on without a restart; every
//! step is in the trail under `template:<id>`.

pub mod records;

use herald_content::templates::{Origin, TemplateVersion, check_proposal};
use herald_proto::{
    Message, subjects,
    v1::{
        ApprovedTemplate, AuditStep, ErrorCode, Rejected, TemplateDecision, TemplateProposal,
        TemplateRef, TemplateReply, TemplateRequest, TemplateVersionInfo, TemplateVersions,
        template_reply, template_request::Op,
    },
};
use herald_runtime::audit::Entry;
use tracing::{error, info};

use crate::{Intake, unavailable, validate::reject};
use records::{Proposal, State};

/// Attempts at a version number, or at a decision, before "try again".
const ATTEMPTS: usize = 8;

/// How long an approval waits for this intake to have the version it
/// wrote, so that a request right after the answer may use it.
const IN_USE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which of the two request subjects a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Desk {
    /// Editors: list, show, propose.
    Editors,
    /// Approvers: list, show, decide.
    Approvers,
}

impl Intake {
    /// Answers one request from NATS.
    pub(crate) async fn answer_templates(
        &self,
        msg: async_nats::Message,
        desk: Desk,
    ) -> TemplateReply {
        let result = match self.template_request(&msg, desk).await {
            Ok(r) => r,
            Err(r) => template_reply::Result::Rejected(r),
        };
        TemplateReply {
            result: Some(result),
        }
    }

    async fn template_request(
        &self,
        msg: &async_nats::Message,
        desk: Desk,
    ) -> Result<template_reply::Result, Rejected> {
        let Some(caller) = crate::caller(msg) else {
            return Err(crate::unnamed_caller());
        };
        let req = TemplateRequest::decode(msg.payload.clone()).map_err(|e| {
            reject(
                ErrorCode::Undecodable,
                "",
                format!("not a herald.v1.TemplateRequest: {e}"),
            )
        })?;
        match (req.op, desk) {
            (None, _) => Err(reject(
                ErrorCode::InvalidArgument,
                "op",
                "is required: list, show, propose or decide",
            )),
            (Some(Op::List(id)), _) => self.list_templates(id.trim()).await,
            (Some(Op::Show(r)), _) => self.show_template(&r).await,
            (Some(Op::Propose(p)), Desk::Editors) => self.propose_template(p, caller).await,
            (Some(Op::Decide(d)), Desk::Approvers) => self.decide_template(d, caller).await,
            (Some(Op::Propose(_)), Desk::Approvers) => Err(reject(
                ErrorCode::Unauthorized,
                "op",
                "propose is for editors, on herald.v1.intake.templates",
            )),
            (Some(Op::Decide(_)), Desk::Editors) => Err(reject(
                ErrorCode::Unauthorized,
                "op",
                "decide is for approvers, on herald.v1.intake.template_decisions",
            )),
        }
        .inspect_err(|r| info!(field = %r.field, "template request refused"))
    }

    /// Every version of `id` (or of every template), shipped and proposed.
    async fn list_templates(&self, id: &str) -> Result<template_reply::Result, Rejected> {
        let store = self.templates.current();
        let mut ids: Vec<String> = if id.is_empty() {
            let mut all: Vec<String> = store.all().map(|t| t.id.clone()).collect();
            all.extend(self.proposals.ids().await.map_err(unreadable)?);
            all.sort();
            all.dedup();
            all
        } else {
            vec![checked_id(id, "list")?.to_string()]
        };
        ids.retain(|i| !i.is_empty());
        let mut versions = Vec::new();
        for id in &ids {
            versions.extend(self.versions_of(id, false).await?);
        }
        if versions.is_empty() && !id.is_empty() {
            return Err(no_template("list", id));
        }
        Ok(template_reply::Result::List(TemplateVersions { versions }))
    }

    /// Every version of one template: the proposed ones as intake keeps
    /// them, the shipped ones as their files say.
    async fn versions_of(
        &self,
        id: &str,
        with_source: bool,
    ) -> Result<Vec<TemplateVersionInfo>, Rejected> {
        let store = self.templates.current();
        let proposed = self.proposals.all(id).await.map_err(unreadable)?;
        let mut out: Vec<TemplateVersionInfo> = store
            .versions(id)
            .iter()
            .filter(|t| !proposed.iter().any(|p| p.version == t.version))
            .map(|t| shipped(t, with_source))
            .collect();
        out.extend(proposed.iter().map(|p| p.to_wire(with_source)));
        out.sort_by_key(|v| v.version);
        Ok(out)
    }

    async fn show_template(&self, r: &TemplateRef) -> Result<template_reply::Result, Rejected> {
        let id = checked_id(r.template_id.trim(), "show")?;
        let version = if r.version == 0 {
            self.templates
                .current()
                .resolve(id, 0)
                .map(|t| t.version)
                .map_err(|e| reject(ErrorCode::NotFound, "show.template_id", e.to_string()))?
        } else {
            r.version
        };
        self.versions_of(id, true)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .map(template_reply::Result::Version)
            .ok_or_else(|| {
                reject(
                    ErrorCode::NotFound,
                    "show.version",
                    format!("template {id:?} has no version {version}"),
                )
            })
    }

    async fn propose_template(
        &self,
        p: TemplateProposal,
        caller: &str,
    ) -> Result<template_reply::Result, Rejected> {
        let by = p.by.trim();
        let id = p.template_id.trim();
        self.staff_member(by, "propose.by").await?;
        if let Err(problems) = check_proposal(id, &p.source) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                if problems.len() == 1 && problems[0].starts_with("template_id:") {
                    "propose.template_id"
                } else {
                    "propose.source"
                },
                format!(
                    "the proposal has {} problem(s):\n  {}",
                    problems.len(),
                    problems.join("\n  ")
                ),
            ));
        }
        let now = herald_runtime::clock::millis(chrono::Utc::now());
        for _ in 0..ATTEMPTS {
            let taken = self
                .proposals
                .all(id)
                .await
                .map_err(unreadable)?
                .iter()
                .map(|p| p.version)
                .max()
                .unwrap_or(0);
            let version = taken.max(self.templates.current().newest_version(id)) + 1;
            let proposal = Proposal {
                template_id: id.to_string(),
                version,
                source: p.source.clone(),
                state: State::Draft,
                proposed_by: by.to_string(),
                proposed_at: now,
                caller: caller.to_string(),
                decided_by: String::new(),
                decided_at: 0,
                reason: String::new(),
            };
            match self.proposals.insert(&proposal).await {
                Ok(true) => {
                    self.template_trail(&proposal, AuditStep::TemplateProposed, by, caller)
                        .await?;
                    info!(template = id, version, "template version proposed");
                    return Ok(template_reply::Result::Version(proposal.to_wire(true)));
                }
                // Another proposal took the number: the next one.
                Ok(false) => continue,
                Err(e) => return Err(unreadable(e)),
            }
        }
        Err(unavailable())
    }

    async fn decide_template(
        &self,
        d: TemplateDecision,
        caller: &str,
    ) -> Result<template_reply::Result, Rejected> {
        let id = checked_id(d.template_id.trim(), "decide")?;
        let by = d.by.trim();
        self.staff_member(by, "decide.by").await?;
        for _ in 0..ATTEMPTS {
            let Some((seen, held)) = self
                .proposals
                .load(id, d.version)
                .await
                .map_err(unreadable)?
            else {
                let shipped = self
                    .templates
                    .current()
                    .versions(id)
                    .iter()
                    .any(|t| t.version == d.version && t.origin == Origin::File);
                return Err(reject(
                    ErrorCode::NotFound,
                    "decide.version",
                    if shipped {
                        format!(
                            "template {id:?} version {} is a shipped file; its file says whether it is approved",
                            d.version
                        )
                    } else {
                        format!(
                            "template {id:?} has no proposed version {} (herald templates list {id})",
                            d.version
                        )
                    },
                ));
            };
            // Approving again what the same approver approved: the
            // version is written to the stream and the trail again (what
            // failed the first time completes; a repeat is dropped as a
            // duplicate).
            if held.state == State::Approved && d.approve && held.decided_by == by {
                self.put_in_use(&held).await?;
                self.template_trail(&held, AuditStep::TemplateApproved, by, caller)
                    .await?;
                return Ok(template_reply::Result::Version(held.to_wire(false)));
            }
            let now = herald_runtime::clock::millis(chrono::Utc::now());
            let next = held.decide(d.approve, by, &d.reason, now)?;
            match self.proposals.swap(&seen, &next).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(unreadable(e)),
            }
            if d.approve {
                self.put_in_use(&next).await?;
            }
            let step = if d.approve {
                AuditStep::TemplateApproved
            } else {
                AuditStep::TemplateRejected
            };
            self.template_trail(&next, step, by, caller).await?;
            info!(
                template = id,
                version = next.version,
                state = next.state.name(),
                "template version decided"
            );
            return Ok(template_reply::Result::Version(next.to_wire(false)));
        }
        Err(unavailable())
    }

    /// Writes an approved version to the approved-templates stream and
    /// waits until this intake checks requests against it.
    async fn put_in_use(&self, p: &Proposal) -> Result<(), Rejected> {
        let approved = ApprovedTemplate {
            template_id: p.template_id.clone(),
            version: p.version,
            source: p.source.clone(),
            approved_at: Some(herald_proto::now()),
        };
        let subject = subjects::template_version(&p.template_id, p.version);
        let msg_id = format!("{subject}.approved");
        let written = match self.bus.publish(subject, &approved, Some(&msg_id)).await {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let ack = written.map_err(|e| {
            error!(error = %e, "approved template version not written");
            reject(
                ErrorCode::Unavailable,
                "",
                "the approval is recorded but the version could not be put in use just now; approve it again to finish",
            )
        })?;
        if !self.templates.reach(ack.sequence, IN_USE_WAIT).await {
            error!(
                seq = ack.sequence,
                "approved template version not read back in time"
            );
        }
        Ok(())
    }

    /// The trail record of a step on a version: filed under the
    /// template's trail id, naming the member of staff who took it.
    async fn template_trail(
        &self,
        p: &Proposal,
        step: AuditStep,
        by: &str,
        caller: &str,
    ) -> Result<(), Rejected> {
        let summary = match step {
            AuditStep::TemplateProposed => {
                format!("template {} v{} proposed by {by}", p.template_id, p.version)
            }
            AuditStep::TemplateApproved => format!(
                "template {} v{} approved by {by} (proposed by {})",
                p.template_id, p.version, p.proposed_by
            ),
            _ => format!(
                "template {} v{} rejected by {by} (proposed by {}): {}",
                p.template_id, p.version, p.proposed_by, p.reason
            ),
        };
        let entry = Entry {
            notification_id: subjects::template_trail_id(&p.template_id),
            responsible_staff: by.to_string(),
            actor: Some(by.to_string()),
            caller: caller.to_string(),
            record_id: Some(format!(
                "template-{}-v{}-{}",
                p.template_id,
                p.version,
                herald_proto::v1::AuditStep::name_of(step as i32)
            )),
            ..Entry::new(step, summary)
        }
        .attr("template_id", &p.template_id)
        .attr("version", p.version)
        .attr("proposed_by", &p.proposed_by)
        .attr("state", p.state.name());
        let entry = if p.reason.is_empty() {
            entry
        } else {
            entry.attr("reason", &p.reason)
        };
        self.auditor.record_durable(entry).await.map_err(|e| {
            error!(error = %e, "template trail record not written");
            unavailable()
        })
    }

    /// Checks that `by` names a member of staff in the directory.
    async fn staff_member(&self, by: &str, field: &str) -> Result<(), Rejected> {
        if by.is_empty() {
            return Err(reject(
                ErrorCode::InvalidArgument,
                field,
                "is required: the member of staff, by contact id",
            ));
        }
        if !subjects::is_subject_token(by) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                field,
                "is not a contact id",
            ));
        }
        match self.directory.get(by).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(reject(
                ErrorCode::UnknownContact,
                field,
                format!("{by:?} is not in the directory"),
            )),
            Err(e) => {
                error!(error = %e, "directory unreadable");
                Err(unavailable())
            }
        }
    }

    /// Why a request pinning `version` of `id` cannot have it, when the
    /// version is a proposal that is not approved (or not yet in use
    /// here).
    pub(crate) async fn template_refusal(&self, id: &str, version: u32) -> Option<String> {
        if version == 0 || !herald_content::templates::is_template_id(id) {
            return None;
        }
        match self.proposals.load(id, version).await {
            Ok(Some((_, p))) => Some(p.refusal().unwrap_or_else(|| {
                format!(
                    "template {id:?} version {version} was approved at {} and is not in use here yet; retry shortly",
                    records::when(p.decided_at)
                )
            })),
            _ => None,
        }
    }
}

/// A shipped version as the command line shows it.
fn shipped(t: &TemplateVersion, with_source: bool) -> TemplateVersionInfo {
    TemplateVersionInfo {
        template_id: t.id.clone(),
        version: t.version,
        state: if t.approved { "approved" } else { "draft" }.into(),
        origin: t.origin.name().into(),
        description: t.description.clone(),
        decided_by: t.approved_by.clone(),
        languages: t.languages.keys().cloned().collect(),
        source: if with_source {
            t.text.clone()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn checked_id<'a>(id: &'a str, op: &str) -> Result<&'a str, Rejected> {
    if herald_content::templates::is_template_id(id) {
        Ok(id)
    } else {
        Err(reject(
            ErrorCode::InvalidArgument,
            format!("{op}.template_id"),
            format!(
                "{id:?} is not a template id (lower-case letters, digits, _ and -, starting with a letter)"
            ),
        ))
    }
}

fn no_template(op: &str, id: &str) -> Rejected {
    reject(
        ErrorCode::UnknownTemplate,
        format!("{op}.template_id"),
        format!("no template named {id:?}"),
    )
}

fn unreadable(e: anyhow::Error) -> Rejected {
    error!(error = %e, "template versions unreadable");
    unavailable()
}
