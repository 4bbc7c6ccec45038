//! The erasure desk (`herald.v1.intake.erase`): the Data Protection
//! Officer removes a person from everything Herald keeps (SOP 003 §6.5,
//! "securely destroy"). Only the `dpo` identity may send here (the
//! permission table says so); the trail records who asked, as NATS
//! verified it, and who it was done for (`by`).
//!
//! Intake coordinates, because it keeps the directory that says who the
//! person is (their name, email and number):
//!
//! 1. the cases the person is the client of are looked up in the case
//!    stream: a case about them goes with them (its events, its trail, the
//!    state every service keeps for it), matched by its id from then on;
//!    the streams intake owns (accepted notifications, case events, the
//!    trail) then lose every message naming the person or those cases ([`herald_runtime::erase`]);
//!    an audit message that also documents others is written again without
//!    the person's records first, so nobody else's trail is lost; the job
//!    ids of the person's records are noted;
//! 2. every other service that keeps data about people (delivery, the
//!    broadcast service, sla, escalation) is asked at once to do the same
//!    with its own streams and keyspace, the job ids included (each service
//!    is the only writer of its keys, so each erases its own);
//! 3. intake's own keys go (idempotency keys of the person's notifications,
//!    the channel they last wrote on);
//! 4. only when every part is done, the directory record, their place in
//!    groups and others' consents to share with them. A part that failed
//!    is reported and the record kept, so asking again finishes the job
//!    with the same details; a repeat of a complete erasure finds only the
//!    id and removes nothing more.
//!
//! The trail then gets one record (`erased`): the erasure's id, who asked,
//! what was removed store by store, and, with `retention.erasure_hash_key`
//! set, a keyed hash of the contact id. Never the id, name, address or
//! number: the person's own records are gone, and the erasure's must not
//! bring them back.

mod check;
mod directory;

use std::{collections::BTreeSet, future::Future, pin::Pin, time::Duration};

use async_nats::jetstream::message::StreamMessage;
use herald_config::Secret;
use herald_directory::{contacts::Directory, groups::Groups};
use herald_proto::{
    Message, subjects,
    v1::{
        AcceptedCaseEvent, AuditBatch, AuditStep, EraseContact, ErasePartReply, ErasePerson,
        EraseReply, ErasedPart, ErasureReport, ErrorCode, Rejected, erase_reply,
    },
};
use herald_runtime::{
    audit::{Auditor, Entry},
    bus::Bus,
    erase::{
        Person,
        serve::Eraser,
        streams::{self, BeforeErase},
    },
};
use redis::aio::ConnectionManager;
use tracing::{error, info, warn};

pub use check::check;

/// How long a service may take over its part: it reads each stream it
/// owns message by message, so a large one takes minutes.
const PART_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub(crate) struct ErasureDesk {
    bus: Bus,
    eraser: Eraser,
    contacts: Directory,
    groups: Groups,
    auditor: Auditor,
    hash_key: Option<Secret>,
}

/// What the person's audit records name besides them: their jobs, and
/// their notifications, less those that reached someone else too (whose
/// idempotency keys stay, so a retry sends nobody a second copy).
#[derive(Default)]
struct Related {
    jobs: BTreeSet<String>,
    notifications: BTreeSet<String>,
    kept_notifications: BTreeSet<String>,
}

impl ErasureDesk {
    pub(crate) fn new(
        bus: Bus,
        redis: &ConnectionManager,
        deployment: &str,
        auditor: Auditor,
        hash_key: Option<Secret>,
    ) -> ErasureDesk {
        ErasureDesk {
            eraser: Eraser::new("intake", &bus, redis, deployment),
            contacts: Directory::new(redis.clone(), deployment),
            groups: Groups::new(redis.clone(), deployment),
            bus,
            auditor,
            hash_key,
        }
    }

    /// Handles one request from NATS.
    pub(crate) async fn answer(&self, msg: async_nats::Message) -> EraseReply {
        let refused = |r: Rejected| EraseReply {
            result: Some(erase_reply::Result::Rejected(r)),
        };
        let Some(caller) = crate::caller(&msg) else {
            return refused(crate::unnamed_caller());
        };
        match check(&msg.payload) {
            Ok(req) => match self.erase(&req, caller).await {
                Ok(report) => EraseReply {
                    result: Some(erase_reply::Result::Erased(report)),
                },
                Err(r) => refused(r),
            },
            Err(r) => refused(r),
        }
    }

    async fn erase(&self, req: &EraseContact, caller: &str) -> Result<ErasureReport, Rejected> {
        let contact = self.contacts.get(&req.contact_id).await.map_err(|e| {
            error!(error = %e, "directory unreadable");
            Rejected::new(
                ErrorCode::Unavailable,
                "",
                "the directory cannot be reached just now; ask again",
            )
        })?;
        let (words, addresses) = check::person(&req.contact_id, contact.as_ref());
        let mut person = Person::new(
            words.iter().map(String::as_str),
            addresses.iter().map(String::as_str),
        );
        check::keeps_no_trace(req, &person)?;
        let erasure_id = herald_proto::ids::record_id().replacen("aud_", "era_", 1);

        // 0. The cases they are the client of go with them.
        let cases = self
            .client_cases(&req.contact_id, &person)
            .await
            .map_err(|e| {
                error!(error = %e, "the case stream could not be read");
                Rejected::new(
                    ErrorCode::Unavailable,
                    "",
                    "the case stream cannot be read just now; ask again",
                )
            })?;
        for case in &cases {
            person.add_word(case);
        }

        // 1. Intake's streams, noting what the person's records name.
        let mut related = Related::default();
        let mut keeper = Keeper {
            desk: self,
            erasure_id: &erasure_id,
            person: &person,
            related: &mut related,
        };
        let (mut parts, own_error) = self.eraser.erase_streams(&person, &mut keeper).await;
        let mut failed: Vec<ErasedPart> = own_error
            .into_iter()
            .map(|e| failure("intake", e))
            .collect();

        // 2. Every other service's part, at once.
        let ask = ErasePerson {
            erasure_id: erasure_id.clone(),
            words,
            addresses,
            related: related.jobs.iter().chain(&cases).cloned().collect(),
        };
        let asks: Vec<PartAnswer<'_>> = subjects::ERASING_SERVICES
            .into_iter()
            .map(|s| Box::pin(self.ask_part(s, &ask)) as PartAnswer<'_>)
            .collect();
        let answers = futures::future::join_all(asks).await;
        for (service, answer) in subjects::ERASING_SERVICES.iter().zip(answers) {
            match answer {
                Ok(reply) => {
                    parts.extend(reply.parts);
                    if !reply.error.is_empty() {
                        failed.push(failure(service, reply.error));
                    }
                }
                Err(e) => failed.push(failure(service, e)),
            }
        }

        // 3. Intake's own keys, the directory's apart.
        for job in &related.jobs {
            person.add_word(job);
        }
        for n in related
            .notifications
            .difference(&related.kept_notifications)
        {
            person.add_word(n);
        }
        let (own_keys, keys_error) = self
            .eraser
            .erase_keys(&person, &[herald_proto::keyspace::DIRECTORY.name])
            .await;
        parts.extend(own_keys);
        failed.extend(keys_error.map(|e| failure("intake", e)));

        // 4. The directory, once nothing else is left to find by it.
        if failed.is_empty() {
            match self.erase_directory(&req.contact_id).await {
                Ok(part) => parts.push(part),
                Err(e) => failed.push(failure("intake", e)),
            }
        }

        let report = ErasureReport {
            erasure_id,
            subject_hash: self.subject_hash(&req.contact_id),
            parts,
            failed,
        };
        self.document(&report, req, caller).await?;
        if report.failed.is_empty() {
            info!(erasure = %report.erasure_id, caller, "person erased");
        } else {
            warn!(erasure = %report.erasure_id, caller, "erasure incomplete; ask again");
        }
        Ok(report)
    }

    /// The cases whose events name `id` as their client.
    async fn client_cases(&self, id: &str, person: &Person) -> anyhow::Result<BTreeSet<String>> {
        let found = streams::find(&self.bus.js, subjects::STREAM_CASES, person).await?;
        Ok(found
            .iter()
            .filter_map(|m| AcceptedCaseEvent::decode(m.payload.clone()).ok()?.event)
            .filter(|e| {
                e.details
                    .as_ref()
                    .is_some_and(|d| d.client_contact_id == id)
            })
            .map(|e| e.case_id)
            .collect())
    }

    /// Before an audit message naming the person is deleted: the records
    /// in it about others are written again, and what the person's name
    /// is noted.
    async fn keep_others(
        &self,
        erasure_id: &str,
        person: &Person,
        stream: &str,
        m: &StreamMessage,
        related: &mut Related,
    ) -> anyhow::Result<()> {
        if stream != subjects::STREAM_AUDIT {
            return Ok(());
        }
        // Not a batch at all: it names the person, and goes whole.
        let Ok(batch) = AuditBatch::decode(m.payload.clone()) else {
            return Ok(());
        };
        let (theirs, others): (Vec<_>, Vec<_>) = batch
            .records
            .into_iter()
            .partition(|r| person.named_in(&r.encode_to_vec()));
        for r in &theirs {
            if !r.job_id.is_empty() {
                related.jobs.insert(r.job_id.clone());
            }
            if !r.notification_id.is_empty() {
                related.notifications.insert(r.notification_id.clone());
            }
        }
        if others.is_empty() {
            return Ok(());
        }
        // A notification someone else was sent too keeps its idempotency
        // key; one whose other records name nobody (its acceptance) does
        // not.
        related.kept_notifications.extend(
            others
                .iter()
                .filter(|r| !r.contact_id.is_empty() || !r.job_id.is_empty())
                .map(|r| r.notification_id.clone()),
        );
        let id = format!("{erasure_id}-{}", m.sequence);
        self.bus
            .publish_durable(
                m.subject.to_string(),
                &AuditBatch { records: others },
                Some(&id),
            )
            .await
            .map_err(|e| anyhow::anyhow!("keeping others' records: {e}"))
    }

    async fn ask_part(
        &self,
        service: &'static str,
        ask: &ErasePerson,
    ) -> Result<ErasePartReply, String> {
        self.bus
            .ask::<_, ErasePartReply>(&subjects::erase_part(service), ask, PART_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }

    /// A keyed hash of the contact id, when a key is configured.
    fn subject_hash(&self, contact_id: &str) -> String {
        self.hash_key
            .as_ref()
            .map(|k| subject_hash(k.expose_secret().as_bytes(), contact_id))
            .unwrap_or_default()
    }

    /// The erasure's one trail record: counts, never the person.
    async fn document(
        &self,
        report: &ErasureReport,
        req: &EraseContact,
        caller: &str,
    ) -> Result<(), Rejected> {
        let mut entry = Entry {
            notification_id: report.erasure_id.clone(),
            caller: caller.to_string(),
            actor: Some(req.by.clone()),
            record_id: Some(report.erasure_id.clone()),
            ..Entry::new(
                AuditStep::Erased,
                check::summary(&report.parts, &report.failed, &req.reason),
            )
        }
        .attr("erasure_id", &report.erasure_id)
        .attr("by", &req.by)
        .attr("complete", report.failed.is_empty());
        if !report.subject_hash.is_empty() {
            entry = entry.attr("subject_hash", &report.subject_hash);
        }
        for p in &report.parts {
            entry = entry.attr(&format!("removed.{}", p.store), p.removed);
        }
        for f in &report.failed {
            entry = entry.attr(&format!("failed.{}", f.service), &f.error);
        }
        self.auditor.record_durable(entry).await.map_err(|e| {
            error!(error = %e, "erasure not documented");
            Rejected::new(
                ErrorCode::Unavailable,
                "",
                "the erasure was carried out but could not be documented; ask again to document it",
            )
        })
    }
}

/// A service's answer, on its way.
type PartAnswer<'a> = Pin<Box<dyn Future<Output = Result<ErasePartReply, String>> + Send + 'a>>;

/// [`ErasureDesk::keep_others`] as the stream eraser calls it.
struct Keeper<'a> {
    desk: &'a ErasureDesk,
    erasure_id: &'a str,
    person: &'a Person,
    related: &'a mut Related,
}

impl BeforeErase for Keeper<'_> {
    fn before<'b>(
        &'b mut self,
        stream: &'b str,
        msg: &'b StreamMessage,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'b>> {
        Box::pin(
            self.desk
                .keep_others(self.erasure_id, self.person, stream, msg, self.related),
        )
    }
}

/// A part that could not be done.
fn failure(service: &str, error: String) -> ErasedPart {
    ErasedPart {
        service: service.to_string(),
        store: String::new(),
        removed: 0,
        error,
    }
}

/// The hash an erasure's record carries of the erased contact's id:
/// HMAC-SHA256 keyed with `retention.erasure_hash_key` over
/// `erased-contact:<id>` ([`herald_content::token::sign`]).
pub fn subject_hash(key: &[u8], contact_id: &str) -> String {
    herald_content::token::sign(key, &format!("erased-contact:{contact_id}"))
}
