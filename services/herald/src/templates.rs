//! `herald templates list|propose|diff|preview|approve|reject`: template
//! versions approved before use (SOP 004). Editors propose a new version
//! (a draft) and read them, as the `editor` identity; approvers diff,
//! preview and decide them, as the `approver` identity (`--approver` on
//! the reading commands asks as one).

use std::{collections::BTreeMap, path::PathBuf};

use clap::{Args, Subcommand};
use herald_config::Config;
use herald_content::templates::{TemplateStore, diff, preview, source};
use herald_proto::{
    subjects,
    v1::{
        Channel, TemplateDecision, TemplateProposal, TemplateRef, TemplateReply, TemplateRequest,
        TemplateVersionInfo, template_reply, template_request::Op,
    },
};

use crate::{Failure, send};

#[derive(Subcommand)]
pub enum TemplatesCommand {
    /// Every version of a template (or of every template) with its state:
    /// draft, approved or rejected, who and when.
    List {
        id: Option<String>,
        /// The shipped files in `content.templates_dir`, read here without
        /// asking Herald.
        #[arg(long)]
        files: bool,
        #[command(flatten)]
        desk: Desk,
    },
    /// Propose a new version of a template (the next number) from a file
    /// written as a template file is, without `approved`: a draft until an
    /// approver approves it.
    Propose {
        file: PathBuf,
        /// The template, new or existing.
        #[arg(long)]
        id: String,
        /// The member of staff proposing it, by contact id.
        #[arg(long, env = "HERALD_STAFF")]
        by: String,
    },
    /// What a version changes, per language and part, against the newest
    /// approved version (or `--against`).
    Diff {
        id: String,
        version: u32,
        #[arg(long)]
        against: Option<u32>,
        #[command(flatten)]
        desk: Desk,
    },
    /// A version rendered in every language and on every channel it has,
    /// with the parameters given and a sample in brackets for the rest.
    Preview {
        id: String,
        version: u32,
        /// A parameter's value, `name=value`. Repeat for several.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        desk: Desk,
    },
    /// Approve a draft: from now on it is rendered (the newest approved
    /// version for requests that pin none). Not by its proposer.
    Approve {
        id: String,
        version: u32,
        /// The approver deciding, by contact id.
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a draft: it is never rendered.
    Reject {
        id: String,
        version: u32,
        #[arg(long)]
        by: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

/// Which desk a reading command asks.
#[derive(Args)]
pub struct Desk {
    /// Ask as an approver (the `approver` identity) rather than as an
    /// editor.
    #[arg(long)]
    approver: bool,
}

impl Desk {
    fn subject(&self) -> &'static str {
        if self.approver {
            subjects::INTAKE_TEMPLATE_DECISIONS
        } else {
            subjects::INTAKE_TEMPLATES
        }
    }
}

pub async fn run(cfg: &Config, cmd: TemplatesCommand) -> Result<(), Failure> {
    match cmd {
        TemplatesCommand::List {
            files: true, id, ..
        } => list_files(cfg, id.as_deref()),
        TemplatesCommand::List { id, desk, .. } => {
            let op = Op::List(id.unwrap_or_default());
            match ask(cfg, desk.subject(), op).await? {
                template_reply::Result::List(list) => {
                    for v in &list.versions {
                        println!("{}", row(v));
                    }
                    Ok(())
                }
                _ => Err(crate::unexpected()),
            }
        }
        TemplatesCommand::Propose { file, id, by } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Failure {
                code: 2,
                message: format!("{}: {e}", file.display()),
            })?;
            let op = Op::Propose(TemplateProposal {
                template_id: id,
                source: text,
                by,
            });
            let v = version(ask(cfg, subjects::INTAKE_TEMPLATES, op).await?)?;
            println!(
                "{} v{} proposed: a draft until an approver approves it \
                 (herald templates approve {} {} --by <approver>)",
                v.template_id, v.version, v.template_id, v.version
            );
            Ok(())
        }
        TemplatesCommand::Diff {
            id,
            version: wanted,
            against,
            desk,
        } => {
            let new = show(cfg, desk.subject(), &id, wanted).await?;
            let old = show(cfg, desk.subject(), &id, against.unwrap_or(0)).await?;
            let parse = |v: &TemplateVersionInfo| {
                source::parse(&v.source).map_err(|e| Failure {
                    code: 1,
                    message: format!("{} v{}: {e}", v.template_id, v.version),
                })
            };
            let changes = diff::diff(&parse(&old)?, &parse(&new)?);
            println!("--- {} v{} ({})", old.template_id, old.version, old.state);
            println!("+++ {} v{} ({})", new.template_id, new.version, new.state);
            if changes.is_empty() {
                println!("no differences");
            } else {
                print!("{}", diff::render(&changes));
            }
            Ok(())
        }
        TemplatesCommand::Preview {
            id,
            version: wanted,
            params,
            desk,
        } => {
            let given = parse_params(&params)?;
            let v = show(cfg, desk.subject(), &id, wanted).await?;
            let all = preview::preview(&id, v.version, &v.source, &given).map_err(|p| Failure {
                code: 1,
                message: p.join("\n"),
            })?;
            println!("{} v{} ({})", v.template_id, v.version, v.state);
            for p in all {
                println!("\n== [lang.{}] {}", p.language, p.channel.name());
                if p.channel == Channel::Email {
                    println!("Subject: {}\n", p.subject);
                }
                println!("{}", p.body.trim_end());
            }
            Ok(())
        }
        TemplatesCommand::Approve {
            id,
            version: n,
            by,
            reason,
        } => decide(cfg, id, n, true, by, reason.unwrap_or_default()).await,
        TemplatesCommand::Reject {
            id,
            version: n,
            by,
            reason,
        } => decide(cfg, id, n, false, by, reason).await,
    }
}

async fn decide(
    cfg: &Config,
    id: String,
    n: u32,
    approve: bool,
    by: String,
    reason: String,
) -> Result<(), Failure> {
    let op = Op::Decide(TemplateDecision {
        template_id: id,
        version: n,
        approve,
        by,
        reason,
    });
    let v = version(ask(cfg, subjects::INTAKE_TEMPLATE_DECISIONS, op).await?)?;
    println!(
        "{} v{} {} by {}: {}",
        v.template_id,
        v.version,
        v.state,
        v.decided_by,
        if v.state == "approved" {
            "it is rendered from now on"
        } else {
            "it is never rendered"
        }
    );
    Ok(())
}

async fn ask(cfg: &Config, subject: &str, op: Op) -> Result<template_reply::Result, Failure> {
    let req = TemplateRequest { op: Some(op) };
    let reply: TemplateReply = send::ask_intake(cfg, subject, &req).await?;
    match reply.result {
        Some(template_reply::Result::Rejected(r)) => Err(send::rejected(&r)),
        Some(r) => Ok(r),
        None => Err(crate::unexpected()),
    }
}

async fn show(
    cfg: &Config,
    subject: &str,
    id: &str,
    n: u32,
) -> Result<TemplateVersionInfo, Failure> {
    let op = Op::Show(TemplateRef {
        template_id: id.to_string(),
        version: n,
    });
    version(ask(cfg, subject, op).await?)
}

fn version(r: template_reply::Result) -> Result<TemplateVersionInfo, Failure> {
    match r {
        template_reply::Result::Version(v) => Ok(v),
        _ => Err(crate::unexpected()),
    }
}

/// `name=value` pairs, each checked.
fn parse_params(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Failure {
                code: 2,
                message: format!("--param {p:?}: write it as name=value"),
            }),
        })
        .collect()
}

fn time(t: &Option<herald_proto::Timestamp>) -> String {
    match t {
        None => String::new(),
        Some(t) => chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(Some(t)))
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
    }
}

/// One version on one line: id, number, state, origin, who and when.
fn row(v: &TemplateVersionInfo) -> String {
    let mut who = Vec::new();
    if !v.proposed_by.is_empty() {
        who.push(format!(
            "proposed by {} {}",
            v.proposed_by,
            time(&v.proposed_at)
        ));
    }
    if !v.decided_by.is_empty() {
        let verb = if v.state == "rejected" {
            "rejected"
        } else {
            "approved"
        };
        let at = time(&v.decided_at);
        who.push(
            format!("{verb} by {} {at}", v.decided_by)
                .trim_end()
                .to_string(),
        );
    }
    if !v.reason.is_empty() {
        who.push(format!("({})", v.reason));
    }
    format!(
        "{:<24} v{:<3} {:<9} {:<9} [{}] {}",
        v.template_id,
        v.version,
        v.state,
        v.origin,
        v.languages.join(", "),
        if who.is_empty() {
            v.description.clone()
        } else {
            who.join("; ")
        }
    )
}

/// The shipped files, read here.
fn list_files(cfg: &Config, id: Option<&str>) -> Result<(), Failure> {
    let store = TemplateStore::load(&cfg.content.templates_dir).map_err(|p| Failure {
        code: 1,
        message: p.join("\n"),
    })?;
    for t in store.all().filter(|t| id.is_none_or(|i| t.id == i)) {
        let langs: Vec<&str> = t.languages.keys().map(String::as_str).collect();
        println!(
            "{:<24} v{:<3} {:<9} [{}] {}",
            t.id,
            t.version,
            if t.approved { "approved" } else { "draft" },
            langs.join(", "),
            t.description
        );
    }
    Ok(())
}
