//! The routing step: one accepted notification in, its delivery jobs out.
//! Recipients are resolved, channels planned and the template rendered for
//! each; the jobs and the step's audit records (one write) are then
//! published together and the notification is acknowledged only once every
//! one is confirmed.

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream::{self, context::PublishAckFuture};
use herald_content::templates::{CONTENT_FREE_NOTICE, Rendered};
use herald_directory::contacts::{Consent, Contact};
use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedNotification, Channel, Confidentiality, DeliveryJob, FallbackTarget, Lane,
        NotificationRequest, recipient::Target,
    },
};
use herald_runtime::{
    audit::Entry,
    bus::{self, Disposition},
    metrics::{ChannelOutcome, LaneLabel, ReasonLabel},
    retry::Backoff,
    telemetry::record_outcome,
};
use tracing::{Instrument, error, warn};

use crate::{Router, audit};

/// How long a batch waits for template versions intake knew of and the
/// router does not yet.
const TEMPLATES_WAIT: Duration = Duration::from_secs(10);

/// Someone to reach: a directory contact or an inline recipient.
struct Person {
    contact: Contact,
    index: usize,
}

/// One notification of a batch, as far as it got.
enum Turn {
    /// Decoded: to be routed.
    Ready {
        accepted: Box<AcceptedNotification>,
        span: tracing::Span,
    },
    /// Settled already (it does not decode).
    Done(Disposition),
}

impl Router {
    /// Routes the notifications that were ready together: one directory
    /// lookup for every recipient of the batch, every job and trail write
    /// published before any confirmation is awaited, and each notification
    /// acknowledged only once its own writes are confirmed.
    pub(crate) async fn handle_batch(
        &self,
        msgs: Vec<jetstream::Message>,
        lane: Lane,
    ) -> Vec<Disposition> {
        let turns: Vec<Turn> = msgs
            .iter()
            .map(|msg| {
                let span = bus::process_span("router route", msg);
                match AcceptedNotification::decode(msg.payload.clone()) {
                    Ok(accepted) => {
                        span.record("notification_id", accepted.notification_id.as_str());
                        if let Some(req) = &accepted.request {
                            span.record("case_id", req.case_id.as_str());
                        }
                        Turn::Ready {
                            accepted: Box::new(accepted),
                            span,
                        }
                    }
                    Err(e) => {
                        record_outcome(&span, "undecodable", true);
                        span.in_scope(|| error!(error = %e, "undecodable notification dropped"));
                        Turn::Done(Disposition::Reject)
                    }
                }
            })
            .collect();
        let notifications: Vec<Option<&AcceptedNotification>> = turns
            .iter()
            .map(|t| match t {
                Turn::Ready { accepted, .. } => Some(accepted.as_ref()),
                Turn::Done(_) => None,
            })
            .collect();
        let resolved = match self.resolve_all(&notifications, lane).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "recipients unreadable; the batch will be routed again");
                return msgs
                    .iter()
                    .zip(turns)
                    .map(|(m, turn)| match turn {
                        Turn::Done(d) => d,
                        Turn::Ready { span, .. } => {
                            record_outcome(&span, "retry", false);
                            Disposition::Retry(retry_delay(bus::delivery_count(m)))
                        }
                    })
                    .collect();
            }
        };
        // Render with at least the template versions intake checked
        // against: one approved a moment ago may still be on its way here.
        let wanted = turns
            .iter()
            .filter_map(|t| match t {
                Turn::Ready { accepted, .. } => Some(accepted.templates_seen),
                Turn::Done(_) => None,
            })
            .max()
            .unwrap_or(0);
        if wanted > self.templates.seen() && !self.templates.reach(wanted, TEMPLATES_WAIT).await {
            warn!(
                wanted,
                seen = self.templates.seen(),
                "approved templates lag behind intake's; routing with what is here"
            );
        }
        // Every write of the batch goes out before any is awaited.
        let mut pending = Vec::with_capacity(turns.len());
        for (turn, found) in turns.iter().zip(resolved) {
            pending.push(match turn {
                Turn::Ready { accepted, span } => Some(
                    self.publish_step(accepted, lane, found)
                        .instrument(span.clone())
                        .await,
                ),
                Turn::Done(_) => None,
            });
        }
        let mut out = Vec::with_capacity(msgs.len());
        for ((msg, turn), step) in msgs.iter().zip(turns).zip(pending) {
            out.push(match (turn, step) {
                (Turn::Done(d), _) => d,
                (Turn::Ready { span, .. }, Some(step)) => {
                    let result = match step {
                        Ok(step) => self.confirm_step(step, lane).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {
                            record_outcome(&span, "routed", false);
                            Disposition::Ack
                        }
                        Err(e) => {
                            record_outcome(&span, "retry", false);
                            span.in_scope(|| warn!(error = %e, "routing failed; will retry"));
                            Disposition::Retry(retry_delay(bus::delivery_count(msg)))
                        }
                    }
                }
                (Turn::Ready { .. }, None) => Disposition::Retry(Duration::from_secs(1)),
            });
        }
        out
    }

    /// Plans one notification's jobs and publishes them with the step's
    /// trail records, without waiting for any confirmation.
    async fn publish_step(
        &self,
        n: &AcceptedNotification,
        lane: Lane,
        (people, gone): (Vec<Person>, Vec<Entry>),
    ) -> anyhow::Result<Step> {
        let Some(req) = &n.request else {
            anyhow::bail!("notification without a request");
        };
        let mut jobs = Vec::new();
        let mut audits = Vec::new();
        let mut skipped = 0usize;
        for person in &people {
            match self.plan(n, req, person, lane) {
                Ok(planned) => {
                    for job in planned {
                        audits.push(audit::rendered(n, req, &job, lane));
                        jobs.push(job);
                    }
                }
                Err(reason) => {
                    skipped += 1;
                    self.metrics
                        .skipped
                        .get_or_create(&ReasonLabel {
                            lane: lane.name().into(),
                            reason: "no_usable_channel".into(),
                        })
                        .inc();
                    audits.push(audit::skipped(
                        n,
                        req,
                        &person.contact.id,
                        person.index,
                        lane,
                        &reason,
                    ));
                }
            }
        }
        audits.insert(0, audit::routed(n, req, lane, &jobs, people.len(), skipped));
        audits.extend(gone);

        // Any failure leaves the notification unacked, and the retry
        // republishes the same ids, which JetStream drops. The step's
        // records (accepted, routed, one per job rendered, one per
        // recipient skipped or gone) are one write, named after its first
        // record, so a retry's batch is dropped too. Intake's "accepted"
        // record came with the notification and leads the batch, so the
        // trail starts with it.
        let mut acks = vec![(
            subjects::audit_all().to_string(),
            self.auditor
                .record_after(n.accepted.iter().cloned().collect(), audits)
                .await?,
        )];
        for job in &jobs {
            let channel = Channel::try_from(job.channel).unwrap_or_default();
            let subject = subjects::delivery_job(lane, channel);
            acks.push((
                subject.clone(),
                self.bus.publish(subject, job, Some(&job.job_id)).await?,
            ));
        }
        Ok(Step { acks, jobs })
    }

    /// Waits for every write of a step, then counts it.
    async fn confirm_step(&self, step: Step, lane: Lane) -> anyhow::Result<()> {
        for (subject, ack) in step.acks {
            bus::confirm(subject, ack).await?;
        }
        for job in &step.jobs {
            self.metrics
                .jobs
                .get_or_create(&ChannelOutcome {
                    lane: lane.name().into(),
                    channel: Channel::try_from(job.channel)
                        .unwrap_or_default()
                        .name()
                        .into(),
                    outcome: if job.content_withheld {
                        "notice"
                    } else {
                        "content"
                    }
                    .into(),
                })
                .inc();
        }
        self.metrics
            .routed
            .get_or_create(&LaneLabel {
                lane: lane.name().into(),
            })
            .inc();
        Ok(())
    }

    /// The people of every notification of a batch, with one directory
    /// lookup for all of them (see [`Self::resolve`]); `None` stands for a
    /// notification that is not being routed.
    async fn resolve_all(
        &self,
        notifications: &[Option<&AcceptedNotification>],
        lane: Lane,
    ) -> anyhow::Result<Vec<(Vec<Person>, Vec<Entry>)>> {
        let requests: Vec<Option<(&str, &NotificationRequest)>> = notifications
            .iter()
            .map(|n| n.and_then(|n| Some((n.notification_id.as_str(), n.request.as_ref()?))))
            .collect();
        let ids: Vec<String> = requests
            .iter()
            .flatten()
            .flat_map(|(_, req)| contact_ids(req))
            .collect();
        let mut found = self.directory.get_many(&ids).await?.into_iter();
        Ok(requests
            .iter()
            .map(|r| match r {
                Some((id, req)) => {
                    let mine: Vec<Option<Contact>> =
                        found.by_ref().take(contact_ids(req).count()).collect();
                    self.resolve(req, id, lane, mine)
                }
                None => (Vec::new(), Vec::new()),
            })
            .collect())
    }

    /// The recipients of one request, given the directory's answer for
    /// its contact ids in order. A contact deleted since intake is skipped,
    /// not retried; the entries documenting them are returned beside the
    /// people found, to be written with the rest of the step.
    fn resolve(
        &self,
        req: &NotificationRequest,
        notification_id: &str,
        lane: Lane,
        found: Vec<Option<Contact>>,
    ) -> (Vec<Person>, Vec<Entry>) {
        let mut found = found.into_iter();
        let mut people = Vec::new();
        let mut gone = Vec::new();
        for (index, r) in req.recipients.iter().enumerate() {
            let contact = match &r.target {
                Some(Target::ContactId(id)) => match found.next().flatten() {
                    Some(c) => c,
                    None => {
                        gone.push(audit::contact_gone(notification_id, req, id, index, lane));
                        continue;
                    }
                },
                Some(Target::Inline(i)) => Contact {
                    id: String::new(),
                    name: i.name.clone(),
                    email: (!i.email.is_empty()).then(|| i.email.clone()),
                    phone: (!i.phone.is_empty()).then(|| i.phone.clone()),
                    preferred_channel: Channel::try_from(i.preferred_channel)
                        .ok()
                        .filter(|c| *c != Channel::Unspecified)
                        .map(|c| c.name().to_string()),
                    language: if i.language.is_empty() {
                        "en".into()
                    } else {
                        i.language.clone()
                    },
                    time_zone: "UTC".into(),
                    // Intake refuses the claim; never verified, whatever
                    // an older message says.
                    identity_verified: false,
                    verification: None,
                    third_party: false,
                    third_party_category: None,
                    sharing: Vec::new(),
                    consent: Consent {
                        email: i.consent_email,
                        sms: i.consent_sms,
                        voice: i.consent_voice,
                    },
                    organisation: None,
                    role: None,
                    team: None,
                    interprets: Vec::new(),
                },
                None => continue,
            };
            people.push(Person { contact, index });
        }
        (people, gone)
    }

    /// The jobs for one recipient, with their fallbacks rendered.
    fn plan(
        &self,
        n: &AcceptedNotification,
        req: &NotificationRequest,
        person: &Person,
        lane: Lane,
    ) -> Result<Vec<DeliveryJob>, String> {
        let overrides: Vec<Channel> = req
            .channel_override
            .iter()
            .filter_map(|c| Channel::try_from(*c).ok())
            .collect();
        let t = req.communication_type();
        let p = req.priority();
        let c = req.confidentiality();
        // A client who wrote back about the case is answered on the
        // channel they used, first among those the rules allow.
        let answered;
        let who = match &n.answer_on {
            Some(a) if !a.contact_id.is_empty() && a.contact_id == person.contact.id => {
                let mut contact = person.contact.clone();
                contact.preferred_channel = Channel::try_from(a.channel)
                    .ok()
                    .filter(|c| *c != Channel::Unspecified)
                    .map(|c| c.name().to_string())
                    .or(contact.preferred_channel);
                answered = contact;
                &answered
            }
            _ => &person.contact,
        };
        let decision = self.rules.decide(t, p, c, &overrides, who);
        let language = if req.language.is_empty() {
            person.contact.language.clone()
        } else {
            req.language.clone()
        };
        let mut vars: BTreeMap<String, String> = req.params.clone();
        vars.entry("recipient_name".into())
            .or_insert_with(|| person.contact.name.clone());
        vars.entry("notification_id".into())
            .or_insert_with(|| n.notification_id.clone());
        vars.entry("case_id".into())
            .or_insert_with(|| req.case_id.clone());

        let templates = self.templates.current();
        let render = |channel: Channel| -> Option<(Rendered, bool)> {
            person.contact.address(channel)?;
            let withheld = c == Confidentiality::Sensitive
                && (channel != Channel::Email || !person.contact.verified());
            let template = if withheld {
                CONTENT_FREE_NOTICE
            } else {
                req.template_id.as_str()
            };
            let version = if withheld { 0 } else { req.template_version };
            // A template without text for a channel is how the template
            // set is written, not news about this notification: the channel
            // is simply not offered, and nothing is logged for it.
            if templates.lacks_text(template, version, &language, channel) {
                return None;
            }
            match templates.render(template, version, &language, channel, &vars) {
                Ok(r) => Some((r, withheld)),
                Err(e) => {
                    warn!(channel = channel.name(), error = %e, "channel skipped: the template could not be rendered");
                    None
                }
            }
        };

        // Channels to send on now; one that cannot be rendered gives way to
        // the next fallback that can.
        let mut fallbacks: Vec<(Channel, Rendered, bool)> = decision
            .fallbacks
            .iter()
            .filter_map(|ch| render(*ch).map(|(r, w)| (*ch, r, w)))
            .collect();
        let mut sends: Vec<(Channel, Rendered, bool)> = Vec::new();
        for ch in &decision.send {
            match render(*ch) {
                Some((r, w)) => sends.push((*ch, r, w)),
                None if !fallbacks.is_empty() => sends.push(fallbacks.remove(0)),
                None => {}
            }
        }
        if sends.is_empty() {
            return Err(if decision.send.is_empty() {
                "no approved channel with an address and consent".into()
            } else {
                "the template has no text for any usable channel".into()
            });
        }
        let created = herald_proto::now();
        Ok(sends
            .into_iter()
            .map(|(channel, rendered, withheld)| DeliveryJob {
                job_id: herald_proto::ids::job_id(&n.notification_id, person.index, channel),
                notification_id: n.notification_id.clone(),
                case_id: req.case_id.clone(),
                channel: channel as i32,
                lane: lane as i32,
                priority: req.priority,
                confidentiality: req.confidentiality,
                contact_id: person.contact.id.clone(),
                address: person
                    .contact
                    .address(channel)
                    .unwrap_or_default()
                    .to_string(),
                // Only an email's To header names the person; an SMS or
                // a call needs the number alone.
                recipient_name: if channel == Channel::Email {
                    person.contact.name.clone()
                } else {
                    String::new()
                },
                language: rendered.language.clone(),
                template_id: if withheld {
                    CONTENT_FREE_NOTICE.into()
                } else {
                    req.template_id.clone()
                },
                template_version: rendered.version,
                subject: rendered.subject,
                body: rendered.body,
                content_withheld: withheld,
                fallbacks: fallbacks
                    .iter()
                    .map(|(ch, r, w)| FallbackTarget {
                        channel: *ch as i32,
                        address: person.contact.address(*ch).unwrap_or_default().to_string(),
                        subject: r.subject.clone(),
                        body: r.body.clone(),
                        content_withheld: *w,
                    })
                    .collect(),
                created_at: Some(created),
                accepted_at: n.accepted_at,
                fallback_of: String::new(),
                communication_type: req.communication_type,
                cancel_keys: req.cancel_keys.clone(),
                key_press_url: if channel == Channel::Voice {
                    req.key_press_url.clone()
                } else {
                    String::new()
                },
                // Files go with the email, and only with content: a
                // content-free notice carries none of what was withheld.
                attachments: if channel == Channel::Email && !withheld {
                    req.attachments.clone()
                } else {
                    Vec::new()
                },
                ..Default::default()
            })
            .collect())
    }
}

/// The directory contacts a request names, in recipient order.
fn contact_ids(req: &NotificationRequest) -> impl Iterator<Item = String> + '_ {
    req.recipients.iter().filter_map(|r| match &r.target {
        Some(Target::ContactId(id)) => Some(id.clone()),
        _ => None,
    })
}

/// One notification's writes, published and not yet confirmed, and the
/// jobs they carry.
struct Step {
    acks: Vec<(String, PublishAckFuture)>,
    jobs: Vec<DeliveryJob>,
}

/// 1 s, 2 s, 4 s … up to 30 s between routing attempts.
fn retry_delay(delivered: u32) -> Duration {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).nth(delivered)
}
