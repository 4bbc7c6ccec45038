//! `herald send`: build a notification request from flags or a file and
//! submit it over NATS (or gRPC with `--grpc`, carrying the calling
//! system's `--api-key`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::Args;
use herald_config::{Config, Secret};
use herald_proto::{
    Message, subjects,
    v1::{
        AuditStep, BreachRelease, BreachReply, CancelReply, CancelRequest, Channel,
        CommunicationType, Confidentiality, InlineRecipient, IntakeReply, Lane,
        NotificationRequest, Priority, Recipient, Rejected, breach_reply, cancel_reply,
        intake_client::IntakeClient, intake_reply, recipient::Target,
    },
};
use serde::Deserialize;

use crate::{Failure, refused};

#[derive(Args, Debug)]
pub struct SendArgs {
    /// A JSON or YAML file describing the notification (flags override it).
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Recipient by contact id (repeatable).
    #[arg(long = "to", value_name = "CONTACT_ID")]
    to: Vec<String>,
    /// Recipient by email address, with consent to email.
    #[arg(long, value_name = "ADDRESS")]
    email: Option<String>,
    /// Recipient by E.164 phone number, with consent to SMS and calls.
    #[arg(long, value_name = "E164")]
    phone: Option<String>,
    /// Name of the inline recipient.
    #[arg(long)]
    name: Option<String>,
    /// Template id, e.g. inquiry_received.
    #[arg(long, short)]
    template: Option<String>,
    /// Template version (default: newest approved).
    #[arg(long)]
    template_version: Option<u32>,
    /// Template parameter (repeatable): --param reference=INQ-1.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// initial_inquiry, service_update, feedback_complaint, resolution,
    /// incident, escalation_notice, follow_up, data_breach, emergency,
    /// status_report.
    #[arg(long = "type")]
    communication_type: Option<String>,
    /// low, normal, high or critical.
    #[arg(long)]
    priority: Option<String>,
    /// standard, confidential or sensitive (default: by type).
    #[arg(long)]
    confidentiality: Option<String>,
    /// Only these channels (repeatable): email, sms, voice.
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// Case the notification belongs to.
    #[arg(long = "case")]
    case_id: Option<String>,
    /// The client whose matter this is, when it goes to a third party: it
    /// is sent only with that client's consent to share on record.
    #[arg(long, value_name = "CONTACT")]
    about: Option<String>,
    /// A data breach: a contact whose data it exposed (repeatable); nothing
    /// sensitive goes to them until `herald breach release`.
    #[arg(long = "affected", value_name = "CONTACT")]
    affected: Vec<String>,
    /// Idempotency key; reuse it to retry safely (default: a new one).
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    requester: Option<String>,
    /// Staff member responsible for the matter.
    #[arg(long)]
    staff: Option<String>,
    /// Language to use instead of the recipient's.
    #[arg(long)]
    language: Option<String>,
    /// A key that stops this notification once cancelled with
    /// `herald cancel` (repeatable).
    #[arg(long = "cancel-key", value_name = "KEY")]
    cancel_keys: Vec<String>,
    /// Use the emergency lane.
    #[arg(long)]
    emergency: bool,
    /// Submit over gRPC to this address (host:port) instead of NATS.
    #[arg(long, value_name = "HOST:PORT")]
    grpc: Option<String>,
    /// The calling system's API key, sent with `--grpc` (`herald apikey
    /// create` makes one).
    #[arg(
        long,
        env = "HERALD_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        value_parser = |s: &str| Ok::<_, std::convert::Infallible>(Secret::from(s))
    )]
    api_key: Option<Secret>,
    /// With `--grpc`: talk TLS to intake, checking its certificate against
    /// this CA (PEM); the address's host must be a name the certificate
    /// holds.
    #[arg(long, env = "HERALD_GRPC_CA_FILE", value_name = "FILE")]
    grpc_ca: Option<PathBuf>,
    /// Wait until every job is sent or failed, and print the trail.
    #[arg(long)]
    wait: bool,
}

/// The file form of a notification.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileRequest {
    idempotency_key: Option<String>,
    #[serde(rename = "type")]
    communication_type: Option<String>,
    priority: Option<String>,
    confidentiality: Option<String>,
    template: Option<String>,
    template_version: Option<u32>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    recipients: Vec<FileRecipient>,
    #[serde(default)]
    channels: Vec<String>,
    case: Option<String>,
    about: Option<String>,
    #[serde(default)]
    affected_contacts: Vec<String>,
    requester: Option<String>,
    responsible_staff: Option<String>,
    language: Option<String>,
    #[serde(default)]
    cancel_keys: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileRecipient {
    contact: Option<String>,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    language: Option<String>,
    preferred_channel: Option<String>,
    /// Channels the person consented to; default: every one given.
    consent: Option<Vec<String>>,
    #[serde(default)]
    identity_verified: bool,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn build(args: &SendArgs) -> Result<NotificationRequest, Failure> {
    let mut f = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            serde_saphyr::from_str::<FileRequest>(&text)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?
        }
        None => FileRequest::default(),
    };
    for id in &args.to {
        f.recipients.push(FileRecipient {
            contact: Some(id.clone()),
            name: None,
            email: None,
            phone: None,
            language: None,
            preferred_channel: None,
            consent: None,
            identity_verified: false,
        });
    }
    if args.email.is_some() || args.phone.is_some() {
        f.recipients.push(FileRecipient {
            contact: None,
            name: args.name.clone(),
            email: args.email.clone(),
            phone: args.phone.clone(),
            language: args.language.clone(),
            preferred_channel: None,
            consent: None,
            identity_verified: false,
        });
    }
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| usage(format!("--param {p:?}: expected KEY=VALUE")))?;
        f.params.insert(k.to_string(), v.to_string());
    }
    macro_rules! take {
        ($flag:expr, $field:expr) => {
            if let Some(v) = $flag.clone() {
                $field = Some(v);
            }
        };
    }
    take!(args.communication_type, f.communication_type);
    take!(args.priority, f.priority);
    take!(args.confidentiality, f.confidentiality);
    take!(args.template, f.template);
    take!(args.case_id, f.case);
    take!(args.about, f.about);
    f.affected_contacts.extend(args.affected.iter().cloned());
    take!(args.key, f.idempotency_key);
    take!(args.requester, f.requester);
    take!(args.staff, f.responsible_staff);
    take!(args.language, f.language);
    if args.template_version.is_some() {
        f.template_version = args.template_version;
    }
    if !args.channels.is_empty() {
        f.channels = args.channels.clone();
    }
    f.cancel_keys.extend(args.cancel_keys.iter().cloned());

    let channel = |s: &str, what: &str| -> Result<i32, Failure> {
        Channel::parse(s)
            .map(|c| c as i32)
            .ok_or_else(|| usage(format!("{what}: {s:?} is not email, sms or voice")))
    };
    let mut recipients = Vec::new();
    for (i, r) in f.recipients.iter().enumerate() {
        let target = match &r.contact {
            Some(id) => Target::ContactId(id.clone()),
            None => {
                let given = |c: &str| match c {
                    "email" => r.email.is_some(),
                    _ => r.phone.is_some(),
                };
                let consent: Vec<String> = r.consent.clone().unwrap_or_else(|| {
                    ["email", "sms", "voice"]
                        .into_iter()
                        .filter(|c| given(c))
                        .map(str::to_string)
                        .collect()
                });
                let has = |c: &str| {
                    consent
                        .iter()
                        .any(|x| Channel::parse(x) == Channel::parse(c))
                };
                Target::Inline(InlineRecipient {
                    name: r.name.clone().unwrap_or_default(),
                    email: r.email.clone().unwrap_or_default(),
                    phone: r.phone.clone().unwrap_or_default(),
                    language: r.language.clone().unwrap_or_default(),
                    preferred_channel: match &r.preferred_channel {
                        Some(c) => channel(c, &format!("recipients[{i}].preferred_channel"))?,
                        None => 0,
                    },
                    consent_email: has("email"),
                    consent_sms: has("sms"),
                    consent_voice: has("voice"),
                    identity_verified: r.identity_verified,
                })
            }
        };
        recipients.push(Recipient {
            target: Some(target),
        });
    }
    let communication_type = match f.communication_type.as_deref() {
        None => herald_proto::v1::CommunicationType::InitialInquiry as i32,
        Some(t) => CommunicationType::parse(t)
            .ok_or_else(|| usage(format!("--type {t:?} is not a communication type")))?
            as i32,
    };
    let priority = match f.priority.as_deref() {
        None => 0,
        Some(p) => Priority::parse(p)
            .ok_or_else(|| usage(format!("--priority {p:?}: low, normal, high or critical")))?
            as i32,
    };
    let confidentiality = match f.confidentiality.as_deref() {
        None => 0,
        Some(c) => Confidentiality::parse(c).ok_or_else(|| {
            usage(format!(
                "--confidentiality {c:?}: standard, confidential or sensitive"
            ))
        })? as i32,
    };
    let channel_override = f
        .channels
        .iter()
        .map(|c| channel(c, "--channel"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NotificationRequest {
        idempotency_key: f
            .idempotency_key
            .unwrap_or_else(|| format!("cli-{}", ulid::Ulid::new())),
        communication_type,
        priority,
        confidentiality,
        recipients,
        template_id: f.template.unwrap_or_default(),
        template_version: f.template_version.unwrap_or(0),
        params: f.params,
        channel_override,
        case_id: f.case.unwrap_or_default(),
        requester: f.requester.unwrap_or_else(requester),
        responsible_staff: f.responsible_staff.unwrap_or_default(),
        language: f.language.unwrap_or_default(),
        cancel_keys: f.cancel_keys,
        about_contact_id: f.about.unwrap_or_default(),
        affected_contact_ids: f.affected_contacts,
        ..Default::default()
    })
}

pub async fn run(cfg: &Config, args: SendArgs) -> Result<(), Failure> {
    let req = build(&args)?;
    let lane = if args.emergency {
        Lane::Emergency
    } else {
        Lane::Normal
    };
    let reply: IntakeReply = match &args.grpc {
        Some(addr) => {
            let mut client = IntakeClient::new(grpc_channel(addr, args.grpc_ca.as_deref()).await?);
            let mut request = tonic::Request::new(req.clone());
            if let Some(key) = &args.api_key {
                let value = format!("Bearer {}", key.expose_secret())
                    .parse()
                    .map_err(|_| Failure {
                        code: 2,
                        message: "--api-key must be printable ASCII".into(),
                    })?;
                request.metadata_mut().insert("authorization", value);
            }
            match client.notify(request).await {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    let code = match status.code() {
                        tonic::Code::Unavailable => 1,
                        _ => 3,
                    };
                    return Err(Failure {
                        code,
                        message: format!("refused: {}", status.message()),
                    });
                }
            }
        }
        None => ask_intake(cfg, subjects::intake_notify(lane), &req).await?,
    };
    match reply.result {
        Some(intake_reply::Result::Accepted(a)) => {
            println!(
                "{} {}{}",
                match (a.duplicate, a.awaiting_approval) {
                    (true, _) => "already accepted:",
                    (false, true) => "accepted, awaiting approval (herald approvals show):",
                    (false, false) => "accepted:",
                },
                a.notification_id,
                if args.key.is_none() && args.file.is_none() {
                    format!("  (idempotency key {})", req.idempotency_key)
                } else {
                    String::new()
                }
            );
            if args.wait {
                wait_and_print(cfg, &a.notification_id).await?;
            }
            Ok(())
        }
        Some(intake_reply::Result::Rejected(r)) => Err(rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

/// Sends `req` to intake over NATS request/reply and decodes its answer.
pub async fn ask_intake<Req: Message, Rep: Message + Default>(
    cfg: &Config,
    subject: &str,
    req: &Req,
) -> Result<Rep, Failure> {
    ask(cfg, subject, req, "intake").await
}

/// A gRPC channel to intake at `addr`: TLS checked against `ca` when
/// given, else plain.
async fn grpc_channel(
    addr: &str,
    ca: Option<&std::path::Path>,
) -> Result<tonic::transport::Channel, Failure> {
    let unreachable = |e: &dyn std::fmt::Display| Failure {
        code: 1,
        message: format!("cannot reach intake over gRPC at {addr}: {e}"),
    };
    let scheme = if ca.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| Failure {
            code: 2,
            message: format!("--grpc {addr:?}: {e}"),
        })?;
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| Failure {
            code: 2,
            message: format!("--grpc-ca {}: {e}", ca.display()),
        })?;
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            )
            .map_err(|e| unreachable(&e))?;
    }
    endpoint.connect().await.map_err(|e| unreachable(&e))
}

/// Sends `req` over NATS request/reply to `service` and decodes its answer.
pub async fn ask<Req: Message, Rep: Message + Default>(
    cfg: &Config,
    subject: &str,
    req: &Req,
    service: &str,
) -> Result<Rep, Failure> {
    let bus = crate::connect_bus(cfg, crate::role_for(subject)).await?;
    // Requests from outside Herald are addressed under the caller's name.
    let subject = if subjects::FROM_CALLERS.contains(&subject) {
        subjects::from_caller(subject, &bus.identity)
    } else {
        subject.to_string()
    };
    let msg = tokio::time::timeout(
        Duration::from_secs(15),
        bus.client.request(subject, req.encode_to_vec().into()),
    )
    .await
    .map_err(|_| Failure {
        code: 1,
        message: format!("{service} did not answer within 15s"),
    })?
    .map_err(|e| Failure {
        code: 1,
        message: format!("{service} did not answer ({e}); is the {service} service running?"),
    })?;
    Ok(Rep::decode(msg.payload)?)
}

/// A refusal as the caller sees it: the code, the field and why.
pub fn rejected(r: &Rejected) -> Failure {
    let code = herald_proto::v1::ErrorCode::name_of(r.code);
    let where_ = if r.field.is_empty() {
        String::new()
    } else {
        format!("{}: ", r.field)
    };
    refused(format!("refused ({code}): {where_}{}", r.message))
}

/// Who the command line says is asking: `cli:<login>`.
pub fn requester() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    )
}

/// Releases a data breach's containment, as the Data Protection Officer
/// (the `dpo` identity).
pub async fn release_breach(
    cfg: &Config,
    id: String,
    reason: Option<String>,
) -> Result<(), Failure> {
    let req = BreachRelease {
        breach_id: id.clone(),
        reason: reason.unwrap_or_default(),
        requester: requester(),
    };
    let reply: BreachReply = ask_intake(cfg, subjects::INTAKE_BREACH, &req).await?;
    match reply.result {
        Some(breach_reply::Result::Released(_)) => {
            println!("released {id}: what it held goes out again");
            Ok(())
        }
        Some(breach_reply::Result::Rejected(r)) => Err(rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

pub async fn cancel(cfg: &Config, key: String, reason: Option<String>) -> Result<(), Failure> {
    let req = CancelRequest {
        cancel_key: key.clone(),
        reason: reason.unwrap_or_default(),
        requester: requester(),
    };
    let reply: CancelReply = ask_intake(cfg, subjects::INTAKE_CANCEL, &req).await?;
    match reply.result {
        Some(cancel_reply::Result::Cancelled(true)) => {
            println!("cancelled {key}: nothing carrying it is sent from now on");
            Ok(())
        }
        Some(cancel_reply::Result::Cancelled(false)) => {
            println!("{key} was already cancelled");
            Ok(())
        }
        Some(cancel_reply::Result::Rejected(r)) => Err(rejected(&r)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

/// Polls the trail until every routed job is sent or has failed.
async fn wait_and_print(cfg: &Config, id: &str) -> Result<(), Failure> {
    // Following the trail is an operator's view, not the sender's.
    let bus = crate::connect_bus(cfg, herald_proto::access::Role::Operator).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let trail =
            herald_runtime::audit::read_trail(&bus, &subjects::audit_of_notification(id)).await?;
        let rendered = trail
            .iter()
            .filter(|r| r.step == AuditStep::Rendered as i32)
            .count();
        let finished = trail
            .iter()
            .filter(|r| {
                [
                    AuditStep::Sent,
                    AuditStep::DeadLettered,
                    AuditStep::Fallback,
                    AuditStep::Cancelled,
                ]
                .iter()
                .any(|s| r.step == *s as i32)
            })
            .count();
        let routed = trail.iter().any(|r| r.step == AuditStep::Routed as i32);
        if (routed && finished >= rendered && rendered > 0)
            || tokio::time::Instant::now() > deadline
        {
            crate::trail::print(&trail, false);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_file_reads_as_yaml_or_json() {
        let yaml = "type: transactional\ntemplate: appointment_reminder\nparams:\n  count: 3\n  when: tomorrow\nrecipients:\n  - contact: alice\n  - name: Bob\n    phone: \"+447700900002\"\n    consent: [sms]\n";
        let f: FileRequest = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(f.communication_type.as_deref(), Some("transactional"));
        assert_eq!(f.params["count"], "3");
        assert_eq!(f.recipients[1].phone.as_deref(), Some("+447700900002"));
        let json = r#"{"template": "t", "recipients": [{"contact": "alice"}]}"#;
        let f: FileRequest = serde_saphyr::from_str(json).unwrap();
        assert_eq!(f.recipients[0].contact.as_deref(), Some("alice"));
        let err = serde_saphyr::from_str::<FileRequest>("template: t\ncolour: red\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour") && err.contains("line 2"), "{err}");
    }
}
