//! `herald dlq list|show|replay`: the jobs delivery could not deliver and
//! had no other channel for, as kept in the dead-letter stream; and
//! `herald dlq messages`: the messages a consumer set aside because they
//! can never be handled as they are (`docs/error-handling.md`).
//!
//! A dead letter is named by its stream sequence number (what `list`
//! prints) or by its job id. Replaying one publishes its job again under a
//! new job id derived from the letter (`<job id>-rp<sequence>`): new, so the
//! send ledger lets it through; derived, so replaying the same letter twice
//! still sends once. The replay is documented in the audit trail.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use clap::{Args, Subcommand};
use futures::StreamExt;
use herald_config::Config;
use herald_proto::{
    Message, subjects,
    v1::{AuditStep, Channel, DeadLetter, DeadMessage, DeliveryJob, Lane},
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::Bus,
};

use herald_proto::access::Role;

use crate::{Failure, refused};

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// One line per dead letter, oldest first.
    List(ListArgs),
    /// Everything about one dead letter: the job, why it failed, every attempt.
    Show(ShowArgs),
    /// Send dead letters' jobs again (once each, however often replayed).
    Replay(ReplayArgs),
    /// Messages a consumer set aside (they could not be handled as they
    /// are), with where they came from and why.
    Messages {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this channel: email, sms or voice.
    #[arg(long)]
    channel: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Sequence number (from `herald dlq list`) or job id.
    id: String,
    /// Also print the message text.
    #[arg(long)]
    body: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Sequence numbers or job ids.
    #[arg(required_unless_present = "all")]
    ids: Vec<String>,
    /// Every dead letter (of --channel, if given).
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// With --all: only this channel.
    #[arg(long, requires = "all")]
    channel: Option<String>,
    /// Who is replaying, for the audit trail (default: $USER).
    #[arg(long = "as", value_name = "NAME")]
    actor: Option<String>,
}

/// One dead letter and where it sits in the stream.
struct Letter {
    seq: u64,
    letter: DeadLetter,
}

impl Letter {
    fn job(&self) -> DeliveryJob {
        self.letter.job.clone().unwrap_or_default()
    }
}

pub async fn run(cfg: &Config, cmd: DlqCommand) -> Result<(), Failure> {
    match cmd {
        DlqCommand::Messages { json } => {
            messages(&crate::connect_bus(cfg, Role::Operator).await?, json).await
        }
        DlqCommand::List(a) => {
            let filter = channel_filter(a.channel.as_deref())?;
            let bus = crate::connect_bus(cfg, Role::Operator).await?;
            let letters = read_letters(&bus, &filter).await?;
            if letters.is_empty() && !a.json {
                println!("no dead letters");
            }
            for l in &letters {
                let job = l.job();
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "seq": l.seq,
                            "at": when(l.letter.at.as_ref()),
                            "job_id": job.job_id,
                            "notification_id": job.notification_id,
                            "channel": Channel::name_of(job.channel),
                            "attempts": l.letter.history.len(),
                            "reason": l.letter.reason,
                        })
                    );
                } else {
                    println!(
                        "{:>6}  {}  {:<6} {}  attempts={}  {}",
                        l.seq,
                        when(l.letter.at.as_ref()),
                        Channel::name_of(job.channel),
                        job.job_id,
                        l.letter.history.len(),
                        l.letter.reason
                    );
                }
            }
            Ok(())
        }
        DlqCommand::Show(a) => {
            let bus = crate::connect_bus(cfg, Role::Operator).await?;
            let l = find(&bus, &a.id).await?;
            show(&l, a.body, a.json);
            Ok(())
        }
        DlqCommand::Replay(a) => {
            let bus = crate::connect_bus(cfg, Role::Replay).await?;
            let letters = if a.all {
                read_letters(&bus, &channel_filter(a.channel.as_deref())?).await?
            } else {
                let mut out = Vec::new();
                for id in &a.ids {
                    out.push(find(&bus, id).await?);
                }
                out
            };
            if letters.is_empty() {
                println!("no dead letters to replay");
                return Ok(());
            }
            let actor = a
                .actor
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "operator".into());
            let auditor = Auditor::new(bus.clone(), "herald-cli");
            for l in &letters {
                let new_id = replay(&bus, &auditor, &actor, l).await?;
                println!("replayed {} ({}) as {new_id}", l.seq, l.job().job_id);
            }
            Ok(())
        }
    }
}

/// The job id a replay of this letter gets.
pub fn replay_job_id(job_id: &str, seq: u64) -> String {
    format!("{job_id}-rp{seq}")
}

async fn replay(bus: &Bus, auditor: &Auditor, actor: &str, l: &Letter) -> Result<String, Failure> {
    let old = l.job();
    let channel = Channel::try_from(old.channel).unwrap_or_default();
    if channel == Channel::Unspecified || old.job_id.is_empty() {
        return Err(refused(format!(
            "dead letter {}: job: missing or without a channel; nothing to replay",
            l.seq
        )));
    }
    let lane = Lane::try_from(old.lane).unwrap_or_default();
    let job = DeliveryJob {
        job_id: replay_job_id(&old.job_id, l.seq),
        // A fresh start for the retry schedule's total time limit.
        created_at: Some(herald_proto::now()),
        ..old.clone()
    };
    // The record first: if the publish then fails, the trail says a replay
    // was asked for and the command can simply be run again.
    auditor
        .record_durable(Entry {
            notification_id: job.notification_id.clone(),
            case_id: job.case_id.clone(),
            channel,
            job_id: job.job_id.clone(),
            contact_id: job.contact_id.clone(),
            lane,
            actor: Some(actor.to_string()),
            // The identity the server let publish the replay.
            caller: bus.identity.clone(),
            record_id: Some(format!("{}-replayed", job.job_id)),
            ..Entry::new(
                AuditStep::Replayed,
                format!(
                    "dead letter {} ({}) replayed on {} by {actor}",
                    l.seq,
                    old.job_id,
                    channel.name()
                ),
            )
            .attr("replay_of", &old.job_id)
            .attr("dlq_seq", l.seq)
        })
        .await?;
    bus.publish_durable(
        subjects::delivery_job(lane, channel),
        &job,
        Some(&job.job_id),
    )
    .await?;
    Ok(job.job_id)
}

fn channel_filter(channel: Option<&str>) -> Result<String, Failure> {
    match channel {
        None => Ok(subjects::dlq_jobs()),
        Some(c) => match Channel::parse(c) {
            Some(ch) => Ok(subjects::dlq(ch)),
            None => Err(Failure {
                code: 2,
                message: format!("--channel: {c:?} is not email, sms or voice"),
            }),
        },
    }
}

/// A letter by sequence number or job id.
async fn find(bus: &Bus, id: &str) -> Result<Letter, Failure> {
    if let Ok(seq) = id.parse::<u64>() {
        let stream = bus.js.get_stream(subjects::STREAM_DLQ).await?;
        return match stream.get_raw_message(seq).await {
            Ok(raw) => {
                let letter = DeadLetter::decode(raw.payload.clone())
                    .map_err(|e| Failure::from(format!("dead letter {seq} cannot be read: {e}")))?;
                Ok(Letter { seq, letter })
            }
            Err(_) => Err(refused(format!(
                "no dead letter with sequence number {seq}"
            ))),
        };
    }
    read_letters(bus, &subjects::dlq_jobs())
        .await?
        .into_iter()
        .rev()
        .find(|l| l.job().job_id == id)
        .ok_or_else(|| refused(format!("no dead letter for job id {id:?}")))
}

/// Every letter under `filter`, oldest first.
async fn read_letters(bus: &Bus, filter: &str) -> Result<Vec<Letter>, Failure> {
    Ok(read_all::<DeadLetter>(bus, filter)
        .await?
        .into_iter()
        .map(|(seq, letter)| Letter { seq, letter })
        .collect())
}

/// `herald dlq messages`.
async fn messages(bus: &Bus, json: bool) -> Result<(), Failure> {
    for (seq, m) in read_all::<DeadMessage>(bus, &subjects::dlq_messages()).await? {
        if json {
            let v = serde_json::json!({
                "seq": seq,
                "stream": m.stream,
                "sequence": m.sequence,
                "subject": m.subject,
                "consumer": m.consumer,
                "reason": m.reason,
                "at": when(m.at.as_ref()),
            });
            println!("{v}");
        } else {
            println!(
                "{seq:>6}  {}  {} #{} ({})  {}",
                when(m.at.as_ref()),
                m.stream,
                m.sequence,
                m.consumer,
                m.reason
            );
        }
    }
    Ok(())
}

/// Every message of type `M` under `filter` in the dead-letter stream,
/// oldest first, with its sequence number there.
async fn read_all<M: Message + Default>(bus: &Bus, filter: &str) -> Result<Vec<(u64, M)>, Failure> {
    let stream = bus.js.get_stream(subjects::STREAM_DLQ).await?;
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.to_string(),
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await?;
    let total = consumer.info().await?.num_pending as usize;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let before = out.len();
        let mut batch = consumer
            .fetch()
            .max_messages((total - out.len()).min(500))
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| Failure::from(format!("reading dead letters: {e}")))?;
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or_default();
            match M::decode(m.payload.clone()) {
                Ok(letter) => out.push((seq, letter)),
                Err(e) => eprintln!("herald: dead letter {seq} cannot be read ({e}); skipped"),
            }
        }
        if out.len() == before {
            break;
        }
    }
    let name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    Ok(out)
}

fn show(l: &Letter, body: bool, json: bool) {
    let job = l.job();
    let lane = Lane::try_from(job.lane).unwrap_or_default();
    if json {
        let mut v = serde_json::json!({
            "seq": l.seq,
            "at": when(l.letter.at.as_ref()),
            "reason": l.letter.reason,
            "job": {
                "job_id": job.job_id,
                "notification_id": job.notification_id,
                "case_id": job.case_id,
                "channel": Channel::name_of(job.channel),
                "lane": lane.name(),
                "contact_id": job.contact_id,
                "address": job.address,
                "template": format!("{} v{}", job.template_id, job.template_version),
                "subject": job.subject,
                "fallback_of": job.fallback_of,
            },
            "history": l.letter.history.iter().map(|a| serde_json::json!({
                "attempt": a.number,
                "at": when(a.at.as_ref()),
                "outcome": a.outcome,
                "detail": a.detail,
            })).collect::<Vec<_>>(),
        });
        if body {
            v["job"]["body"] = serde_json::Value::String(job.body.clone());
        }
        println!("{v}");
        return;
    }
    println!("dead letter  {}", l.seq);
    println!("at           {}", when(l.letter.at.as_ref()));
    println!("reason       {}", l.letter.reason);
    println!("job          {}", job.job_id);
    println!("notification {}", job.notification_id);
    if !job.case_id.is_empty() {
        println!("case         {}", job.case_id);
    }
    println!(
        "channel      {} ({} lane)",
        Channel::name_of(job.channel),
        lane.name()
    );
    if !job.contact_id.is_empty() {
        println!("contact      {}", job.contact_id);
    }
    println!("address      {}", job.address);
    println!(
        "template     {} v{}{}",
        job.template_id,
        job.template_version,
        if job.content_withheld {
            " (content-free notice)"
        } else {
            ""
        }
    );
    if !job.subject.is_empty() {
        println!("subject      {}", job.subject);
    }
    if !job.fallback_of.is_empty() {
        println!("fallback of  {}", job.fallback_of);
    }
    println!("attempts     {}", l.letter.history.len());
    for a in &l.letter.history {
        println!(
            "  #{:<3} {}  {:<10} {}",
            a.number,
            when(a.at.as_ref()),
            a.outcome,
            a.detail
        );
    }
    if body {
        println!("body\n{}", job.body);
    }
}

fn when(t: Option<&herald_proto::Timestamp>) -> String {
    let at = herald_proto::system_time(t);
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%d %H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_id_is_new_but_the_same_for_the_same_letter() {
        assert_eq!(replay_job_id("ntf_1-r0-sms", 7), "ntf_1-r0-sms-rp7");
        assert_ne!(replay_job_id("j", 7), replay_job_id("j", 8));
    }

    #[test]
    fn an_unknown_channel_is_refused_by_name() {
        let err = channel_filter(Some("fax")).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(err.message.starts_with("--channel:"), "{}", err.message);
        assert_eq!(
            channel_filter(Some("SMS")).ok(),
            Some(subjects::dlq(Channel::Sms))
        );
    }
}
