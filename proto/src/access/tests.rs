//! The permission table's promises, checked subject by subject against
//! NATS's wildcard rules.

use super::*;
use crate::v1::Channel;

/// Whether a NATS subject pattern `allow` covers the concrete subject
/// `s` (`*` one token, `>` the rest).
fn covers(allow: &str, s: &str) -> bool {
    let (mut a, mut b) = (allow.split('.'), s.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn may_publish(who: &Identity, s: &str) -> bool {
    permissions(who).publish.iter().any(|a| covers(a, s))
}

fn may_subscribe(who: &Identity, s: &str) -> bool {
    permissions(who).subscribe.iter().any(|a| covers(a, s))
}

#[test]
fn only_the_router_and_delivery_write_ordinary_jobs_and_only_broadcast_adds_emergency_ones() {
    let job = subjects::delivery_job(Lane::Normal, Channel::Sms);
    let emergency = subjects::delivery_job(Lane::Emergency, Channel::Voice);
    for id in Identity::services() {
        let ordinary = matches!(id.name.as_str(), "router" | "delivery");
        assert_eq!(may_publish(&id, &job), ordinary, "{id:?}");
        let urgent = matches!(id.name.as_str(), "router" | "delivery" | "broadcast");
        assert_eq!(may_publish(&id, &emergency), urgent, "{id:?}");
    }
    for role in [Role::Publisher, Role::Coordinator, Role::Operator] {
        assert!(!may_publish(&Identity::new("x", role), &job));
    }
}

#[test]
fn a_publisher_reaches_intake_under_its_own_name_and_nothing_else() {
    let crm = Identity::new("crm", Role::Publisher);
    assert!(may_publish(&crm, "herald.v1.intake.notify.crm"));
    assert!(may_publish(&crm, "herald.v1.intake.case.crm"));
    assert!(!may_publish(&crm, "herald.v1.intake.notify.billing"));
    assert!(!may_publish(&crm, "herald.v1.intake.directory.crm"));
    assert!(!may_publish(
        &crm,
        &subjects::from_caller(subjects::BROADCAST_START, "crm")
    ));
    assert!(!may_publish(&crm, subjects::EMERGENCY_BUSY));
    assert!(!may_publish(&crm, &subjects::case_event("C-1")));
    assert!(!may_publish(&crm, "$JS.API.CONSUMER.CREATE.HERALD_AUDIT"));
    assert!(!may_subscribe(&crm, "herald.v1.intake.notify.crm"));
    assert!(!may_subscribe(&crm, "_INBOX.abc"));
    assert!(!may_subscribe(&crm, "_INBOX_billing.abc"));
    assert!(may_subscribe(&crm, "_INBOX_crm.abc"));
}

#[test]
fn editors_propose_approvers_decide_and_only_intake_writes_approved_templates() {
    let ed = Identity::new("eve", Role::Editor);
    let ap = Identity::new("amy", Role::Approver);
    let propose = |who: &str| subjects::from_caller(subjects::INTAKE_TEMPLATES, who);
    let decide = |who: &str| subjects::from_caller(subjects::INTAKE_TEMPLATE_DECISIONS, who);
    assert!(may_publish(&ed, &propose("eve")));
    assert!(!may_publish(&ed, &decide("eve")));
    assert!(may_publish(&ap, &decide("amy")));
    assert!(!may_publish(&ap, &propose("amy")));
    let approved = subjects::template_version("ack", 2);
    let everyone: Vec<Identity> = Identity::services()
        .into_iter()
        .chain(Role::ALL[1..].iter().map(|r| Identity::new("x", *r)))
        .collect();
    for id in &everyone {
        assert_eq!(may_publish(id, &approved), id.name == "intake", "{id:?}");
    }
    let router = Identity::new("router", Role::Service);
    let follow = format!("$JS.API.CONSUMER.CREATE.{}", subjects::STREAM_TEMPLATES);
    assert!(may_publish(&router, &follow));
}

#[test]
fn the_busy_pulse_comes_only_from_services() {
    for role in Role::ALL {
        let id = Identity::new(if role == Role::Service { "sla" } else { "x" }, role);
        assert_eq!(
            may_publish(&id, subjects::EMERGENCY_BUSY),
            role == Role::Service,
            "{role:?}"
        );
    }
}

#[test]
fn only_intake_writes_case_events_and_only_sla_their_clocks() {
    let event = subjects::case_event("CASE-9");
    let clock = subjects::sla_event("CASE-9");
    for id in Identity::services() {
        assert_eq!(may_publish(&id, &event), id.name == "intake", "{id:?}");
        assert_eq!(may_publish(&id, &clock), id.name == "sla", "{id:?}");
    }
}

#[test]
fn every_stream_writer_in_the_owner_table_may_publish_to_it() {
    let sample = |stream: &str| -> String {
        match stream {
            subjects::STREAM_NOTIFY => subjects::NOTIFY_ACCEPTED.into(),
            subjects::STREAM_NOTIFY_EMERGENCY => subjects::NOTIFY_ACCEPTED_EMERGENCY.into(),
            subjects::STREAM_DELIVERY => subjects::delivery_job(Lane::Normal, Channel::Email),
            subjects::STREAM_DELIVERY_EMERGENCY => {
                subjects::delivery_job(Lane::Emergency, Channel::Email)
            }
            subjects::STREAM_STOPS => subjects::DELIVERY_STOPS.into(),
            subjects::STREAM_STATUS => subjects::broadcast_delivery_status(Channel::Sms),
            subjects::STREAM_BROADCAST => subjects::BROADCAST_COMMANDS.into(),
            subjects::STREAM_INBOUND => subjects::inbound(Channel::Sms),
            subjects::STREAM_CASES => subjects::case_event("C-1"),
            subjects::STREAM_AUDIT => subjects::audit("C-1", "n-1"),
            subjects::STREAM_DLQ => subjects::dlq_message("router"),
            subjects::STREAM_TEMPLATES => subjects::template_version("ack", 2),
            other => panic!("no sample subject for {other}"),
        }
    };
    for s in STREAMS {
        for w in s.writers {
            let id = Identity::new(*w, Role::Service);
            let subject = if s.stream == subjects::STREAM_CASES && *w == "sla" {
                subjects::sla_event("C-1")
            } else {
                sample(s.stream)
            };
            assert!(may_publish(&id, &subject), "{w} → {}", s.stream);
        }
        for r in s.readers {
            if SERVICES.contains(r) {
                let id = Identity::new(*r, Role::Service);
                assert!(
                    may_publish(&id, &format!("$JS.API.CONSUMER.CREATE.{}.d.f", s.stream)),
                    "{r} reads {}",
                    s.stream
                );
            }
        }
    }
}

#[test]
fn the_server_configuration_lists_every_user_with_its_permissions() {
    let users = vec![
        ServerUser::new(Identity::new("router", Role::Service), "UROUTER"),
        ServerUser::new(Identity::new("ops", Role::Operator), "UOPS"),
    ];
    let conf = server_users(&users);
    assert!(conf.starts_with("authorization {"), "{conf}");
    assert!(conf.contains("nkey: \"UROUTER\""), "{conf}");
    assert!(conf.contains("\"herald.v1.delivery.job.*\""), "{conf}");
    assert!(conf.contains("\"_INBOX_ops.>\""), "{conf}");
    assert!(!conf.contains("no_auth_user"), "{conf}");
    assert!(!conf.contains("allow_responses"), "neither answers: {conf}");
}

#[test]
fn the_readme_shows_this_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let table = table_markdown();
    assert!(
        readme.contains(&table),
        "README.md's permission table is out of date; it should read:\n<<<\n{table}>>>"
    );
}

#[test]
fn names_are_safe_as_subject_tokens() {
    assert!(is_identity_name("crm-eu-1"));
    for bad in ["", "Crm", "1crm", "a.b", "a*", "a b", "_x", &"a".repeat(65)] {
        assert!(!is_identity_name(bad), "{bad:?}");
    }
    for s in SERVICES {
        assert!(is_identity_name(s));
    }
}

#[test]
fn only_a_streams_owner_deletes_from_it_and_only_the_dpo_asks_for_an_erasure() {
    let everyone: Vec<Identity> = Identity::services()
        .into_iter()
        .chain(Role::ALL[1..].iter().map(|r| Identity::new("x", *r)))
        .collect();
    for s in STREAMS {
        let delete = format!("$JS.API.STREAM.MSG.DELETE.{}", s.stream);
        let deleters: Vec<&str> = everyone
            .iter()
            .filter(|id| may_publish(id, &delete))
            .map(|id| id.name.as_str())
            .collect();
        let expected: &[&str] = if s.may_name_people() { &[s.owner] } else { &[] };
        assert_eq!(deleters, expected, "{}", s.stream);
    }
    let dpo = Identity::new("dana", Role::Dpo);
    assert!(may_publish(&dpo, "herald.v1.intake.erase.dana"));
    assert!(!may_publish(&dpo, "herald.v1.intake.erase.ops"));
    for id in everyone.iter().filter(|id| id.role != Role::Dpo) {
        assert!(
            !may_publish(id, &subjects::from_caller(subjects::INTAKE_ERASE, &id.name)),
            "{id:?}"
        );
    }
    // Each service's part is asked by intake alone, and heard by it alone.
    for part in subjects::ERASING_SERVICES {
        let subject = subjects::erase_part(part);
        for id in &everyone {
            assert_eq!(may_publish(id, &subject), id.name == "intake", "{id:?}");
            assert_eq!(may_subscribe(id, &subject), id.name == part, "{id:?}");
        }
    }
}
