//! What case tests share: policies measured in seconds on a round-the-clock
//! calendar (so a test runs in seconds, not business days), a staff
//! roster with roles, clients, case events, the services' views of a case,
//! and a reader of the breaches stored in the case stream.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use herald_config::Config;
use herald_directory::contacts::Contact;
use herald_proto::{
    Message, subjects,
    v1::{
        AuditStep, CaseChannel, CaseDetails, CaseEvent, CaseEventKind, CaseQuery,
        EscalationQueryReply, EscalationView, Feedback, Priority, SlaEvent, SlaEventKind,
        SlaQueryReply, SlaView, escalation_query_reply, sla_query_reply,
    },
};
use tokio_util::sync::CancellationToken;

use crate::{TestSystem, fixtures::contact};

/// The team every fast case belongs to; its calendar is open 24/7.
pub const TEAM: &str = "support";

/// Writes fast SLA and escalation policies and a 24/7 calendar into `dir`
/// and points `cfg` at them. `level` is each escalation level's timeout.
pub fn fast_policies(cfg: &mut Config, dir: &Path, level: Duration) {
    let calendars = dir.join("calendars.toml");
    std::fs::write(
        &calendars,
        r#"
default = "always"
[calendar.always]
time_zone = "Europe/London"
business_day = "24h"
every_day = ["00:00-24:00"]
"#,
    )
    .expect("calendars written");
    let sla = dir.join("sla.toml");
    std::fs::write(
        &sla,
        r#"
warning_at = 0.5
# Email cases: acknowledged within 2 s, counted on the (24/7) calendar.
[[policy]]
name = "fast_email"
channels = ["email"]
acknowledgement = "2 business seconds"
# Tickets: a clock that never runs out during a test.
[[policy]]
name = "slow_ticket"
channels = ["support_ticket"]
acknowledgement = "1h"
# Portal cases: 3 s, for the tests that open many and race their breaches.
[[policy]]
name = "fast_portal"
channels = ["portal"]
acknowledgement = "3s"
"#,
    )
    .expect("sla policies written");
    let ms = level.as_millis();
    let escalation = dir.join("escalation.toml");
    std::fs::write(
        &escalation,
        format!(
            r#"
[[policy]]
name = "fast"
escalate_at_open = ["critical"]
on_request = "team_lead"
[[policy.level]]
name = "frontline"
targets = ["responsible"]
timeout = "{ms}ms"
[[policy.level]]
name = "team_lead"
targets = ["role:team_lead"]
timeout = "{ms}ms"
[[policy.level]]
name = "supervisor"
targets = ["role:supervisor"]
timeout = "{ms}ms"
[[policy.level]]
name = "management"
targets = ["role:management"]
timeout = "{ms}ms"
expected_within = "4h"
[follow_up]
delay = "1s"
reminder_after = "2s"
[[feedback.department]]
name = "Finance"
categories = ["billing"]
owners = ["role:management"]
[[feedback.department]]
name = "Client Services"
owners = ["role:team_lead"]
# Meeting reminders a day ahead (never reached in a test) and 15 s ahead.
[meetings]
reminders = ["24h", "15s"]
"#
        ),
    )
    .expect("escalation policies written");
    cfg.sla.calendars_file = Some(calendars);
    cfg.sla.policy_file = Some(sla);
    cfg.escalation.policy_file = Some(escalation);
    cfg.sla.poll = Duration::from_millis(50);
    cfg.escalation.poll = Duration::from_millis(50);
    // A killed instance's claims come back within seconds.
    cfg.sla.lease = Duration::from_secs(3);
    cfg.escalation.lease = Duration::from_secs(3);
    cfg.sla.batch = 100;
}

/// The staff the fast policy reaches: frontline and team lead by email,
/// the supervisor by SMS, management by email; plus a team lead of
/// another team who must never be paged for this one.
pub fn staff() -> Vec<Contact> {
    let with = |mut c: Contact, role: &str, team: Option<&str>| {
        c.role = Some(role.into());
        c.team = team.map(str::to_string);
        c.organisation = Some("herald-staff".into());
        c
    };
    vec![
        with(
            contact("fl-sam", Some("sam@staff.example.org"), None, "email"),
            "frontline",
            Some(TEAM),
        ),
        with(
            contact("tl-kim", Some("kim@staff.example.org"), None, "email"),
            "team_lead",
            Some(TEAM),
        ),
        with(
            contact("tl-other", Some("other@staff.example.org"), None, "email"),
            "team_lead",
            Some("billing"),
        ),
        with(
            contact(
                "sup-ana",
                Some("ana@staff.example.org"),
                Some("+447700900501"),
                "sms",
            ),
            "supervisor",
            Some(TEAM),
        ),
        with(
            contact("mgr-joe", Some("joe@staff.example.org"), None, "email"),
            "management",
            None,
        ),
    ]
}

/// A client who prefers email: `client-<n>@clients.example.org`.
pub fn client(n: usize) -> Contact {
    contact(
        &format!("client-{n}"),
        Some(&format!("client-{n}@clients.example.org")),
        Some(&format!("+4477009{n:05}")),
        "email",
    )
}

/// An event of `kind` on `case_id`.
pub fn event(case_id: &str, event_id: &str, kind: CaseEventKind) -> CaseEvent {
    CaseEvent {
        event_id: event_id.into(),
        case_id: case_id.into(),
        kind: kind as i32,
        actor: "tests".into(),
        ..Default::default()
    }
}

/// Opens `case_id` for `client_id`, handled by fl-sam in the support team,
/// with reference `REF-<case_id>`.
pub fn opened(
    case_id: &str,
    client_id: &str,
    channel: CaseChannel,
    priority: Priority,
) -> CaseEvent {
    CaseEvent {
        details: Some(CaseDetails {
            channel: channel as i32,
            priority: priority as i32,
            client_contact_id: client_id.into(),
            responsible_staff: "fl-sam".into(),
            team: TEAM.into(),
            reference: format!("REF-{case_id}"),
        }),
        ..event(case_id, "open", CaseEventKind::Opened)
    }
}

pub fn feedback(case_id: &str, rating: u32, comment: &str) -> CaseEvent {
    CaseEvent {
        feedback: Some(Feedback {
            rating,
            comment: comment.into(),
            ..Default::default()
        }),
        ..event(case_id, "feedback", CaseEventKind::FeedbackReceived)
    }
}

/// Asks a service about a case over request/reply, as `herald case show`
/// does (`subject` is [`subjects::SLA_QUERY`] or
/// [`subjects::ESCALATION_QUERY`]).
pub async fn ask<R: Message + Default>(sys: &TestSystem, subject: &str, case_id: &str) -> R {
    let query = CaseQuery {
        case_id: case_id.into(),
    };
    let msg = tokio::time::timeout(
        Duration::from_secs(20),
        sys.client
            .request(subject.to_string(), query.encode_to_vec().into()),
    )
    .await
    .expect("the service answers in time")
    .expect("the service answers");
    R::decode(msg.payload).expect("a reply")
}

/// The sla service's clocks of a case.
pub async fn sla_view(sys: &TestSystem, case_id: &str) -> SlaView {
    let reply: SlaQueryReply = ask(sys, subjects::SLA_QUERY, case_id).await;
    match reply.result {
        Some(sla_query_reply::Result::View(v)) => v,
        other => panic!("expected a view of {case_id}, got {other:?}"),
    }
}

/// The escalation service's view of a case: where it stands and the
/// follow-up.
pub async fn escalation_view(sys: &TestSystem, case_id: &str) -> EscalationView {
    let reply: EscalationQueryReply = ask(sys, subjects::ESCALATION_QUERY, case_id).await;
    match reply.result {
        Some(escalation_query_reply::Result::View(v)) => v,
        other => panic!("expected a view of {case_id}, got {other:?}"),
    }
}

/// The summaries of a trail's records of one step, in order.
pub fn summaries(trail: &[herald_proto::v1::AuditRecord], step: AuditStep) -> Vec<String> {
    trail
        .iter()
        .filter(|r| r.step == step as i32)
        .map(|r| r.summary.clone())
        .collect()
}

/// Counts breach events per case as they are stored in the case stream
/// (read back from JetStream, in stream order, so what consumers see).
pub struct BreachCounter {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// The position in the case stream read up to.
    read: Arc<AtomicU64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl BreachCounter {
    pub async fn start(sys: &TestSystem) -> BreachCounter {
        use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
        let bus = sys.bus().await;
        let stream = bus
            .js
            .get_stream(subjects::STREAM_CASES)
            .await
            .expect("the case stream");
        // Every case subject, told apart as the services tell them apart:
        // no subject spelled out here.
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subjects::case_all(),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("a reader of the case stream");
        let counts: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let read: Arc<AtomicU64> = Default::default();
        let stop = CancellationToken::new();
        let (c, r, s) = (counts.clone(), read.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut messages = consumer.messages().await.expect("case messages");
            loop {
                let m = tokio::select! {
                    _ = s.cancelled() => break,
                    m = messages.next() => m,
                };
                let Some(Ok(m)) = m else { continue };
                if matches!(
                    subjects::parse_case_subject(&m.subject),
                    Some(subjects::CaseSubject::Sla(_))
                ) {
                    let ev = SlaEvent::decode(m.payload.clone()).expect("an SlaEvent");
                    if ev.kind() == SlaEventKind::Breach {
                        *c.lock().unwrap().entry(ev.case_id).or_default() += 1;
                    }
                }
                // Moved on once counted, so whoever sees the position sees
                // the count.
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or_default();
                r.store(seq, Ordering::SeqCst);
            }
        });
        BreachCounter {
            counts,
            read,
            stop,
            task,
        }
    }

    /// Waits until everything the case stream holds now has been counted,
    /// so that a breach already stored is not missed.
    pub async fn caught_up(&self, sys: &TestSystem) {
        let bus = sys.bus().await;
        let mut stream = bus
            .js
            .get_stream(subjects::STREAM_CASES)
            .await
            .expect("the case stream");
        let last = stream
            .info()
            .await
            .expect("the case stream's state")
            .state
            .last_sequence;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.read.load(Ordering::SeqCst) < last {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the case stream not read up to {last} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cases breached so far.
    pub fn unique(&self) -> usize {
        self.counts.lock().unwrap().len()
    }

    /// Breaches per case so far.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.counts.lock().unwrap().clone()
    }

    pub async fn stop(&mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}
