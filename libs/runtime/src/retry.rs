//! Waiting before trying again: one exponential backoff for every loop
//! that retries a connection, a claim or a write, so each retries the same
//! way and every wait ends at once on shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays that double from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            next: first,
            max: max.max(first),
        }
    }

    /// The delay to wait now; the one after is twice as long (at most
    /// `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// The delay before try `n + 1` after `n` failed tries (1 for the
    /// first failure), without keeping state: for a redelivery whose count
    /// the message carries.
    pub fn nth(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(30);
        self.first
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next delay. False if `shutdown` fired first: the caller
    /// stops trying.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let seen: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let secs: Vec<u64> = (1..=7)
            .map(|n| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
                    .nth(n)
                    .as_secs()
            })
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_once_on_shutdown() {
        let stop = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let t0 = tokio::time::Instant::now();
        assert!(b.wait(&stop).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
        stop.cancel();
        assert!(!b.wait(&stop).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
    }
}
