//! Fault runs: thousands of notifications through a [`TestSystem`](crate::TestSystem)
//! while something breaks, then an exact count of what reached the sinks.
//!
//! Two conventions hold for every fault test:
//!
//! * **One at a time.** Each takes [`serial`] first and holds it to the
//!   end, so its timings (time to recover, time to stop) are its own even
//!   when the harness runs the tests of a file in parallel. The lock is per
//!   test binary.
//! * **One row each.** Each prints its row of the fault table with
//!   [`row`], on a line of its own starting with `| `, so that
//!   ```text
//!   cargo test -p herald-testkit --test faults -- --nocapture | grep '^| '
//!   ```
//!   collects the table (N, lost, duplicated, time to recover, notes).

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use crate::count::Count;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The lock every fault test holds from its first line to its last.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Prints one row of the fault table.
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
