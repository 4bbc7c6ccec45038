//! The commands intake accepted, as the broadcast service carries them out:
//! a start resolves the audience and puts the first wave on the emergency
//! lane, an update sends the new message to everyone, a cancel stops
//! delivery and ends the broadcast. Building and publishing a wave is here
//! too, since the recall cycles send theirs the same way.

use std::time::Duration;

use async_nats::jetstream;
use chrono::TimeDelta;
use herald_directory::contacts::Contact;
use herald_durable::stop::Stop;
use herald_proto::broadcasts;
use herald_proto::{
    Message, subjects,
    v1::{
        AuditStep, BroadcastCommand, BroadcastState, CancelBroadcast, Channel, DeliveryJob, Lane,
        StartBroadcast, UpdateBroadcast, broadcast_command::Command,
    },
};
use herald_runtime::{
    audit::Entry,
    bus::{self, Disposition},
    telemetry::record_outcome,
};
use tracing::{Instrument, error, info, warn};

use crate::{
    Broadcasts,
    cycles::schedule,
    metrics::ChannelLabel,
    plan::{self, Broadcast, Content, Planner, Wave},
    state::{self, Begun, Meta},
};

impl Broadcasts {
    pub(crate) async fn command(&self, msg: jetstream::Message) -> Disposition {
        let span = bus::process_span("broadcast command", &msg);
        async {
            let cmd = match BroadcastCommand::decode(msg.payload.clone()) {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, "undecodable broadcast command dropped");
                    return Disposition::Reject;
                }
            };
            // Intake names who authorised a command and the identity it
            // came through; one without them did not come from intake.
            if cmd.actor.trim().is_empty() || cmd.caller.trim().is_empty() {
                error!(command = %cmd.command_id, "broadcast command without a verified coordinator and caller refused");
                return Disposition::Reject;
            }
            let result = match cmd.command.clone() {
                Some(Command::Start(s)) => self.start(&cmd, s).await,
                Some(Command::Update(u)) => self.update(&cmd, u).await,
                Some(Command::Cancel(c)) => self.cancel(&cmd, c).await,
                None => Ok(Disposition::Reject),
            };
            match result {
                Ok(d) => {
                    record_outcome(&tracing::Span::current(), "done", false);
                    d
                }
                Err(e) => {
                    record_outcome(&tracing::Span::current(), "retry", false);
                    warn!(command = %cmd.command_id, error = %e, "broadcast command failed; will retry");
                    Disposition::Retry(Duration::from_secs(1))
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn start(
        &self,
        cmd: &BroadcastCommand,
        s: StartBroadcast,
    ) -> anyhow::Result<Disposition> {
        let id = s.broadcast_id.as_str();
        tracing::Span::current().record("notification_id", id);
        if let Some(m) = self.store.meta(id).await?
            && m.published
        {
            info!(broadcast_id = id, "start already done");
            return Ok(Disposition::Ack);
        }
        let began = std::time::Instant::now();
        let audience = s.audience.clone().unwrap_or_default();
        let (found, missing) = plan::expand(&self.directory, &self.groups, &audience).await?;
        let expanded = began.elapsed();
        let cycles = s.cycles.unwrap_or_default();
        let now = self.clock.now();
        let interval = Duration::from_secs(cycles.interval_seconds.max(1) as u64);
        let duration = Duration::from_secs(cycles.duration_seconds as u64);
        let meta = Meta {
            state: BroadcastState::Starting,
            actor: cmd.actor.clone(),
            severity: s.severity,
            started_at: now,
            ends_at: now + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX),
            interval_s: interval.as_secs(),
            cycles_total: cycles.cycles.max(1),
            cycles_done: 0,
            sms: s.sms,
            recipients: found.len(),
            case_id: s.case_id.clone(),
            notification_id: cmd.notification_id.clone(),
            communication_type: plan::communication_type(&s.template_id) as i32,
            ..Default::default()
        };
        let ids: Vec<String> = found.iter().map(|c| c.id.clone()).collect();
        let people: Vec<Option<Contact>> = match self
            .store
            .begin(id, &meta, &ids, &s.encode_to_vec())
            .await?
        {
            Begun::New => found.into_iter().map(Some).collect(),
            Begun::Again(ids) => plan::lookup(&self.directory, &ids).await?,
            Begun::Cancelled => {
                self.audit(self.entry(
                    id,
                    &s.case_id,
                    AuditStep::Broadcast,
                    "cancelled before it started: nothing was sent".into(),
                ))
                .await;
                return Ok(Disposition::Ack);
            }
        };
        let meta = self.store.meta(id).await?.unwrap_or(meta);
        if people.is_empty() || people.len() > self.cfg.max_recipients {
            let why = if people.is_empty() {
                "no one to reach: the audience names nobody in the directory".to_string()
            } else {
                format!(
                    "not started: the audience is {} people, more than broadcast.max_recipients ({})",
                    people.len(),
                    self.cfg.max_recipients
                )
            };
            let state = if people.is_empty() {
                BroadcastState::Finished
            } else {
                BroadcastState::Cancelled
            };
            self.store.finish(id, state, now, &why).await?;
            self.audit(self.entry(id, &s.case_id, AuditStep::Skipped, why))
                .await;
            return Ok(Disposition::Ack);
        }

        let content = Content::of_start(&s);
        let b = Broadcast {
            id,
            case_id: &s.case_id,
            communication_type: meta.communication_type,
            accepted_at: cmd.accepted_at,
            content: &content,
        };
        let (jobs, problems) = self.plan(&b, &people, |_| true, Wave::Start { sms: s.sms });
        let planned = began.elapsed();
        let phones: Vec<(String, usize)> = if s.sms {
            people
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((state::phone_hash(p.as_ref()?.phone.as_deref()?), i)))
                .collect()
        } else {
            Vec::new()
        };
        self.store.queued(id, &fields(id, &jobs), &phones).await?;
        self.timers
            .schedule_many(&schedule(
                id,
                meta.started_at,
                Duration::from_secs(meta.interval_s.max(1)),
                meta.cycles_total,
                (meta.ends_at - meta.started_at)
                    .to_std()
                    .unwrap_or_default(),
            ))
            .await?;
        if !self.store.activate(id).await? && meta.state != BroadcastState::Active {
            info!(
                broadcast_id = id,
                "cancelled while starting; nothing published"
            );
            return Ok(Disposition::Ack);
        }
        let recorded = began.elapsed();
        self.publish(&jobs).await?;
        let published = began.elapsed();
        self.store.cycle_begun(id, 1).await?;
        self.store.set_field(id, "published", "1").await?;
        self.metrics.event("started");

        let count = |ch: Channel| jobs.iter().filter(|j| j.channel == ch as i32).count();
        let without = |ch: Channel| {
            people
                .iter()
                .flatten()
                .filter(|p| p.address(ch).is_none())
                .count()
        };
        let gone = missing.len() + people.iter().filter(|p| p.is_none()).count();
        let mut summary = format!(
            "started by {}: {} recipient(s); {} email(s), {} call(s), {} SMS; {} call cycle(s) {}s apart, running {}s",
            cmd.actor,
            people.len(),
            count(Channel::Email),
            count(Channel::Voice),
            count(Channel::Sms),
            meta.cycles_total,
            meta.interval_s,
            (meta.ends_at - meta.started_at).num_seconds(),
        );
        for (n, what) in [
            (without(Channel::Voice), "without a phone number"),
            (without(Channel::Email), "without an email address"),
            (gone, "no longer in the directory"),
        ] {
            if n > 0 {
                summary.push_str(&format!("; {n} {what}"));
            }
        }
        let mut entries = vec![
            Entry {
                actor: Some(cmd.actor.clone()),
                record_id: Some(format!("{id}-started")),
                ..self.entry(id, &s.case_id, AuditStep::Broadcast, summary)
            }
            .attr("severity", s.severity)
            .attr("recipients", people.len()),
        ];
        for why in problems {
            entries.push(self.entry(id, &s.case_id, AuditStep::Skipped, why));
        }
        for m in &missing {
            entries.push(Entry {
                contact_id: m.clone(),
                ..self.entry(
                    id,
                    &s.case_id,
                    AuditStep::Skipped,
                    format!("contact {m} is no longer in the directory"),
                )
            });
        }
        for chunk in entries.chunks(500) {
            if let Err(e) = async {
                let ack = self.auditor.record_all(chunk.to_vec()).await?;
                bus::confirm(subjects::audit_all().into(), ack).await
            }
            .await
            {
                warn!(error = %e, "broadcast start not fully documented");
            }
        }
        info!(
            broadcast_id = id,
            recipients = people.len(),
            jobs = jobs.len(),
            expand_ms = expanded.as_millis() as u64,
            plan_ms = (planned - expanded).as_millis() as u64,
            record_ms = (recorded - planned).as_millis() as u64,
            publish_ms = (published - recorded).as_millis() as u64,
            "broadcast started"
        );
        Ok(Disposition::Ack)
    }

    /// The jobs of `wave` for the people `pick` selects, and the reasons
    /// any could not be built.
    pub(crate) fn plan(
        &self,
        b: &Broadcast<'_>,
        people: &[Option<Contact>],
        pick: impl Fn(usize) -> bool,
        wave: Wave,
    ) -> (Vec<DeliveryJob>, Vec<String>) {
        let planner = Planner {
            signer: &self.signer,
            templates: &self.templates,
        };
        let mut jobs = Vec::new();
        let mut problems = Vec::new();
        for (i, p) in people.iter().enumerate() {
            let Some(p) = p.as_ref().filter(|_| pick(i)) else {
                continue;
            };
            for j in planner.jobs(b, i, p, wave) {
                match j {
                    Ok(j) => jobs.push(j),
                    Err(why) => problems.push(format!("not sent: {why}")),
                }
            }
        }
        (jobs, problems)
    }

    /// Publishes jobs to the emergency delivery stream and waits until
    /// JetStream has them all.
    pub(crate) async fn publish(&self, jobs: &[DeliveryJob]) -> anyhow::Result<()> {
        let mut pending = Vec::with_capacity(jobs.len());
        for job in jobs {
            let channel = Channel::try_from(job.channel).unwrap_or_default();
            let subject = subjects::delivery_job(Lane::Emergency, channel);
            pending.push((
                subject.clone(),
                self.bus.publish(subject, job, Some(&job.job_id)).await?,
            ));
            self.metrics
                .jobs
                .get_or_create(&ChannelLabel {
                    channel: channel.name().into(),
                })
                .inc();
        }
        for (subject, ack) in pending {
            bus::confirm(subject, ack).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        cmd: &BroadcastCommand,
        u: UpdateBroadcast,
    ) -> anyhow::Result<Disposition> {
        let id = u.broadcast_id.as_str();
        let Some(meta) = self.store.meta(id).await? else {
            // The start is still on its way.
            return Ok(Disposition::Retry(Duration::from_secs(1)));
        };
        match meta.state {
            BroadcastState::Active => {}
            BroadcastState::Starting | BroadcastState::Unspecified => {
                return Ok(Disposition::Retry(Duration::from_secs(1)));
            }
            other => {
                self.audit(self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Broadcast,
                    format!(
                        "update from {} not sent: the broadcast is {}",
                        cmd.actor,
                        other.name()
                    ),
                ))
                .await;
                return Ok(Disposition::Ack);
            }
        }
        let (_, n) = self
            .store
            .update(id, &cmd.command_id, &u.encode_to_vec())
            .await?;
        let people = plan::lookup(&self.directory, &self.store.people(id).await?).await?;
        let content = Content::of_update(&u);
        let b = Broadcast {
            id,
            case_id: &meta.case_id,
            communication_type: meta.communication_type,
            accepted_at: cmd.accepted_at,
            content: &content,
        };
        let (jobs, problems) = self.plan(&b, &people, |_| true, Wave::Update { n, sms: meta.sms });
        self.store.queued(id, &fields(id, &jobs), &[]).await?;
        self.publish(&jobs).await?;
        self.metrics.event("updated");
        self.audit(Entry {
            actor: Some(cmd.actor.clone()),
            record_id: Some(format!("{id}-u{n}")),
            ..self.entry(
                id,
                &meta.case_id,
                AuditStep::Broadcast,
                format!(
                    "update {n} from {} sent to {} recipient(s) ({} job(s)){}",
                    cmd.actor,
                    people.iter().flatten().count(),
                    jobs.len(),
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", problems.join("; "))
                    }
                ),
            )
        })
        .await;
        Ok(Disposition::Ack)
    }

    async fn cancel(
        &self,
        cmd: &BroadcastCommand,
        c: CancelBroadcast,
    ) -> anyhow::Result<Disposition> {
        let id = c.broadcast_id.as_str();
        let why = if c.reason.trim().is_empty() {
            format!("cancelled by {}", cmd.actor)
        } else {
            format!("cancelled by {}: {}", cmd.actor, c.reason.trim())
        };
        Stop::key(broadcasts::cancel_key(id), &why)
            .send(&self.bus)
            .await?;
        self.end(id, BroadcastState::Cancelled, &why, Some(&cmd.actor))
            .await?;
        Ok(Disposition::Ack)
    }
}

/// The progress fields of jobs.
pub(crate) fn fields(broadcast_id: &str, jobs: &[DeliveryJob]) -> Vec<String> {
    jobs.iter()
        .filter_map(|j| plan::progress_field(broadcast_id, &j.job_id))
        .collect()
}
