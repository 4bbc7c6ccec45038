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
        "yaml" | "yml" | "json" => match serde_yaml::from_str::<Vec<T>>(&text) {
            Ok(list) => Ok(list),
            Err(bare) => match serde_yaml::from_str::<BTreeMap<String, Vec<T>>>(&text) {
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
