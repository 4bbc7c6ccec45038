//! Asking delivery to stop sends. Delivery alone keeps the cancel keys (it
//! checks them right before each provider call); intake, escalation and
//! the broadcast service ask it here, to apply a stop and, when asked, to
//! wait until no send carrying the keys is still at a provider.
//!
//! When no delivery runs, the stop is written to the stops stream, which
//! every delivery applies before it takes a job, and delivery is asked
//! once more. Delivery answers stops before it catches up with the stream,
//! so "nobody answers" the second time means no delivery has caught up
//! yet, and the one that does will find the stop. Either way, once `send`
//! returns, nothing the stop names reaches a provider.

use std::time::Duration;

use herald_proto::{
    subjects,
    v1::{FamilyStop, StopReply, StopRequest, Stopped, stop_reply},
};
use herald_runtime::bus::{AskError, Bus};

/// How long an answer may take beyond the wait the request asks for.
const SLACK: Duration = Duration::from_secs(5);

/// What to stop.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    req: StopRequest,
}

impl Stop {
    /// Stops for good every job carrying `key`.
    pub fn key(key: impl Into<String>, reason: impl Into<String>) -> Stop {
        Stop::default().and_key(key).because(reason)
    }

    /// Stops every job carrying `family@n` with n < `before`.
    pub fn family(family: impl Into<String>, before: u64, reason: impl Into<String>) -> Stop {
        Stop::default().and_family(family, before).because(reason)
    }

    /// Holds every job with sensitive content to `contacts` under `id`
    /// until [`Stop::release`] of the same id.
    pub fn hold(id: impl Into<String>, contacts: Vec<String>, reason: impl Into<String>) -> Stop {
        let mut stop = Stop::default().because(reason);
        stop.req.hold_id = id.into();
        stop.req.hold_contacts = contacts;
        stop
    }

    /// Releases the hold `id`: what it held goes out again.
    pub fn release(id: impl Into<String>, reason: impl Into<String>) -> Stop {
        let mut stop = Stop::default().because(reason);
        stop.req.release_hold = id.into();
        stop
    }

    pub fn and_key(mut self, key: impl Into<String>) -> Stop {
        self.req.keys.push(key.into());
        self
    }

    pub fn and_family(mut self, family: impl Into<String>, before: u64) -> Stop {
        self.req.families.push(FamilyStop {
            family: family.into(),
            before,
        });
        self
    }

    pub fn because(mut self, reason: impl Into<String>) -> Stop {
        self.req.reason = reason.into();
        self
    }

    /// Also waits, up to `max`, until no send carrying them is still at a
    /// provider.
    pub fn and_wait(mut self, max: Duration) -> Stop {
        self.req.wait_ms = u32::try_from(max.as_millis()).unwrap_or(u32::MAX);
        self
    }

    /// Records the stop. The answer says which keys it cancelled first and
    /// whether a send is still under way; when no delivery is running, the
    /// stop is kept for it, nothing is under way, and every key reads as
    /// cancelled first.
    pub async fn send(self, bus: &Bus) -> anyhow::Result<Stopped> {
        let within = Duration::from_millis(u64::from(self.req.wait_ms)) + SLACK;
        match bus.ask(subjects::DELIVERY_STOP, &self.req, within).await {
            Ok(reply) => return answer(reply),
            Err(AskError::NoResponders(_)) => {}
            Err(e) => return Err(e.into()),
        }
        bus.publish_durable(subjects::DELIVERY_STOPS.to_string(), &self.req, None)
            .await?;
        match bus.ask(subjects::DELIVERY_STOP, &self.req, within).await {
            Ok(reply) => answer(reply),
            Err(AskError::NoResponders(_)) => Ok(Stopped {
                first: vec![true; self.req.keys.len()],
                idle: true,
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// The first of `keys` that is already stopped, with why; nothing is
/// stopped by asking. With no delivery running, none is known to be.
pub async fn first_stopped(bus: &Bus, keys: &[String]) -> anyhow::Result<Option<(String, String)>> {
    let req = StopRequest {
        keys: keys.to_vec(),
        check_only: true,
        ..Default::default()
    };
    let s = match bus.ask(subjects::DELIVERY_STOP, &req, SLACK).await {
        Ok(reply) => answer(reply)?,
        Err(AskError::NoResponders(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok((!s.stopped_key.is_empty()).then_some((s.stopped_key, s.stopped_reason)))
}

fn answer(reply: StopReply) -> anyhow::Result<Stopped> {
    match reply.result {
        Some(stop_reply::Result::Stopped(s)) => Ok(s),
        Some(stop_reply::Result::Rejected(r)) => {
            anyhow::bail!("delivery refused the stop: {} {}", r.field, r.message)
        }
        None => anyhow::bail!("delivery sent an empty answer to a stop"),
    }
}
