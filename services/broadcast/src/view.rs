//! A broadcast's progress, as `herald broadcast status` shows it: per
//! channel, how many recipients were sent to, reached, confirmed and could
//! not be reached; per recipient, how far each channel got; and, once it is
//! over, each recipient's outcome.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_proto::v1::{
    BroadcastState, BroadcastStatus, Channel, ChannelProgress, RecipientProgress,
};

use crate::{plan::parse_field, state::Meta};

/// How far one channel got for one person, from the progress of its jobs:
/// the best any job reached.
pub fn channel_state<'a>(states: impl Iterator<Item = &'a str>) -> &'static str {
    let mut best = "none";
    let rank = |s: &str| match s {
        "delivered" => 6,
        "sent" => 5,
        "undelivered" => 4,
        "queued" => 3,
        "failed" => 2,
        "cancelled" => 1,
        _ => 0,
    };
    for s in states {
        let s: &'static str = match s {
            "delivered" => "delivered",
            "sent" => "sent",
            "undelivered" => "undelivered",
            "queued" => "queued",
            "failed" => "failed",
            "cancelled" => "cancelled",
            _ => continue,
        };
        if rank(s) > rank(best) {
            best = s;
        }
    }
    best
}

/// Handed to the provider at least once.
fn handed(state: &str) -> bool {
    matches!(state, "sent" | "delivered" | "undelivered")
}

/// Reached the person, as far as anyone has told us: handed over and not
/// reported failed.
fn reached(state: &str) -> bool {
    matches!(state, "sent" | "delivered")
}

fn failed(state: &str) -> bool {
    matches!(state, "failed" | "undelivered")
}

/// Builds the status from what Redis holds.
pub fn build(
    id: &str,
    meta: &Meta,
    people: &[String],
    jobs: &HashMap<String, String>,
    confirmed: &HashMap<usize, (Channel, DateTime<Utc>)>,
    with_rows: bool,
) -> BroadcastStatus {
    let channels = [Channel::Email, Channel::Voice, Channel::Sms];
    // recipient → channel → job states
    let mut per: Vec<[Vec<&str>; 3]> = vec![Default::default(); people.len()];
    let mut calls = vec![0u32; people.len()];
    for (field, state) in jobs {
        let Some((r, ch)) = parse_field(field) else {
            continue;
        };
        let Some(slot) = per.get_mut(r) else { continue };
        let i = channels.iter().position(|c| *c == ch).unwrap_or(0);
        slot[i].push(state.as_str());
        if ch == Channel::Voice && handed(state) {
            calls[r] += 1;
        }
    }
    let over = matches!(
        meta.state,
        BroadcastState::Finished | BroadcastState::Cancelled
    );
    let mut progress: Vec<ChannelProgress> = channels
        .iter()
        .map(|c| ChannelProgress {
            channel: *c as i32,
            ..Default::default()
        })
        .collect();
    let mut status = BroadcastStatus {
        broadcast_id: id.to_string(),
        state: meta.state as i32,
        severity: meta.severity,
        started_by: meta.actor.clone(),
        started_at: Some(herald_proto::timestamp(meta.started_at.into())),
        ends_at: Some(herald_proto::timestamp(meta.ends_at.into())),
        recipients: people.len() as u32,
        cycles_done: meta.cycles_done,
        cycles_total: meta.cycles_total,
        cancelled: meta.cancelled.clone(),
        updates: meta.updates,
        ..Default::default()
    };
    for (r, contact_id) in people.iter().enumerate() {
        let states: Vec<&'static str> = per[r]
            .iter()
            .map(|s| channel_state(s.iter().copied()))
            .collect();
        for (i, s) in states.iter().enumerate() {
            let p = &mut progress[i];
            if *s != "none" {
                p.targeted += 1;
            }
            if handed(s) {
                p.sent += 1;
            }
            if *s == "delivered" {
                p.delivered += 1;
            }
            if failed(s) {
                p.unreachable += 1;
            }
        }
        let confirmation = confirmed.get(&r);
        if let Some((via, _)) = confirmation {
            status.confirmed += 1;
            if let Some(i) = channels.iter().position(|c| c == via) {
                progress[i].confirmed += 1;
            }
        }
        let outcome = if confirmation.is_some() {
            "confirmed"
        } else if !over {
            ""
        } else if states.iter().any(|s| reached(s)) {
            status.not_confirmed += 1;
            "not_confirmed"
        } else {
            status.unreachable += 1;
            "unreachable"
        };
        if with_rows {
            status.recipient_rows.push(RecipientProgress {
                contact_id: contact_id.clone(),
                email: states[0].into(),
                voice: states[1].into(),
                sms: states[2].into(),
                calls: calls[r],
                confirmed: confirmation.is_some(),
                confirmed_via: confirmation.map(|(c, _)| *c as i32).unwrap_or_default(),
                confirmed_at: confirmation.map(|(_, t)| herald_proto::timestamp((*t).into())),
                outcome: outcome.into(),
            });
        }
    }
    // SMS is shown only when the broadcast uses it.
    if !meta.sms && progress[2].targeted == 0 {
        progress.pop();
    }
    status.channels = progress;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_best_job_counts_and_a_failure_after_sending_still_counts_as_sent() {
        assert_eq!(
            channel_state(["undelivered", "delivered"].into_iter()),
            "delivered"
        );
        assert_eq!(channel_state(["failed", "queued"].into_iter()), "queued");
        assert_eq!(channel_state(std::iter::empty()), "none");
    }

    #[test]
    fn outcomes_are_given_once_it_is_over() {
        let people: Vec<String> = ["ann", "bob", "cat", "dan"].map(String::from).to_vec();
        let j = jobs(&[
            ("r0-email-c1", "delivered"),
            ("r0-voice-c1", "sent"),
            ("r1-email-c1", "delivered"),
            ("r1-voice-c1", "undelivered"),
            ("r1-voice-c2", "delivered"),
            ("r2-email-c1", "failed"),
            ("r2-voice-c1", "undelivered"),
            ("r2-voice-c2", "failed"),
            ("r3-email-c1", "failed"),
        ]);
        let confirmed: HashMap<usize, (Channel, DateTime<Utc>)> =
            [(0, (Channel::Voice, Utc::now()))].into();
        let mut meta = Meta {
            state: BroadcastState::Active,
            ..Default::default()
        };
        let live = build("b", &meta, &people, &j, &confirmed, true);
        assert_eq!(
            (live.confirmed, live.not_confirmed, live.unreachable),
            (1, 0, 0)
        );
        assert_eq!(live.recipient_rows[1].outcome, "");
        meta.state = BroadcastState::Finished;
        let s = build("b", &meta, &people, &j, &confirmed, true);
        assert_eq!((s.confirmed, s.not_confirmed, s.unreachable), (1, 1, 2));
        let email = &s.channels[0];
        assert_eq!(
            (
                email.targeted,
                email.sent,
                email.delivered,
                email.unreachable
            ),
            (4, 2, 2, 2)
        );
        let voice = &s.channels[1];
        assert_eq!(
            (
                voice.targeted,
                voice.sent,
                voice.delivered,
                voice.confirmed,
                voice.unreachable
            ),
            (3, 3, 1, 1, 1)
        );
        assert_eq!(s.channels.len(), 2, "no SMS column when SMS is not used");
        let bob = &s.recipient_rows[1];
        assert_eq!(
            (bob.voice.as_str(), bob.calls, bob.outcome.as_str()),
            ("delivered", 2, "not_confirmed")
        );
        assert_eq!(s.recipient_rows[3].voice, "none");
    }
}
