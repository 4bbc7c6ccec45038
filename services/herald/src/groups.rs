//! `herald groups import|show|list|remove`: the recipient groups emergency
//! broadcasts name, managed like the contact directory.

use std::path::PathBuf;

use clap::Subcommand;
use herald_config::Config;
use herald_directory::groups::Group;
use herald_proto::v1::{GroupList, directory_reply, directory_request::Op};

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
    use directory_reply::Result as R;
    match cmd {
        GroupsCommand::Import { file } => {
            let list = herald_directory::groups::parse_file(&file).map_err(|e| Failure {
                code: 3,
                message: e.to_string(),
            })?;
            for part in list.chunks(crate::IMPORT_BATCH) {
                let groups = GroupList {
                    groups: part.iter().map(herald_proto::v1::Group::from).collect(),
                };
                crate::ask_directory(cfg, Op::PutGroups(groups))
                    .await
                    .map_err(|f| {
                        if f.code == 3 {
                            refused(format!(
                                "{}: {}\n(import the contacts first: herald contacts import <file>)",
                                file.display(),
                                f.message
                            ))
                        } else {
                            f
                        }
                    })?;
            }
            println!("imported {} group(s) from {}", list.len(), file.display());
            Ok(())
        }
        GroupsCommand::Show { id } => match crate::ask_directory(cfg, Op::GetGroup(id)).await? {
            R::Groups(list) => {
                for g in list.groups {
                    print!("{}", serde_saphyr::to_string(&Group::from(g))?);
                }
                Ok(())
            }
            _ => Err(crate::unexpected()),
        },
        GroupsCommand::List => match crate::ask_directory(cfg, Op::ListGroups(true)).await? {
            R::Groups(list) => {
                for g in list.groups {
                    println!("{:<24} {:>5} member(s)  {}", g.id, g.members.len(), g.name);
                }
                Ok(())
            }
            _ => Err(crate::unexpected()),
        },
        GroupsCommand::Remove { id } => {
            crate::ask_directory(cfg, Op::RemoveGroup(id.clone())).await?;
            println!("removed group {id}");
            Ok(())
        }
    }
}
