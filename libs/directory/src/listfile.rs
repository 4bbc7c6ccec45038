//! Reading a list of records (contacts, groups) from the files operators
//! keep them in: YAML (`<key>: [...]` or a bare list), JSON (the same) or
//! TOML (`[[<toml_key>]]`), with the parser's own message, line included,
//! when a record is malformed.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
};

use serde::de::DeserializeOwned;

/// The records in `path`, or why they cannot be read.
pub(crate) fn read<T: DeserializeOwned>(
    path: &Path,
    key: &str,
    toml_key: &str,
) -> Result<Vec<T>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(&e))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "toml" => {
            let mut file: BTreeMap<String, Vec<T>> = toml::from_str(&text).map_err(|e| at(&e))?;
            only_key(&mut file, toml_key, &format!("[[{toml_key}]] tables")).map_err(|e| at(&e))
        }
        "yaml" | "yml" | "json" => match yaml::<Vec<T>>(&text) {
            Ok(list) => Ok(list),
            Err(bare) => match yaml::<BTreeMap<String, Vec<T>>>(&text) {
                Ok(mut file) => {
                    only_key(&mut file, key, &format!("`{key}:` with a list")).map_err(|e| at(&e))
                }
                // Report the error of the shape the file seems to have.
                Err(wrapped) if text.trim_start().starts_with('-') => {
                    drop(wrapped);
                    Err(at(&bare))
                }
                Err(wrapped) => Err(at(&wrapped)),
            },
        },
        _ => Err(at(&"expected a .yaml, .yml, .json or .toml file")),
    }
}

/// YAML (or JSON, which YAML reads) as `T`; an error is the parser's
/// message with its line and column, without the excerpt of the file the
/// parser would add: the lines around a bad record hold other people's
/// addresses and numbers, and every other problem is one line.
fn yaml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str(text).map_err(|e| e.without_snippet().to_string())
}

/// A record in a list file: its id, and every problem with it as (field,
/// reason).
pub(crate) trait Record {
    fn id(&self) -> &str;
    fn problems(&self) -> Vec<(String, String)>;
}

/// The records in `path`, each checked, with every problem found (and
/// every id given twice) reported together, one line each, named
/// `<key>[<i>] (<id>): <field> <reason>`.
pub(crate) fn read_checked<T: DeserializeOwned + Record>(
    path: &Path,
    key: &str,
    toml_key: &str,
) -> Result<Vec<T>, String> {
    let records: Vec<T> = read(path, key, toml_key)?;
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        for (field, reason) in r.problems() {
            problems.push(format!("{key}[{i}] ({}): {field} {reason}", r.id()));
        }
        if !seen.insert(r.id().to_string()) {
            problems.push(format!("{key}[{i}]: id {} appears twice", r.id()));
        }
    }
    if problems.is_empty() {
        Ok(records)
    } else {
        Err(format!("{}:\n  {}", path.display(), problems.join("\n  ")))
    }
}

fn only_key<T>(
    file: &mut BTreeMap<String, Vec<T>>,
    key: &str,
    expected: &str,
) -> Result<Vec<T>, String> {
    let others: Vec<&String> = file.keys().filter(|k| *k != key).collect();
    if !others.is_empty() {
        return Err(format!(
            "unknown top-level key(s) {others:?}; expected {expected}"
        ));
    }
    Ok(file.remove(key).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        id: String,
        #[serde(default)]
        size: u32,
    }

    fn file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn yaml_under_its_key_a_bare_list_and_json_all_read() {
        let want = vec![
            Item {
                id: "a".into(),
                size: 1,
            },
            Item {
                id: "no".into(),
                size: 0,
            },
        ];
        for (name, text) in [
            ("k.yaml", "items:\n  - id: a\n    size: 1\n  - id: no\n"),
            (
                "b.yml",
                "# a bare list\n- { id: a, size: 1 }\n- id: \"no\"\n",
            ),
            (
                "j.json",
                r#"{"items": [{"id": "a", "size": 1}, {"id": "no"}]}"#,
            ),
            ("l.json", r#"[{"id": "a", "size": 1}, {"id": "no"}]"#),
        ] {
            let (_dir, path) = file(name, text);
            let got: Vec<Item> = read(&path, "items", "item").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_malformed_record_is_reported_with_its_line() {
        for (text, line) in [
            ("items:\n  - id: a\n  - id: b\n    size: many\n", 4),
            ("- id: a\n- id: b\n  colour: red\n", 3),
            ("items:\n  - id: a\n    size: [1\n", 3),
        ] {
            let (_dir, path) = file("x.yaml", text);
            let err = read::<Item>(&path, "items", "item").unwrap_err();
            assert!(err.starts_with(&path.display().to_string()), "{err}");
            assert!(
                err.contains(&format!("line {line}")),
                "line {line} not in: {err}"
            );
        }
    }

    #[test]
    fn a_stray_top_level_key_is_named() {
        let (_dir, path) = file("s.yaml", "itemz:\n  - id: a\n");
        let err = read::<Item>(&path, "items", "item").unwrap_err();
        assert!(err.contains("itemz"), "{err}");
    }
}
