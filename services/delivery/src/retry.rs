//! When a failed job is tried again, and what each try leaves behind: the
//! retry rule and the total time limit, and the attempt-history lines the
//! ledger stores and a dead letter carries back out as `Attempt`s.

use std::time::{Duration, SystemTime};

use herald_proto::v1::{Attempt, DeliveryJob};
use rand::Rng;

use crate::Delivery;

impl Delivery {
    /// The delay before the next attempt, or `None` when the schedule or
    /// the total time limit is used up. `attempt` is the attempt that just
    /// failed (1 for the first).
    pub(crate) fn next_delay(
        &self,
        job: &DeliveryJob,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        next_delay(
            &self.cfg.retry_schedule,
            self.cfg.give_up_after,
            herald_proto::system_time(job.created_at.as_ref()),
            SystemTime::now(),
            attempt,
            retry_after,
            rand::rng().random_range(0.8..1.2),
        )
    }

    /// Whether waiting `wait` more would take the job past
    /// `delivery.give_up_after`.
    pub(crate) fn past_time_limit(&self, job: &DeliveryJob, wait: Duration) -> bool {
        let created = herald_proto::system_time(job.created_at.as_ref());
        let age = SystemTime::now()
            .duration_since(created)
            .unwrap_or_default();
        age + wait > self.cfg.give_up_after
    }
}

/// The retry rule, free of clocks and randomness so it can be tested:
/// the schedule's entry for the failed attempt, scaled by `jitter`, or the
/// provider's `Retry-After` if that is longer; `None` once the schedule is
/// used up or the next attempt would come after `give_up_after`.
fn next_delay(
    schedule: &[Duration],
    give_up_after: Duration,
    created: SystemTime,
    now: SystemTime,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = *schedule.get((attempt as usize).checked_sub(1)?)?;
    let delay = base.mul_f64(jitter).max(retry_after.unwrap_or_default());
    let age = now.duration_since(created).unwrap_or_default();
    if age + delay > give_up_after {
        return None;
    }
    Some(delay)
}

/// One line of a job's attempt history, `attempt|ms|outcome|detail`, kept
/// on one line whatever the detail says.
pub(crate) fn history_line(attempt: u32, outcome: &str, detail: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{attempt}|{ms}|{outcome}|{}", detail.replace('\n', " "))
}

/// A history line read back; `None` for one that is not ours.
pub(crate) fn parse_history_line(line: &str) -> Option<Attempt> {
    let mut parts = line.splitn(4, '|');
    let number = parts.next()?.parse().ok()?;
    let ms: u64 = parts.next()?.parse().ok()?;
    let outcome = parts.next()?.to_string();
    let detail = parts.next().unwrap_or_default().to_string();
    Some(Attempt {
        number,
        at: Some(herald_proto::timestamp(
            std::time::UNIX_EPOCH + Duration::from_millis(ms),
        )),
        outcome,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn the_schedule_is_followed_then_exhausted() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let schedule = secs(&[1, 5, 30]);
        let day = Duration::from_secs(86_400);
        let d = |attempt| next_delay(&schedule, day, t0, t0, attempt, None, 1.0);
        assert_eq!(d(1), Some(Duration::from_secs(1)));
        assert_eq!(d(2), Some(Duration::from_secs(5)));
        assert_eq!(d(3), Some(Duration::from_secs(30)));
        assert_eq!(d(4), None, "three retries, then give up");
        assert_eq!(d(0), None);
    }

    #[test]
    fn jitter_scales_and_a_longer_retry_after_wins() {
        let t0 = SystemTime::UNIX_EPOCH;
        let schedule = secs(&[10]);
        let day = Duration::from_secs(86_400);
        assert_eq!(
            next_delay(&schedule, day, t0, t0, 1, None, 0.8),
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            next_delay(&schedule, day, t0, t0, 1, Some(Duration::from_secs(3)), 1.2),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            next_delay(
                &schedule,
                day,
                t0,
                t0,
                1,
                Some(Duration::from_secs(60)),
                1.0
            ),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn the_total_time_limit_ends_retries_early() {
        let created = SystemTime::UNIX_EPOCH;
        let schedule = secs(&[60, 60, 60]);
        let limit = Duration::from_secs(100);
        let at = |s| created + Duration::from_secs(s);
        assert!(next_delay(&schedule, limit, created, at(30), 1, None, 1.0).is_some());
        assert_eq!(
            next_delay(&schedule, limit, created, at(50), 2, None, 1.0),
            None
        );
        // A Retry-After beyond the limit hands the job on rather than wait.
        assert_eq!(
            next_delay(
                &schedule,
                limit,
                created,
                at(0),
                1,
                Some(Duration::from_secs(500)),
                1.0
            ),
            None
        );
    }

    #[test]
    fn history_lines_round_trip() {
        let line = history_line(3, "transient", "HTTP 503:\nbusy");
        let a = parse_history_line(&line).unwrap();
        assert_eq!((a.number, a.outcome.as_str()), (3, "transient"));
        assert_eq!(a.detail, "HTTP 503: busy");
    }
}
