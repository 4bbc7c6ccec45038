//! The emergency lane's claim on the machine.
//!
//! Separate subjects, streams and consumers keep emergency messages from
//! queueing *behind* ordinary ones, but not from sharing the CPU, Redis and
//! NATS with them: tokio has no task priorities, and a service working
//! through a backlog of a hundred thousand ordinary notifications would
//! give an emergency job only its share. So the normal lane yields:
//!
//! * **In a process**, every emergency message being worked on holds a
//!   [`Busy`] guard, and normal-lane consumers do not start another message
//!   while any guard is held ([`Precedence::normal_may_proceed`]). Work they
//!   already started finishes; nothing is dropped or handed back, it simply
//!   waits in the consumer's buffer (and JetStream) a little longer.
//! * **Across processes**, a process holding guards says so on
//!   [`subjects::EMERGENCY_BUSY`] (core NATS) every [`PULSE_EVERY`], and
//!   every process that hears it holds its normal lane for [`HOLD`] after
//!   the last word. So while the broadcast service expands an audience, or
//!   delivery sends an emergency's calls, the router and delivery stop
//!   taking ordinary work everywhere.
//!
//! A job waiting on a provider's rate limit does no work, so it steps aside
//! ([`Precedence::park`]): a paced emergency does not stall ordinary traffic
//! for longer than it really needs the machine.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicIsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use herald_proto::subjects;
use tokio::{sync::Notify, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often a busy process says so.
pub const PULSE_EVERY: Duration = Duration::from_millis(50);
/// How long after the last word from another process the normal lane stays
/// held.
pub const HOLD: Duration = Duration::from_millis(250);

/// One per process, shared by every consumer in it. Clones share state.
#[derive(Clone)]
pub struct Precedence {
    inner: Arc<Inner>,
}

struct Inner {
    /// Emergency messages being worked on here and not parked.
    active: AtomicIsize,
    /// Until when another process's emergency work holds the normal lane.
    remote_until: Mutex<Option<Instant>>,
    /// Woken when local emergency work ends.
    idle: Notify,
    /// Woken when local emergency work begins, so the first pulse goes out
    /// at once.
    busy: Notify,
    /// This process's mark on its pulses, so it does not hear itself.
    origin: String,
}

impl Default for Precedence {
    fn default() -> Self {
        Precedence::new()
    }
}

impl Precedence {
    pub fn new() -> Precedence {
        Precedence {
            inner: Arc::new(Inner {
                active: AtomicIsize::new(0),
                remote_until: Mutex::new(None),
                idle: Notify::new(),
                busy: Notify::new(),
                origin: herald_proto::ids::owner_id(),
            }),
        }
    }

    /// Listens for other processes' pulses and sends this one's while it
    /// has emergency work, until `shutdown`.
    pub fn attach(
        &self,
        client: &async_nats::Client,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let me = self.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let mut pulses = match client.subscribe(subjects::EMERGENCY_BUSY).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "not listening for emergency pulses");
                    return;
                }
            };
            let sender = {
                let me = me.clone();
                let client = client.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { me.pulse(client, shutdown).await })
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    m = pulses.next() => match m {
                        Some(m) if m.payload.as_ref() != me.inner.origin.as_bytes() => {
                            me.heard(Instant::now());
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            sender.abort();
        })
    }

    async fn pulse(&self, client: async_nats::Client, shutdown: CancellationToken) {
        let origin = bytes::Bytes::from(self.inner.origin.clone());
        loop {
            if !self.is_busy() {
                let woken = self.inner.busy.notified();
                if !self.is_busy() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = woken => {}
                    }
                }
                continue;
            }
            let _ = client
                .publish(subjects::EMERGENCY_BUSY, origin.clone())
                .await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PULSE_EVERY) => {}
            }
        }
    }

    /// Another process has emergency work (heard at `at`).
    pub fn heard(&self, at: Instant) {
        let mut until = self
            .inner
            .remote_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let new = at + HOLD;
        if until.is_none_or(|u| u < new) {
            *until = Some(new);
        }
    }

    /// Marks emergency work in progress until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.enter();
        Busy {
            priority: self.clone(),
        }
    }

    /// Inside emergency work: steps aside while waiting (on a rate limit, a
    /// provider's pause) until the guard is dropped.
    pub fn park(&self) -> Parked {
        self.leave();
        Parked {
            priority: self.clone(),
        }
    }

    fn enter(&self) {
        if self.inner.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.inner.busy.notify_waiters();
        }
    }

    fn leave(&self) {
        if self.inner.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }

    /// Whether emergency work is under way in this process.
    pub fn is_busy(&self) -> bool {
        self.inner.active.load(Ordering::SeqCst) > 0
    }

    /// Until when another process holds the normal lane, if it does now.
    fn held_remotely(&self) -> Option<Instant> {
        let until = *self
            .inner
            .remote_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.filter(|u| *u > Instant::now())
    }

    /// Whether the normal lane should wait now.
    pub fn is_yielding(&self) -> bool {
        self.is_busy() || self.held_remotely().is_some()
    }

    /// Returns once the normal lane may start another message: no emergency
    /// work here, and no word of any elsewhere for [`HOLD`].
    pub async fn normal_may_proceed(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.is_busy() {
                idle.await;
                continue;
            }
            match self.held_remotely() {
                None => return,
                Some(until) => tokio::time::sleep_until(until).await,
            }
        }
    }
}

/// Emergency work in progress; dropping it ends it.
pub struct Busy {
    priority: Precedence,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.priority.leave();
    }
}

/// Emergency work waiting, not working; dropping it resumes it.
pub struct Parked {
    priority: Precedence,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.priority.enter();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_normal_lane_waits_for_local_emergency_work_to_end() {
        let p = Precedence::new();
        let busy = p.busy();
        let waiting = tokio::spawn({
            let p = p.clone();
            async move {
                p.normal_may_proceed().await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !waiting.is_finished(),
            "must wait while emergency work runs"
        );
        let released = Instant::now();
        drop(busy);
        assert_eq!(waiting.await.unwrap(), released);
        assert!(!p.is_yielding());
    }

    #[tokio::test(start_paused = true)]
    async fn parked_work_lets_the_normal_lane_run() {
        let p = Precedence::new();
        let _busy = p.busy();
        assert!(p.is_yielding());
        {
            let _parked = p.park();
            assert!(!p.is_yielding());
            p.normal_may_proceed().await;
        }
        assert!(p.is_yielding(), "back at work after the wait");
    }

    #[tokio::test(start_paused = true)]
    async fn word_from_another_process_holds_the_lane_for_a_while() {
        let p = Precedence::new();
        let t0 = Instant::now();
        p.heard(t0);
        assert!(p.is_yielding());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A later pulse extends the hold; an older one never shortens it.
        p.heard(Instant::now());
        p.heard(t0);
        p.normal_may_proceed().await;
        assert_eq!(Instant::now(), t0 + Duration::from_millis(100) + HOLD);
        assert!(!p.is_yielding());
    }
}
