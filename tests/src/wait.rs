//! Waiting for something to become true, with a deadline.

use std::time::{Duration, Instant};

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
