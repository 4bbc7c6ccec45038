//! Confirmation links and key-press addresses, as anyone can type them:
//! whatever the query, reading it never panics and confirms nothing unless
//! its signature is the one Herald made for that kind, broadcast and
//! recipient. A link Herald made always reads back as what it names, and
//! only as that.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use herald_broadcast::link::{Kind, Signed, Signer};
use proptest::{collection::vec, option, prelude::*, sample::select};

/// `PROPTEST_CASES` when set, else a count small enough for every run.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

const SECRET: &str = "a-link-secret-of-some-length";

fn signer() -> Signer {
    Signer::new(SECRET, "https://herald.example.org/bc/")
}

fn kind() -> impl Strategy<Value = Kind> {
    select(vec![Kind::Confirm, Kind::Key])
}

fn broadcast_id() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9_:@+=-]{1,20}", 1 => any::<String>()]
}

/// A query as a stranger might write one: known names with any values,
/// the right signature for something else, or anything at all.
fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        select(vec!["b", "r", "s", "job"]).prop_map(String::from),
        any::<String>(),
    ];
    let value = prop_oneof![
        "[0-9]{1,4}",
        "[+]?[0-9]{1,3}",
        "[A-Za-z0-9_-]{22}",
        (kind(), broadcast_id(), 0..50usize).prop_map(|(k, b, r)| signer().signature(k, &b, r)),
        any::<String>(),
    ];
    prop_oneof![
        vec((name, value), 0..6)
            .prop_map(|pairs| serde_urlencoded::to_string(pairs).unwrap_or_default()),
        any::<String>(),
        "[a-z=&%0-9+]{0,40}",
    ]
}

/// The query's first value for `name`, as the service reads it.
fn first(query: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn a_stranger_s_confirmation_link_never_confirms_and_never_panics(
        kind in kind(),
        query in query(),
    ) {
        let s = signer();
        let read = s.read(kind, &query);
        if let Some(signed) = read {
            // Believed only with the signature for exactly what it names.
            let sig = first(&query, "s").unwrap_or_default();
            prop_assert_eq!(
                sig.trim(),
                s.signature(kind, &signed.broadcast_id, signed.recipient),
                "{:?} confirmed {:?}",
                query,
                signed
            );
            prop_assert_eq!(first(&query, "b"), Some(signed.broadcast_id.clone()));
            let r = first(&query, "r").unwrap_or_default();
            prop_assert_eq!(r.parse::<usize>().ok(), Some(signed.recipient));
        }
    }

    #[test]
    fn a_link_herald_made_reads_back_as_what_it_names(
        kind in kind(),
        broadcast_id in broadcast_id(),
        recipient in any::<usize>(),
        job in option::of("[a-z0-9-]{1,12}"),
    ) {
        let s = signer();
        let extra: Vec<(&str, &str)> = job.iter().map(|j| ("job", j.as_str())).collect();
        let url = s.url(kind, &broadcast_id, recipient, &extra);
        let prefix = format!("https://herald.example.org/bc{}?", kind.path());
        let query = url.strip_prefix(&prefix).ok_or_else(|| {
            TestCaseError::fail(format!("{url} is not under {prefix}"))
        })?;
        prop_assert_eq!(
            s.read(kind, query),
            Some(Signed {
                broadcast_id: broadcast_id.clone(),
                recipient,
                job: job.clone().unwrap_or_default(),
            })
        );
        // Not for the other kind, nor under another secret.
        let other = if kind == Kind::Confirm { Kind::Key } else { Kind::Confirm };
        prop_assert_eq!(s.read(other, query), None);
        let stranger = Signer::new("some-other-secret-entirely", "https://herald.example.org/bc/");
        prop_assert_eq!(stranger.read(kind, query), None);
    }

    #[test]
    fn a_link_for_one_recipient_or_broadcast_confirms_no_other(
        kind in kind(),
        broadcast_id in broadcast_id(),
        other_broadcast in broadcast_id(),
        recipient in any::<usize>(),
        other_recipient in any::<usize>(),
    ) {
        let s = signer();
        let sig = s.signature(kind, &broadcast_id, recipient);
        prop_assert!(s.verify(kind, &broadcast_id, recipient, &sig));
        if other_recipient != recipient {
            prop_assert!(!s.verify(kind, &broadcast_id, other_recipient, &sig));
        }
        if other_broadcast != broadcast_id {
            prop_assert!(!s.verify(kind, &other_broadcast, recipient, &sig));
        }
        // The same signature pasted into an address for someone else.
        let r = other_recipient.to_string();
        let forged = serde_urlencoded::to_string([
            ("b", other_broadcast.as_str()),
            ("r", r.as_str()),
            ("s", sig.as_str()),
        ])?;
        let named_the_same = other_broadcast == broadcast_id && other_recipient == recipient;
        prop_assert_eq!(s.read(kind, &forged).is_some(), named_the_same);
    }
}
