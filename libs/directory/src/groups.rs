//! Recipient groups for emergency broadcasts (fire wardens, the night
//! shift, everyone on call), kept beside the contact directory and managed
//! the same way: imported from YAML (`groups: [...]` or a bare list) or TOML
//! (`[[group]]`), shown, listed and removed with `herald groups`.
//!
//! One JSON value per group at `<directory keyspace>group:<id>`, plus a set of all ids.
//! A group names contact ids; a member removed from the directory later is
//! skipped (and documented) when a broadcast resolves the group.

use std::{collections::HashSet, path::Path};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::{
    contacts::{Directory, DirectoryError},
    records::JsonRecords,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Contact ids.
    pub members: Vec<String>,
}

impl Group {
    /// Every problem with this group on its own, as (field, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !herald_proto::subjects::is_subject_token(&self.id) {
            out.push((
                "id".into(),
                "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)".into(),
            ));
        }
        if self.name.trim().is_empty() {
            out.push(("name".into(), "is empty".into()));
        }
        if self.members.is_empty() {
            out.push((
                "members".into(),
                "is empty: name at least one contact id".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if !herald_proto::subjects::is_subject_token(m) {
                out.push((
                    format!("members[{i}]"),
                    format!("{m:?} is not a contact id"),
                ));
            } else if !seen.insert(m.as_str()) {
                out.push((format!("members[{i}]"), format!("{m} appears twice")));
            }
        }
        out
    }
}

/// Reads groups from a YAML or TOML file and checks every one, reporting all
/// problems found.
pub fn parse_file(path: &Path) -> Result<Vec<Group>, DirectoryError> {
    crate::listfile::read_checked(path, "groups", "group").map_err(DirectoryError::File)
}

impl crate::listfile::Record for Group {
    fn id(&self) -> &str {
        &self.id
    }

    fn problems(&self) -> Vec<(String, String)> {
        Group::problems(self)
    }
}

#[derive(Clone)]
pub struct Groups {
    records: JsonRecords<Group>,
}

impl Groups {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Groups {
        Groups {
            records: JsonRecords::new(
                redis,
                herald_proto::keyspace::DIRECTORY.prefix(prefix),
                "group",
                "groups",
            ),
        }
    }

    /// Members of `groups` the directory does not know, one line each.
    pub async fn unknown_members(
        directory: &Directory,
        groups: &[Group],
    ) -> Result<Vec<String>, DirectoryError> {
        let mut out = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let found = directory.get_many(&g.members).await?;
            for (m, c) in g.members.iter().zip(found) {
                if c.is_none() {
                    out.push(format!(
                        "groups[{i}] ({}): member {m} is not in the contact directory",
                        g.id
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Adds or replaces a group after checking it.
    pub async fn put(&self, group: &Group) -> Result<(), DirectoryError> {
        self.records.put(group).await
    }

    pub async fn put_all(&self, groups: &[Group]) -> Result<(), DirectoryError> {
        for g in groups {
            self.put(g).await?;
        }
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Group>, DirectoryError> {
        self.records.get(id).await
    }

    /// Looks groups up in one round trip; `None` where an id is unknown.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Group>>, DirectoryError> {
        self.records.get_many(ids).await
    }

    pub async fn remove(&self, id: &str) -> Result<bool, DirectoryError> {
        self.records.remove_with(id, |_| {}).await
    }

    /// Every group id, sorted.
    pub async fn ids(&self) -> Result<Vec<String>, DirectoryError> {
        self.records.ids().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_in_a_groups_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.yaml");
        std::fs::write(
            &f,
            "groups:\n- id: wardens\n  name: Fire wardens\n  members: [alice, bob, alice]\n- id: bad.id\n  name: ''\n  members: []\n",
        )
        .unwrap();
        let err = parse_file(&f).unwrap_err().to_string();
        assert!(
            err.contains("groups[0] (wardens): members[2] alice appears twice"),
            "{err}"
        );
        assert!(err.contains("groups[1] (bad.id): id"), "{err}");
        assert!(err.contains("groups[1] (bad.id): name is empty"), "{err}");
        assert!(
            err.contains("groups[1] (bad.id): members is empty"),
            "{err}"
        );
    }

    #[test]
    fn the_example_groups_name_only_example_contacts() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let contacts = crate::contacts::parse_file(&config.join("contacts.example.yaml")).unwrap();
        let ids: HashSet<&str> = contacts.iter().map(|c| c.id.as_str()).collect();
        let groups = parse_file(&config.join("groups.example.yaml")).unwrap();
        assert!(!groups.is_empty());
        for g in &groups {
            for m in &g.members {
                assert!(ids.contains(m.as_str()), "{} names {m}", g.id);
            }
        }
        for role in ["dpo", "management"] {
            assert!(
                contacts.iter().any(|c| c.role.as_deref() == Some(role)),
                "the example contacts have a {role}, for the breach protocol"
            );
        }
    }

    #[test]
    fn yaml_toml_and_bare_lists_load_and_stray_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("g.toml");
        std::fs::write(
            &t,
            "[[group]]\nid = \"night\"\nname = \"Night shift\"\nmembers = [\"kim\"]\n",
        )
        .unwrap();
        assert_eq!(parse_file(&t).unwrap()[0].members, ["kim"]);
        let y = dir.path().join("g.yml");
        std::fs::write(&y, "- id: a\n  name: A\n  members: [x]\n").unwrap();
        assert_eq!(parse_file(&y).unwrap()[0].id, "a");
        let stray = dir.path().join("s.yaml");
        std::fs::write(&stray, "groupz:\n- id: a\n  name: A\n  members: [x]\n").unwrap();
        let err = parse_file(&stray).unwrap_err().to_string();
        assert!(err.contains("groupz"), "{err}");
        let typo = dir.path().join("t.yaml");
        std::fs::write(&typo, "groups:\n- id: a\n  name: A\n  member: [x]\n").unwrap();
        let err = parse_file(&typo).unwrap_err().to_string();
        assert!(err.contains("member"), "{err}");
    }
}
