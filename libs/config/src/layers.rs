//! How the layers of a configuration are put together before it is read:
//! a file's tables deep-merged over the defaults, then `HERALD_<SECTION>_<KEY>`
//! variables, each read as the type its default has.

use std::collections::BTreeMap;

/// Deep-merges `over` into `base`: tables merge key by key, anything else
/// replaces.
pub(crate) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// `HERALD_DELIVERY_SMTP_URL=…` sets `delivery.smtp_url`. Variables whose
/// second word is not a section (such as `HERALD_CONFIG`) are left alone.
pub(crate) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) {
    let vars: BTreeMap<String, String> = env.into_iter().collect();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("HERALD_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let Some(toml::Value::Table(section_table)) = table.get_mut(section) else {
            continue;
        };
        let value = match section_table.get(key) {
            Some(existing) => coerce(existing, &raw),
            None => infer(&raw),
        };
        match value {
            Ok(v) => {
                section_table.insert(key.to_string(), v);
            }
            Err(why) => problems.push(format!("{name}: {why}")),
        }
    }
}

/// Reads an environment value as the type the default has.
fn coerce(existing: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    use toml::Value as V;
    match existing {
        V::String(_) => Ok(V::String(raw.to_string())),
        V::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(V::Integer)
            .map_err(|_| format!("expected a whole number, got {raw:?}")),
        V::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => Ok(V::Boolean(true)),
            "false" | "0" | "no" => Ok(V::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        V::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(V::Float)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        V::Array(_) => infer(raw).map(|v| match v {
            V::Array(_) => v,
            _ => V::Array(
                raw.split(',')
                    .map(|s| V::String(s.trim().to_string()))
                    .collect(),
            ),
        }),
        _ => infer(raw),
    }
}

/// Reads an environment value whose key has no default (an optional key):
/// a TOML literal if it is one, else a string.
fn infer(raw: &str) -> Result<toml::Value, String> {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => Ok(t.remove("v").unwrap_or(toml::Value::String(raw.into()))),
        Err(_) => Ok(toml::Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Config;
    use crate::tests::env;

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[nats]\nurl = \"nats://127.0.0.1:1\"\n[delivery]\nconcurrency = 8\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("HERALD_NATS_URL", "nats://127.0.0.1:2"),
                ("HERALD_DELIVERY_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("HERALD_INTAKE_IDEMPOTENCY_TTL", "2h"),
                ("HERALD_CONFIG", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:2");
        assert_eq!(c.delivery.concurrency, 8);
        assert_eq!(
            c.delivery.smtp_url.as_ref().map(|u| u.expose_secret()),
            Some("smtp://127.0.0.1:2525")
        );
        assert_eq!(c.intake.idempotency_ttl, Duration::from_secs(7200));
    }

    #[test]
    fn a_variable_is_read_as_the_type_of_its_default() {
        use toml::Value as V;
        assert_eq!(coerce(&V::Integer(1), " 42 "), Ok(V::Integer(42)));
        assert!(coerce(&V::Integer(1), "many").is_err());
        assert_eq!(coerce(&V::Boolean(false), "yes"), Ok(V::Boolean(true)));
        assert_eq!(
            coerce(&V::String("a".into()), "123"),
            Ok(V::String("123".into()))
        );
        assert_eq!(
            coerce(&V::Array(vec![]), "dpo, management"),
            Ok(V::Array(vec![
                V::String("dpo".into()),
                V::String("management".into())
            ]))
        );
        assert_eq!(
            infer("not toml at all"),
            Ok(V::String("not toml at all".into()))
        );
    }

    #[test]
    fn tables_merge_key_by_key() {
        let mut base: toml::Table = "[a]\nx = 1\ny = 2\n".parse().unwrap();
        merge(&mut base, "[a]\ny = 3\n[b]\nz = 4\n".parse().unwrap());
        assert_eq!(base.to_string(), "[a]\nx = 1\ny = 3\n\n[b]\nz = 4\n");
    }
}
