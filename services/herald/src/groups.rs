//! `herald groups import|show|list|remove`: the recipient groups emergency
//! broadcasts name, managed like the contact directory.

use std::path::PathBuf;

use clap::Subcommand;
use herald_config::Config;
use herald_directory::groups::Groups;

use crate::{Failure, refused};

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// Add or replace the groups in a YAML or TOML file (every member must
    /// be in the contact directory).
    Import { file: PathBuf },
    /// Show one group.
    Show { id: String },
    /// List every group with its size.
    List,
    /// Remove a group (its members stay in the directory).
    Remove { id: String },
}

pub async fn run(cfg: &Config, cmd: GroupsCommand) -> Result<(), Failure> {
    let directory = crate::connect_directory(cfg).await?;
    let groups = Groups::new(directory.redis(), &cfg.redis.prefix);
    match cmd {
        GroupsCommand::Import { file } => {
            let list = herald_directory::groups::parse_file(&file).map_err(|e| Failure {
                code: 3,
                message: e.to_string(),
            })?;
            let unknown = Groups::unknown_members(&directory, &list).await?;
            if !unknown.is_empty() {
                return Err(refused(format!(
                    "{}:\n  {}\n(import the contacts first: herald contacts import <file>)",
                    file.display(),
                    unknown.join("\n  ")
                )));
            }
            groups.put_all(&list).await?;
            println!("imported {} group(s) from {}", list.len(), file.display());
            Ok(())
        }
        GroupsCommand::Show { id } => match groups.get(&id).await? {
            Some(g) => {
                print!("{}", serde_saphyr::to_string(&g)?);
                Ok(())
            }
            None => Err(refused(format!("no group with id {id:?}"))),
        },
        GroupsCommand::List => {
            let ids = groups.ids().await?;
            for (id, g) in ids.iter().zip(groups.get_many(&ids).await?) {
                if let Some(g) = g {
                    println!("{id:<24} {:>5} member(s)  {}", g.members.len(), g.name);
                }
            }
            Ok(())
        }
        GroupsCommand::Remove { id } => {
            if groups.remove(&id).await? {
                println!("removed group {id}");
                Ok(())
            } else {
                Err(refused(format!("no group with id {id:?}")))
            }
        }
    }
}
