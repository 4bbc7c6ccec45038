//! The configuration loader, fed what an operator might write by mistake:
//! any text as the file, and any value for the keys Herald knows, in the
//! file or in `HERALD_<SECTION>_<KEY>` variables. Loading never panics; a
//! configuration that is refused says what is wrong, naming every key it
//! blames, and never repeats a secret's value.
//!
//! The case count is low by default so `cargo test` stays quick;
//! `PROPTEST_CASES` raises it (`make fuzz`).

use std::{path::PathBuf, sync::LazyLock};

use herald_config::Config;
use proptest::{
    collection::{btree_map, vec},
    prelude::*,
    sample::select,
};
use toml::Value;

/// `PROPTEST_CASES` when set, else a count small enough for every run.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

/// Keys without a default, which the default table leaves out.
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("broadcast", "link_secret"),
    ("content", "routing_file"),
    ("delivery", "smtp_url"),
    ("delivery", "smtp_ca_file"),
    ("delivery", "sms_url"),
    ("delivery", "voice_url"),
    ("delivery", "provider_account"),
    ("delivery", "provider_token"),
    ("delivery", "provider_signing_key"),
    ("delivery", "status_callback_base"),
    ("escalation", "policy_file"),
    ("escalation", "survey_secret"),
    ("sla", "policy_file"),
    ("sla", "calendars_file"),
];

/// Keys whose value must never be shown back.
const SECRET_KEYS: &[&str] = &[
    "redis.url",
    "delivery.smtp_url",
    "delivery.provider_token",
    "delivery.provider_signing_key",
    "broadcast.link_secret",
    "escalation.survey_secret",
];

/// Every key Herald knows, with its default (none for an optional key).
static KEYS: LazyLock<Vec<(String, String, Option<Value>)>> = LazyLock::new(|| {
    let defaults = match toml::Table::try_from(Config::default()) {
        Ok(t) => t,
        Err(e) => panic!("the defaults do not serialise: {e}"),
    };
    let mut keys = Vec::new();
    for (section, table) in &defaults {
        let Value::Table(table) = table else { continue };
        for (key, value) in table {
            keys.push((section.clone(), key.clone(), Some(value.clone())));
        }
    }
    for (section, key) in OPTIONAL_KEYS {
        if !keys.iter().any(|(s, k, _)| s == section && k == key) {
            keys.push((section.to_string(), key.to_string(), None));
        }
    }
    keys
});

/// A scratch file holding `text`, gone with its directory.
fn write_file(text: &str) -> Result<(tempfile::TempDir, PathBuf), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok((dir, path))
}

/// Durations the way they are written, from nothing to far too long.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[0-9]{1,3}",
            select(vec!["ns", "ms", "s", "m", "h", "d", "days", "y", ""])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        ("[1-9][0-9]{15,20}", select(vec!["s", "ms", "m", "h"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        Just("0s".to_string()),
        Just("-5s".to_string()),
    ]
}

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_text(),
        select(vec![
            "127.0.0.1:0",
            "localhost:80",
            "[::1]:9999",
            "nats://127.0.0.1:4222",
            "redis://:pw-that-is-secret@redis:6379",
            "https://herald.example.org",
            "ftp://x",
            "plain",
            "json",
            "dpo",
        ])
        .prop_map(String::from),
        "[ -~]{0,30}",
        any::<String>(),
    ]
}

fn integer_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        -2i64..30,
        select(vec![
            i64::from(u32::MAX) - 1,
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ]),
        any::<i64>(),
    ]
}

/// Any TOML value, of any shape.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        integer_value().prop_map(Value::Integer),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-1.0),
            any::<f64>()
        ]
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        string_value().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A value for a key: mostly of the type its default has, near the edges
/// of what that type holds, and sometimes anything at all.
fn value_for(default: Option<&Value>) -> BoxedStrategy<Value> {
    let typed = match default {
        Some(Value::Integer(_)) => integer_value().prop_map(Value::Integer).boxed(),
        Some(Value::Boolean(_)) => any::<bool>().prop_map(Value::Boolean).boxed(),
        Some(Value::Float(_)) => prop_oneof![
            Just(f64::NAN),
            Just(f64::NEG_INFINITY),
            -2.0..1e6f64,
            any::<f64>()
        ]
        .prop_map(Value::Float)
        .boxed(),
        Some(Value::Array(_)) => prop_oneof![
            vec(string_value().prop_map(Value::String), 0..4).prop_map(Value::Array),
            vec(
                btree_map(
                    select(vec!["id", "token_sha256", "other"]).prop_map(String::from),
                    string_value().prop_map(Value::String),
                    0..3
                )
                .prop_map(|m| Value::Table(m.into_iter().collect())),
                0..3
            )
            .prop_map(Value::Array),
        ]
        .boxed(),
        _ => string_value().prop_map(Value::String).boxed(),
    };
    prop_oneof![4 => typed, 1 => any_value()].boxed()
}

/// A few known keys, each with a value.
fn settings() -> impl Strategy<Value = Vec<(String, String, Value)>> {
    let one = select(KEYS.clone()).prop_flat_map(|(section, key, default)| {
        (Just(section), Just(key), value_for(default.as_ref()))
    });
    vec(one, 1..5).prop_map(|mut v| {
        // One value per key; the last one written wins in a file anyway.
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|(s, k, _)| seen.insert(format!("{s}.{k}")));
        v
    })
}

/// The file that sets `settings`.
fn file_text(settings: &[(String, String, Value)]) -> Result<String, TestCaseError> {
    let mut root = toml::Table::new();
    for (section, key, value) in settings {
        let entry = root
            .entry(section.clone())
            .or_insert_with(|| Value::Table(toml::Table::new()));
        if let Value::Table(t) = entry {
            t.insert(key.clone(), value.clone());
        }
    }
    toml::to_string(&root).map_err(|e| TestCaseError::fail(e.to_string()))
}

/// What a value looks like written out, to look for it in a report.
fn shown(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        _ => return None,
    };
    (text.len() >= 8).then_some(text)
}

/// A refused configuration blames only the keys that were set, and shows
/// no secret that was set.
fn report_names_the_keys(
    loaded: Result<Config, herald_config::ConfigError>,
    settings: &[(String, String, Value)],
    names: &[String],
) -> Result<(), TestCaseError> {
    let Err(err) = loaded else { return Ok(()) };
    prop_assert!(!err.problems.is_empty(), "refused without a reason");
    for problem in &err.problems {
        prop_assert!(
            names.iter().any(|n| problem.contains(n.as_str())),
            "{problem:?} names none of {names:?}"
        );
    }
    let text = err.to_string();
    for (section, key, value) in settings {
        let name = format!("{section}.{key}");
        // (Unless another value set holds the same text, and is quoted.)
        if SECRET_KEYS.contains(&name.as_str())
            && let Some(secret) = shown(value)
            && !settings.iter().any(|(s, k, v)| {
                (s, k) != (section, key) && shown(v).is_some_and(|t| t.contains(&secret))
            })
        {
            prop_assert!(!text.contains(&secret), "{name}'s value shown in {text}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn any_text_as_the_config_file_gets_a_report_never_a_panic(
        text in prop_oneof![
            any::<String>(),
            "[\\[\\]a-z_ =\"'.0-9\n{},#-]{0,200}",
            vec(
                (
                    select(KEYS.iter().map(|(s, _, _)| s.clone()).collect::<Vec<_>>()),
                    "[a-z_]{1,20}",
                    "[ -~]{0,20}",
                ),
                0..6,
            )
            .prop_map(|lines| lines
                .iter()
                .map(|(s, k, v)| format!("[{s}]\n{k} = {v}\n"))
                .collect::<String>()),
        ],
    ) {
        let (_dir, path) = write_file(&text)?;
        if let Err(err) = Config::load(Some(&path), Vec::new()) {
            prop_assert!(!err.problems.is_empty());
            prop_assert!(err.problems.iter().all(|p| !p.trim().is_empty()));
        }
    }

    #[test]
    fn a_bad_value_for_a_known_key_in_the_file_is_reported_naming_the_key(
        settings in settings(),
    ) {
        let (_dir, path) = write_file(&file_text(&settings)?)?;
        let loaded = Config::load(Some(&path), Vec::new());
        let names: Vec<String> =
            settings.iter().map(|(s, k, _)| format!("{s}.{k}")).collect();
        report_names_the_keys(loaded, &settings, &names)?;
    }

    #[test]
    fn a_bad_value_for_a_known_key_in_the_environment_is_reported_naming_the_key(
        settings in settings(),
        raw in vec(prop_oneof![string_value(), any::<i64>().prop_map(|i| i.to_string())], 5),
    ) {
        // As an operator sets them: each value as the text of a variable.
        let vars: Vec<(String, String)> = settings
            .iter()
            .zip(raw.iter().cycle())
            .map(|((s, k, _), raw)| {
                (format!("HERALD_{}_{}", s.to_uppercase(), k.to_uppercase()), raw.clone())
            })
            .collect();
        let as_values: Vec<(String, String, Value)> = settings
            .iter()
            .zip(raw.iter().cycle())
            .map(|((s, k, _), raw)| (s.clone(), k.clone(), Value::String(raw.clone())))
            .collect();
        let mut names: Vec<String> =
            settings.iter().map(|(s, k, _)| format!("{s}.{k}")).collect();
        names.extend(vars.iter().map(|(v, _)| v.clone()));
        let loaded = Config::load(None, vars);
        report_names_the_keys(loaded, &as_values, &names)?;
    }
}
