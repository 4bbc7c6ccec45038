//! Counting exactly what reached the SMTP server and the HTTP provider for
//! the messages a test expected there: arrived, lost, delivered twice.

use std::collections::{HashMap, HashSet};

use herald_proto::v1::Channel;

use crate::{http::Request, smtp::Mail};

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

/// [`job_id`] of each notification.
pub fn jobs(ids: &[String], channel: Channel) -> HashSet<String> {
    ids.iter().map(|id| job_id(id, channel)).collect()
}
