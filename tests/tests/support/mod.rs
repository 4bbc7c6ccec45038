//! What the delivery fault and limit tests share: many one-off
//! recipients, submitting thousands of requests the way a patient client
//! would (retrying with the same idempotency key until accepted), and
//! counting exactly what reached the SMTP server and the HTTP provider.

#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use futures::StreamExt;
use herald_proto::{
    Message, subjects,
    v1::{
        Channel, CommunicationType, InlineRecipient, IntakeReply, Lane, NotificationRequest,
        Priority, Recipient, intake_reply, recipient::Target,
    },
};
use herald_testkit::{http::Request, smtp::Mail};

/// A phone number unique to `i`.
pub fn phone(i: usize) -> String {
    format!("+44770{i:07}")
}

pub fn email(i: usize) -> String {
    format!("person{i}@example.org")
}

/// A one-off recipient who can be reached on the channels given, preferring
/// the first.
pub fn person(i: usize, channels: &[Channel]) -> Recipient {
    let has = |c: Channel| channels.contains(&c);
    Recipient {
        target: Some(Target::Inline(InlineRecipient {
            name: format!("Person {i}"),
            email: if has(Channel::Email) {
                email(i)
            } else {
                String::new()
            },
            phone: if has(Channel::Sms) || has(Channel::Voice) {
                phone(i)
            } else {
                String::new()
            },
            preferred_channel: channels.first().copied().unwrap_or_default() as i32,
            consent_email: has(Channel::Email),
            consent_sms: has(Channel::Sms),
            consent_voice: has(Channel::Voice),
            identity_verified: true,
            ..Default::default()
        })),
    }
}

/// An inquiry acknowledgement to one recipient.
pub fn inquiry_to(key: &str, to: Recipient) -> NotificationRequest {
    NotificationRequest {
        idempotency_key: key.into(),
        communication_type: CommunicationType::InitialInquiry as i32,
        priority: Priority::Normal as i32,
        recipients: vec![to],
        template_id: "inquiry_received".into(),
        params: [("reference".to_string(), format!("REF-{key}"))].into(),
        requester: "faults".into(),
        ..Default::default()
    }
}

/// Submits one request until intake accepts it, retrying with the same
/// idempotency key through timeouts and outages, as a careful client does.
pub async fn submit(client: &async_nats::Client, req: &NotificationRequest, lane: Lane) -> String {
    let payload = req.encode_to_vec();
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subjects::intake_notify(lane), payload.clone().into()),
        )
        .await;
        if let Ok(Ok(msg)) = reply
            && let Ok(reply) = IntakeReply::decode(msg.payload)
        {
            match reply.result {
                Some(intake_reply::Result::Accepted(a)) => return a.notification_id,
                other => panic!("request {} refused: {other:?}", req.idempotency_key),
            }
        }
        assert!(
            Instant::now() < give_up,
            "intake never accepted {}",
            req.idempotency_key
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Submits every request, `parallel` at a time; ids in request order.
pub async fn submit_all(
    client: &async_nats::Client,
    reqs: Vec<NotificationRequest>,
    parallel: usize,
) -> Vec<String> {
    futures::stream::iter(reqs)
        .map(|r| {
            let c = client.clone();
            async move { submit(&c, &r, Lane::Normal).await }
        })
        .buffered(parallel)
        .collect()
        .await
}

/// Polls `done` until it holds, panicking with `what` after `timeout`;
/// returns when it first held.
pub async fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        // Counting thousands of recorded requests is not free; a tenth of
        // a second is precise enough for a time to recover.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What arrived at a sink for the messages expected there.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Count {
    pub expected: usize,
    /// Expected messages that arrived at least once.
    pub arrived: usize,
    /// Expected messages that never arrived.
    pub lost: usize,
    /// Messages the recipient would see more than once (the extra copies).
    pub duplicated: usize,
    /// Requests on the wire beyond one per message that a provider
    /// honouring `Idempotency-Key` answered from its cache (not delivered
    /// again).
    pub absorbed: usize,
    /// Messages that were not expected at all.
    pub unexpected: usize,
}

/// Counts requests the provider accepted (2xx), keyed by `Idempotency-Key`.
pub fn count_http(requests: &[Request], expected: &HashSet<String>) -> Count {
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    let mut absorbed = 0;
    let mut unexpected = 0;
    for r in requests {
        if !(200..300).contains(&r.answered) {
            continue;
        }
        let key = r.header("idempotency-key").unwrap_or_default();
        if !expected.contains(key) {
            unexpected += 1;
            continue;
        }
        if r.replayed {
            absorbed += 1;
        } else {
            *accepted.entry(key).or_default() += 1;
        }
    }
    Count {
        expected: expected.len(),
        arrived: accepted.len(),
        lost: expected.len() - accepted.len(),
        duplicated: accepted.values().map(|n| n - 1).sum(),
        absorbed,
        unexpected,
    }
}

/// Counts emails by `Message-ID` (`<job id@herald>`).
pub fn count_mail(mails: &[Mail], expected: &HashSet<String>) -> Count {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut unexpected = 0;
    for m in mails {
        let id = m.header("Message-ID").unwrap_or_default();
        let job = id
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim_end_matches("@herald")
            .to_string();
        if expected.contains(&job) {
            *seen.entry(job).or_default() += 1;
        } else {
            unexpected += 1;
        }
    }
    Count {
        expected: expected.len(),
        arrived: seen.len(),
        lost: expected.len() - seen.len(),
        duplicated: seen.values().map(|n| n - 1).sum(),
        absorbed: 0,
        unexpected,
    }
}

/// The job id the router gives the first recipient's job on a channel.
pub fn job_id(notification_id: &str, channel: Channel) -> String {
    format!("{notification_id}-r0-{}", channel.name())
}

pub fn jobs(ids: &[String], channel: Channel) -> HashSet<String> {
    ids.iter().map(|id| job_id(id, channel)).collect()
}

/// One row of the fault-run table, printed so that
/// `cargo test --test faults -- --nocapture | grep '^| '` collects them.
pub fn row(run: &str, n: usize, c: &Count, recovered: Option<Duration>, note: &str) {
    // On a line of its own: the harness may have printed the test's name
    // without ending the line.
    println!(
        "\n| {run} | {n} | {} | {} | {} | {} |",
        c.lost,
        c.duplicated,
        recovered
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "n/a".into()),
        note
    );
}

/// A counter's value from a Prometheus text page, summed over its label
/// sets (0 when absent).
pub fn metric(page: &str, name: &str) -> f64 {
    metric_with(page, name, &[])
}

/// As [`metric`], over the label sets that contain every one of `labels`
/// (written `key="value"`).
pub fn metric_with(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn get(url: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET answered")
        .text()
        .await
        .expect("body read")
}
