//! Who a broadcast reaches and what each of them gets.
//!
//! The audience (contacts, groups, organisations, roles) becomes one list
//! of people, each once however many ways they were named, numbered in id
//! order. Each person gets, whatever channel they prefer, an email and a
//! call (and an SMS when the broadcast asks for one) in their language,
//! else the broadcast's default language. Every message carries the way to
//! confirm: a personal signed link in the email, a key to press on the
//! call, a word to reply by SMS (`broadcast_confirmation` template).
//!
//! An emergency broadcast reaches every address the directory holds for a
//! person: the consent flags and preferred channel govern ordinary traffic,
//! not the emergency protocol (SOP 002 §8.2: email *and* phone).
//!
//! Job ids are derived (`<broadcast>-r<i>-<channel>-<wave>`), so planning
//! the same wave twice yields the same jobs, which JetStream and the send
//! ledger drop as duplicates.

use std::collections::{BTreeMap, BTreeSet};

use herald_content::templates::TemplateStore;
use herald_directory::{
    contacts::{Contact, Directory, DirectoryError, MemberOf},
    groups::Groups,
};
use herald_proto::Timestamp;
use herald_proto::broadcasts;
use herald_proto::v1::{
    Audience, BroadcastMessage, Channel, CommunicationType, Confidentiality, DeliveryJob, Lane,
    Priority, StartBroadcast, UpdateBroadcast,
};

use crate::link::{Kind, Signer};

/// The people an audience names, each once, in id order; and the ids that
/// are no longer in the directory.
pub async fn expand(
    directory: &Directory,
    groups: &Groups,
    audience: &Audience,
) -> Result<(Vec<Contact>, Vec<String>), DirectoryError> {
    let mut wanted: BTreeSet<String> = audience.contact_ids.iter().cloned().collect();
    for g in groups
        .get_many(&audience.group_ids)
        .await?
        .into_iter()
        .flatten()
    {
        wanted.extend(g.members);
    }
    let mut found: BTreeMap<String, Contact> = BTreeMap::new();
    for (by, values) in [
        (MemberOf::Organisation, &audience.organisations),
        (MemberOf::Role, &audience.roles),
    ] {
        for v in values {
            for c in directory.in_group(by, v).await? {
                wanted.remove(&c.id);
                found.insert(c.id.clone(), c);
            }
        }
    }
    let rest: Vec<String> = wanted
        .into_iter()
        .filter(|id| !found.contains_key(id))
        .collect();
    let mut missing = Vec::new();
    for (id, c) in rest.iter().zip(directory.get_many(&rest).await?) {
        match c {
            Some(c) => {
                found.insert(id.clone(), c);
            }
            None => missing.push(id.clone()),
        }
    }
    Ok((found.into_values().collect(), missing))
}

/// Looks up recipients already numbered; `None` where a contact has since
/// left the directory.
pub async fn lookup(
    directory: &Directory,
    ids: &[String],
) -> Result<Vec<Option<Contact>>, DirectoryError> {
    let mut out = Vec::with_capacity(ids.len());
    // MGET in slices, so one huge broadcast is not one huge reply.
    for chunk in ids.chunks(500) {
        out.extend(directory.get_many(chunk).await?);
    }
    Ok(out)
}

/// What is said: literal text per language, or an approved template.
#[derive(Debug, Clone)]
pub enum Content {
    Literal {
        messages: Vec<BroadcastMessage>,
        default_language: String,
    },
    Template {
        id: String,
        params: BTreeMap<String, String>,
    },
}

impl Content {
    pub fn of_start(s: &StartBroadcast) -> Content {
        if s.template_id.is_empty() {
            Content::Literal {
                messages: s.messages.clone(),
                default_language: s.default_language.clone(),
            }
        } else {
            Content::Template {
                id: s.template_id.clone(),
                params: s.params.clone(),
            }
        }
    }

    pub fn of_update(u: &UpdateBroadcast) -> Content {
        Content::Literal {
            messages: u.messages.clone(),
            default_language: u.default_language.clone(),
        }
    }
}

/// The message in `wanted`'s language: the exact tag, then the same
/// primary language, then the default, then the first.
pub fn pick<'a>(
    messages: &'a [BroadcastMessage],
    wanted: &str,
    default: &str,
) -> Option<&'a BroadcastMessage> {
    let primary = |t: &str| t.split('-').next().unwrap_or(t).to_ascii_lowercase();
    messages
        .iter()
        .find(|m| m.language.eq_ignore_ascii_case(wanted))
        .or_else(|| {
            messages
                .iter()
                .find(|m| primary(&m.language) == primary(wanted))
        })
        .or_else(|| {
            messages
                .iter()
                .find(|m| m.language.eq_ignore_ascii_case(default))
        })
        .or_else(|| messages.first())
}

/// Which messages of a broadcast a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wave {
    /// The start: email, call, and SMS when asked for.
    Start { sms: bool },
    /// Call cycle `n` (2 for the first call again).
    Recall(u32),
    /// Update `n`: email, and SMS when asked for.
    Update { n: u32, sms: bool },
}

impl Wave {
    fn channels(self) -> Vec<Channel> {
        match self {
            Wave::Start { sms } => {
                let mut c = vec![Channel::Email, Channel::Voice];
                if sms {
                    c.push(Channel::Sms);
                }
                c
            }
            Wave::Recall(_) => vec![Channel::Voice],
            Wave::Update { sms, .. } => {
                let mut c = vec![Channel::Email];
                if sms {
                    c.push(Channel::Sms);
                }
                c
            }
        }
    }

    fn tag(self) -> String {
        match self {
            Wave::Start { .. } => "c1".into(),
            Wave::Recall(n) => format!("c{n}"),
            Wave::Update { n, .. } => format!("u{n}"),
        }
    }
}

/// The field a job's progress is kept under: its id without the
/// broadcast's (`r<i>-<channel>-<wave>`).
pub fn progress_field(broadcast_id: &str, job_id: &str) -> Option<String> {
    job_id
        .strip_prefix(broadcast_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .map(str::to_string)
}

/// Recipient number and channel of a progress field.
pub fn parse_field(field: &str) -> Option<(usize, Channel)> {
    let mut parts = field.split('-');
    let r = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let ch = Channel::parse(parts.next()?)?;
    Some((r, ch))
}

/// What stays the same for every job of a broadcast.
pub struct Broadcast<'a> {
    pub id: &'a str,
    pub case_id: &'a str,
    pub communication_type: i32,
    pub accepted_at: Option<Timestamp>,
    pub content: &'a Content,
}

/// Builds jobs. Text that cannot be rendered for a channel leaves that
/// channel out for the person (and the caller documents it).
pub struct Planner<'a> {
    pub signer: &'a Signer,
    pub templates: &'a TemplateStore,
}

/// The words of one message for one person on one channel.
struct Text {
    subject: String,
    body: String,
    language: String,
}

impl Planner<'_> {
    /// The jobs of one wave for one person (`index` is their number).
    pub fn jobs(
        &self,
        b: &Broadcast<'_>,
        index: usize,
        person: &Contact,
        wave: Wave,
    ) -> Vec<Result<DeliveryJob, String>> {
        let created = herald_proto::now();
        wave.channels()
            .into_iter()
            .filter_map(|channel| {
                let address = person.address(channel)?.to_string();
                let job_id = format!("{}-r{index}-{}-{}", b.id, channel.name(), wave.tag());
                Some(
                    self.text(b, index, person, channel, &job_id)
                        .map(|text| DeliveryJob {
                            job_id: job_id.clone(),
                            notification_id: b.id.to_string(),
                            case_id: b.case_id.to_string(),
                            channel: channel as i32,
                            lane: Lane::Emergency as i32,
                            priority: Priority::Critical as i32,
                            confidentiality: Confidentiality::Standard as i32,
                            contact_id: person.id.clone(),
                            address,
                            recipient_name: person.name.clone(),
                            language: text.language,
                            template_id: match b.content {
                                Content::Template { id, .. } => id.clone(),
                                Content::Literal { .. } => String::new(),
                            },
                            subject: text.subject,
                            body: text.body,
                            created_at: Some(created),
                            accepted_at: b.accepted_at,
                            communication_type: b.communication_type,
                            cancel_keys: cancel_keys(b.id, index, channel),
                            broadcast_id: b.id.to_string(),
                            key_press_url: if channel == Channel::Voice {
                                self.signer
                                    .url(Kind::Key, b.id, index, &[("job", job_id.as_str())])
                            } else {
                                String::new()
                            },
                            ..Default::default()
                        })
                        .map_err(|why| format!("r{index} {}: {why}", channel.name())),
                )
            })
            .collect()
    }

    fn text(
        &self,
        b: &Broadcast<'_>,
        index: usize,
        person: &Contact,
        channel: Channel,
        job_id: &str,
    ) -> Result<Text, String> {
        let main = match b.content {
            Content::Literal {
                messages,
                default_language,
            } => {
                let m = pick(messages, &person.language, default_language)
                    .ok_or("the broadcast has no message")?;
                let (subject, body) = match channel {
                    Channel::Email => (m.subject.clone(), m.body.clone()),
                    Channel::Sms if !m.sms.trim().is_empty() => (String::new(), m.sms.clone()),
                    _ => (String::new(), m.speak.clone()),
                };
                Text {
                    subject,
                    body,
                    language: m.language.clone(),
                }
            }
            Content::Template { id, params } => {
                let mut vars = params.clone();
                vars.insert("recipient_name".into(), person.name.clone());
                vars.insert("broadcast_id".into(), b.id.to_string());
                vars.insert("case_id".into(), b.case_id.to_string());
                let r = self
                    .templates
                    .render(id, 0, &person.language, channel, &vars)
                    .map_err(|e| e.to_string())?;
                Text {
                    subject: r.subject,
                    body: r.body,
                    language: r.language,
                }
            }
        };
        let confirm_url = match channel {
            Channel::Email => self.signer.url(Kind::Confirm, b.id, index, &[]),
            _ => String::new(),
        };
        let vars: BTreeMap<String, String> = [
            ("confirm_url".to_string(), confirm_url),
            ("job_id".to_string(), job_id.to_string()),
        ]
        .into();
        let ask = self
            .templates
            .render(
                broadcasts::CONFIRMATION_TEMPLATE,
                0,
                &main.language,
                channel,
                &vars,
            )
            .map_err(|e| e.to_string())?;
        let body = match channel {
            Channel::Email => format!("{}\n\n{}", main.body.trim_end(), ask.body.trim_end()),
            _ => format!("{} {}", main.body.trim_end(), ask.body.trim()),
        };
        Ok(Text { body, ..main })
    }
}

/// Every job stops when the broadcast is cancelled; calls also stop once
/// their recipient confirms. Email and SMS still reach someone who has
/// confirmed: they carry the text, and an update is news to everyone.
fn cancel_keys(broadcast_id: &str, index: usize, channel: Channel) -> Vec<String> {
    let mut keys = vec![broadcasts::cancel_key(broadcast_id)];
    if channel == Channel::Voice {
        keys.push(broadcasts::recipient_cancel_key(broadcast_id, index));
    }
    keys
}

/// The communication type of a broadcast's jobs: a breach alert is about a
/// data breach; anything else is an emergency.
pub fn communication_type(template_id: &str) -> CommunicationType {
    if template_id == broadcasts::BREACH_TEMPLATE {
        CommunicationType::DataBreach
    } else {
        CommunicationType::Emergency
    }
}

#[cfg(test)]
mod tests;
