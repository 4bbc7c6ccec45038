//! Checks that relate settings of different sections, which no single
//! section can make on its own.

use crate::Config;

/// Every rule that spans sections.
pub(crate) fn validate(c: &Config, problems: &mut Vec<String>) {
    // A timer whose lease ran out after a crash is fired again by another
    // instance; JetStream drops that repeat only inside the window.
    for (key, lease) in [
        ("sla.lease", c.sla.lease),
        ("escalation.lease", c.escalation.lease),
        ("broadcast.lease", c.broadcast.lease),
    ] {
        if lease >= c.nats.duplicate_window {
            problems.push(format!(
                "`{key}` must be shorter than `nats.duplicate_window`, or a timer taken over after a crash could fire twice"
            ));
        }
    }
    // A job retried until `give_up_after` must still be in its stream.
    if c.retention.delivery_jobs < c.delivery.give_up_after {
        problems.push(
            "`retention.delivery_jobs` must be at least `delivery.give_up_after`, or a job still being retried would be destroyed".into(),
        );
    }
    // The trail documents what the other streams held: it outlives them.
    for (key, period) in c.retention.periods() {
        if key != "retention.case_state" && c.nats.audit_retention < period {
            problems.push(format!(
                "`nats.audit_retention` must be at least `{key}`: the trail outlives what it documents"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::tests::env;

    #[test]
    fn timer_leases_must_fit_inside_the_duplicate_window() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_SLA_LEASE", "20m"),
                ("HERALD_ESCALATION_SURVEY_SECRET", "short"),
                ("HERALD_SLA_RUNNERS", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for key in ["sla.lease", "escalation.survey_secret", "sla.runners"] {
            assert!(err.contains(key), "{key} not named in: {err}");
        }
        let ok = Config::load(
            None,
            env(&[
                ("HERALD_NATS_DUPLICATE_WINDOW", "30m"),
                ("HERALD_SLA_LEASE", "20m"),
                ("HERALD_ESCALATION_LEASE", "29m"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.sla.lease, std::time::Duration::from_secs(20 * 60));
        let err = Config::load(
            None,
            env(&[
                ("HERALD_ESCALATION_LEASE", "10m"),
                ("HERALD_BROADCAST_LEASE", "11m"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("escalation.lease"), "{err}");
        assert!(err.contains("broadcast.lease"), "{err}");
        assert!(err.contains("nats.duplicate_window"), "{err}");
    }
}
