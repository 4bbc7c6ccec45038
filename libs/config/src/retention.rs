//! The `[retention]` section: how long each kind of data about people is
//! kept before it is destroyed (SOP 003 §6.5: "retain client data only for
//! the period required by law or contract, after which it must be securely
//! destroyed"), and the key erasures are recorded under.
//!
//! The audit trail and the case stream keep `nats.audit_retention`; the
//! README's retention table lists every kind, where it lives and how its
//! period is enforced (stream `max_age` or a Redis TTL).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// The shortest period any kind of data may be kept: JetStream reads a
/// zero age as "forever", and less than an hour would drop work in flight.
pub const SHORTEST: Duration = Duration::from_secs(3600);

const DAY: u64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Accepted notifications not yet routed, and broadcast commands not
    /// yet carried out (`HERALD_NOTIFY`, `HERALD_EMERGENCY_NOTIFY`,
    /// `HERALD_EMERGENCY_BROADCAST`): stream `max_age`.
    #[serde(with = "humantime_serde")]
    pub requests: Duration,
    /// Delivery jobs not yet sent and stops not yet applied
    /// (`HERALD_DELIVERY`, `HERALD_EMERGENCY_DELIVERY`, `HERALD_STOPS`):
    /// stream `max_age`, at least `delivery.give_up_after`.
    #[serde(with = "humantime_serde")]
    pub delivery_jobs: Duration,
    /// Delivery statuses (`HERALD_STATUS`): stream `max_age`.
    #[serde(with = "humantime_serde")]
    pub status: Duration,
    /// What people sent back (`HERALD_INBOUND`): stream `max_age`.
    #[serde(with = "humantime_serde")]
    pub inbound: Duration,
    /// Undeliverable jobs and set-aside messages (`HERALD_DLQ`): stream
    /// `max_age`.
    #[serde(with = "humantime_serde")]
    pub dead_letters: Duration,
    /// What the services keep per case in Redis (intake's open/resolved
    /// and the channel the client last wrote on, the sla clocks, the
    /// escalation): a TTL renewed on every write, so a case nobody has
    /// touched for this long is forgotten.
    #[serde(with = "humantime_serde")]
    pub case_state: Duration,
    /// Keys the hash an erasure's trail record carries of the erased
    /// contact's id, so the DPO can later check whether someone was erased
    /// (`herald contacts erased <id>`) without the trail naming anyone.
    /// Unset, the record carries no hash: an unkeyed hash of a guessable
    /// id would name the person.
    pub erasure_hash_key: Option<Secret>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            requests: Duration::from_secs(7 * DAY),
            delivery_jobs: Duration::from_secs(7 * DAY),
            status: Duration::from_secs(14 * DAY),
            inbound: Duration::from_secs(14 * DAY),
            dead_letters: Duration::from_secs(90 * DAY),
            case_state: Duration::from_secs(400 * DAY),
            erasure_hash_key: None,
        }
    }
}

impl RetentionConfig {
    /// Every period, by its key.
    pub fn periods(&self) -> [(&'static str, Duration); 6] {
        [
            ("retention.requests", self.requests),
            ("retention.delivery_jobs", self.delivery_jobs),
            ("retention.status", self.status),
            ("retention.inbound", self.inbound),
            ("retention.dead_letters", self.dead_letters),
            ("retention.case_state", self.case_state),
        ]
    }

    /// Periods are held to `delivery.give_up_after` and
    /// `nats.audit_retention` in [`crate::across_sections`].
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        for (key, period) in self.periods() {
            if period < SHORTEST {
                problems.push(format!(
                    "`{key}` must be at least 1h (a zero period would keep the data forever)"
                ));
            }
        }
        if self
            .erasure_hash_key
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 16)
        {
            problems.push("`retention.erasure_hash_key` must be at least 16 characters".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::tests::env;

    fn problems(pairs: &[(&str, &str)]) -> String {
        Config::load(None, env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn the_defaults_follow_the_retention_table() {
        let c = Config::load(None, env(&[])).unwrap();
        let days = |d: std::time::Duration| d.as_secs() / 86_400;
        assert_eq!(days(c.retention.requests), 7);
        assert_eq!(days(c.retention.delivery_jobs), 7);
        assert_eq!(days(c.retention.status), 14);
        assert_eq!(days(c.retention.inbound), 14);
        assert_eq!(days(c.retention.dead_letters), 90);
        assert_eq!(days(c.retention.case_state), 400);
        assert!(c.retention.erasure_hash_key.is_none());
    }

    #[test]
    fn a_zero_or_tiny_period_is_refused_naming_its_key() {
        let err = problems(&[
            ("HERALD_RETENTION_STATUS", "0s"),
            ("HERALD_RETENTION_CASE_STATE", "10m"),
        ]);
        assert!(
            err.contains("`retention.status` must be at least 1h"),
            "{err}"
        );
        assert!(
            err.contains("`retention.case_state` must be at least 1h"),
            "{err}"
        );
        assert!(!err.contains("retention.inbound"), "{err}");
    }

    #[test]
    fn delivery_jobs_outlive_the_time_delivery_keeps_trying() {
        let err = problems(&[
            ("HERALD_RETENTION_DELIVERY_JOBS", "2h"),
            ("HERALD_DELIVERY_GIVE_UP_AFTER", "6h"),
        ]);
        assert!(
            err.contains("`retention.delivery_jobs` must be at least `delivery.give_up_after`"),
            "{err}"
        );
        let ok = Config::load(
            None,
            env(&[
                ("HERALD_RETENTION_DELIVERY_JOBS", "6h"),
                ("HERALD_DELIVERY_GIVE_UP_AFTER", "6h"),
            ]),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn the_trail_and_case_state_outlive_what_they_document() {
        let err = problems(&[("HERALD_NATS_AUDIT_RETENTION", "3days")]);
        assert!(
            err.contains("`nats.audit_retention` must be at least `retention.dead_letters`"),
            "{err}"
        );
    }

    #[test]
    fn a_short_erasure_key_is_refused() {
        let err = problems(&[("HERALD_RETENTION_ERASURE_HASH_KEY", "short")]);
        assert!(
            err.contains("`retention.erasure_hash_key` must be at least 16 characters"),
            "{err}"
        );
        assert!(!err.contains("short\""), "the key is not repeated: {err}");
    }
}
