//! `herald`: the operator's and coordinator's command line.
//!
//! Exit codes: 0 done; 1 could not reach Herald or another failure;
//! 2 bad usage; 3 Herald refused the request (the message says which field
//! and why).

mod apikey;
mod approvals;
mod broadcast;
mod case;
mod dlq;
mod erase;
mod groups;
mod report;
mod send;
mod setup;
mod templates;
mod trail;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use herald_config::Config;
use herald_directory::contacts::Contact;
use herald_proto::access::Role;
use herald_proto::v1::{
    ContactList, DirectoryReply, DirectoryRequest, directory_reply, directory_request::Op,
};
use herald_runtime::bus::Bus;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "herald", version, about = "Send notifications and inspect Herald", long_about = None)]
struct Cli {
    /// Configuration file (TOML); HERALD_* variables override it.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server, e.g. nats://127.0.0.1:4222.
    #[arg(long, global = true, env = "HERALD_NATS_URL")]
    nats_url: Option<String>,
    /// The identity to connect as (its key is `<nats.credentials_dir>/<name>.nk`);
    /// by default each command uses the one named after the role it needs:
    /// publisher, operator, coordinator, directory, replay, provision,
    /// approver or editor.
    #[arg(long, global = true, env = "HERALD_NATS_IDENTITY", value_name = "NAME")]
    identity: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a notification (from flags, or a JSON/YAML file).
    Send(Box<send::SendArgs>),
    /// Print the audit trail of a notification or a case, in order.
    Trail(trail::TrailArgs),
    /// Manage the contact directory.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Template versions: list, propose, diff, preview, approve, reject
    /// (SOP 004: a new version is a draft until an approver approves it).
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Stop every notification carrying a cancel key that is not yet sent.
    Cancel {
        key: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Inspect and replay jobs that could not be delivered.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// First contacts held for an approver's decision (SOP 004).
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// A data breach's containment (SOP 003 §8).
    #[command(subcommand)]
    Breach(BreachCommand),
    /// Manage the recipient groups emergency broadcasts name.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Emergency broadcasts: start, update, cancel, follow (coordinators).
    #[command(subcommand)]
    Broadcast(broadcast::BroadcastCommand),
    /// Report case events (open, ack, respond, resolve, escalate, ...) and
    /// show a case's clocks and escalation.
    #[command(subcommand)]
    Case(case::CaseCommand),
    /// A client's feedback as its department moves it on (the client is
    /// told), and where it stands.
    #[command(subcommand)]
    Feedback(case::feedback::FeedbackCommand),
    /// Reports to clients (SOP 002 §5): a status update or progress report
    /// now, a case's incident report by email and phone, and a client's
    /// agreed schedule.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Meetings about a case: schedule, reschedule, cancel, list
    /// (attendees are invited with a calendar file and reminded).
    #[command(subcommand)]
    Meeting(case::meeting::MeetingCommand),
    /// Make this deployment's identities (NATS keys, Redis passwords) and
    /// the server configurations that admit only them.
    Setup(setup::SetupArgs),
    /// Declare Herald's JetStream streams (as the provisioning identity).
    Provision,
    /// Make API keys for systems calling intake over gRPC.
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCommand),
}

#[derive(Subcommand)]
enum ContactsCommand {
    /// Add or replace the contacts in a YAML or TOML file.
    Import { file: PathBuf },
    /// Show one contact.
    Show { id: String },
    /// List every contact id.
    List,
    /// Remove a contact.
    Remove { id: String },
    /// Erase a person from everything Herald keeps: their directory record,
    /// their messages in every stream, their keys in Redis (SOP 003 §6.5),
    /// as the Data Protection Officer (the `dpo` identity). The trail keeps
    /// that an erasure happened, by whom and what it removed, never who.
    /// Safe to repeat.
    Erase {
        id: String,
        /// The member of staff the erasure is done for.
        #[arg(long)]
        by: String,
        /// Why, for the audit trail (without naming the person).
        #[arg(long)]
        reason: Option<String>,
    },
    /// A client's consent to share their matter with a third party.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Record that a staff member verified this person's identity (SOP 000
    /// §4): only then does sensitive content reach them. A later change of
    /// their email or phone clears it.
    Verify {
        id: String,
        /// The staff member who checked, by contact id.
        #[arg(long)]
        by: String,
        /// How the identity was checked, e.g. "passport seen at the desk".
        #[arg(long)]
        method: String,
    },
}

#[derive(Subcommand)]
enum BreachCommand {
    /// Release the breach (its id, `breach-ntf_…`): sensitive content held
    /// for the contacts it affected goes out again. Who was informed of
    /// the breach, and when: `herald broadcast status <id> --recipients`.
    Release {
        id: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConsentCommand {
    /// Record that `client` agreed their matter may be shared with a third
    /// party (a contact id, or category:<kind> for every one of a kind).
    Give {
        client: String,
        #[arg(long, value_name = "CONTACT|category:KIND")]
        with: String,
        /// Where the consent comes from, e.g. "signed form, 2 March".
        #[arg(long)]
        source: String,
    },
    /// Withdraw it: nothing more is sent on it, and what is queued stops.
    Withdraw {
        client: String,
        #[arg(long, value_name = "CONTACT|category:KIND")]
        with: String,
    },
}

/// An error with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

pub fn refused(message: String) -> Failure {
    Failure { code: 3, message }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("herald: {}", f.message.trim_end());
            ExitCode::from(f.code)
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, Failure> {
    let mut cfg = Config::load(cli.config.as_deref(), std::env::vars()).map_err(|e| Failure {
        code: 2,
        message: e.to_string(),
    })?;
    if let Some(u) = &cli.nats_url {
        cfg.nats.url = u.clone();
    }
    if let Some(id) = &cli.identity {
        if !herald_proto::access::is_identity_name(id) {
            return Err(Failure {
                code: 2,
                message: format!(
                    "--identity {id:?}: an identity is lowercase letters, digits and `-`, starting with a letter"
                ),
            });
        }
        cfg.nats.identity = id.clone();
    }
    Ok(cfg)
}

/// The identity a command needing `role` connects as: `nats.identity`
/// when set, else the one named after the role, as `herald setup` makes
/// them.
pub fn identity_for(cfg: &Config, role: Role) -> String {
    if cfg.nats.identity.is_empty() {
        role.name().to_string()
    } else {
        cfg.nats.identity.clone()
    }
}

/// Connects to NATS as the identity for `role`, giving up after a few
/// seconds with a clear message.
pub async fn connect_bus(cfg: &Config, role: Role) -> Result<Bus, Failure> {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        s.cancel();
    });
    let identity = identity_for(cfg, role);
    let bus = Bus::connect(&cfg.nats, &identity, &stop)
        .await
        .map_err(|e| Failure {
            code: 1,
            message: if stop.is_cancelled() {
                format!(
                    "cannot reach NATS at {} (is Herald running? see `make run`)",
                    cfg.nats.url
                )
            } else {
                format!("{e:#}")
            },
        });
    timer.abort();
    bus
}

/// Asks intake's directory desk, which keeps the contacts and groups.
pub async fn ask_directory(cfg: &Config, op: Op) -> Result<directory_reply::Result, Failure> {
    Ok(ask_directory_fully(cfg, op).await?.0)
}

/// [`ask_directory`], with the contacts whose verification the request
/// cleared.
async fn ask_directory_fully(
    cfg: &Config,
    op: Op,
) -> Result<(directory_reply::Result, Vec<String>), Failure> {
    let req = DirectoryRequest {
        op: Some(op),
        requester: send::requester(),
    };
    let reply: DirectoryReply =
        send::ask_intake(cfg, herald_proto::subjects::INTAKE_DIRECTORY, &req).await?;
    match reply.result {
        Some(directory_reply::Result::Rejected(r)) => Err(send::rejected(&r)),
        Some(r) => Ok((r, reply.verification_cleared)),
        None => Err(Failure {
            code: 1,
            message: "intake sent an empty reply".into(),
        }),
    }
}

/// Records per import request, well inside intake's limit and NATS's
/// largest message.
pub const IMPORT_BATCH: usize = 200;

async fn run(cli: Cli) -> Result<(), Failure> {
    let cfg = load_config(&cli)?;
    match cli.command {
        Command::Send(args) => send::run(&cfg, *args).await,
        Command::Trail(args) => trail::run(&cfg, args).await,
        Command::Contacts(c) => contacts(&cfg, c).await,
        Command::Dlq(c) => dlq::run(&cfg, c).await,
        Command::Approvals(c) => approvals::run(&cfg, c).await,
        Command::Groups(c) => groups::run(&cfg, c).await,
        Command::Broadcast(c) => broadcast::run(&cfg, c).await,
        Command::Case(c) => case::run(&cfg, c).await,
        Command::Feedback(c) => case::feedback::run(&cfg, c).await,
        Command::Meeting(c) => case::meeting::run(&cfg, c).await,
        Command::Report(c) => report::run(&cfg, c).await,
        Command::Setup(a) => setup::setup(&cfg, a),
        Command::Provision => setup::provision(&cfg).await,
        Command::Apikey(c) => apikey::run(&cfg, c),
        Command::Cancel { key, reason } => send::cancel(&cfg, key, reason).await,
        Command::Breach(BreachCommand::Release { id, reason }) => {
            send::release_breach(&cfg, id, reason).await
        }
        Command::Templates(c) => templates::run(&cfg, c).await,
    }
}

async fn contacts(cfg: &Config, cmd: ContactsCommand) -> Result<(), Failure> {
    use directory_reply::Result as R;
    match cmd {
        ContactsCommand::Import { file } => {
            let contacts = herald_directory::contacts::parse_file(&file).map_err(|e| Failure {
                code: 3,
                message: e.to_string(),
            })?;
            for part in contacts.chunks(IMPORT_BATCH) {
                let list = ContactList {
                    contacts: part.iter().map(herald_proto::v1::Contact::from).collect(),
                };
                let (_, cleared) = ask_directory_fully(cfg, Op::PutContacts(list)).await?;
                for id in cleared {
                    println!(
                        "{id}: email or phone changed, identity verification cleared \
                         (herald contacts verify {id} --by <staff> --method <how>)"
                    );
                }
            }
            println!(
                "imported {} contact(s) from {}",
                contacts.len(),
                file.display()
            );
            Ok(())
        }
        ContactsCommand::Show { id } => {
            show_contacts(ask_directory(cfg, Op::GetContact(id)).await?)
        }
        ContactsCommand::List => match ask_directory(cfg, Op::ListContacts(true)).await? {
            R::Ids(list) => {
                for id in list.ids {
                    println!("{id}");
                }
                Ok(())
            }
            _ => Err(unexpected()),
        },
        ContactsCommand::Remove { id } => {
            ask_directory(cfg, Op::RemoveContact(id.clone())).await?;
            println!("removed {id}");
            Ok(())
        }
        ContactsCommand::Erase { id, by, reason } => erase::run(cfg, id, by, reason).await,
        ContactsCommand::Consent(c) => {
            use herald_proto::v1::ConsentToShare;
            let op = match c {
                ConsentCommand::Give {
                    client,
                    with,
                    source,
                } => Op::GiveConsent(ConsentToShare {
                    id: client,
                    with,
                    source,
                }),
                ConsentCommand::Withdraw { client, with } => Op::WithdrawConsent(ConsentToShare {
                    id: client,
                    with,
                    source: String::new(),
                }),
            };
            show_contacts(ask_directory(cfg, op).await?)
        }
        ContactsCommand::Verify { id, by, method } => {
            let op = Op::VerifyContact(herald_proto::v1::VerifyContact { id, by, method });
            show_contacts(ask_directory(cfg, op).await?)
        }
    }
}

/// Prints the contacts of a reply as YAML.
fn show_contacts(reply: directory_reply::Result) -> Result<(), Failure> {
    match reply {
        directory_reply::Result::Contacts(list) => {
            for c in list.contacts {
                print!("{}", serde_saphyr::to_string(&Contact::from(c))?);
            }
            Ok(())
        }
        _ => Err(unexpected()),
    }
}

/// Intake answered with something that does not fit the question.
pub fn unexpected() -> Failure {
    Failure {
        code: 1,
        message: "intake answered with something else than was asked".into(),
    }
}

/// The role a request needs.
pub fn role_for(subject: &str) -> herald_proto::access::Role {
    use herald_proto::{access::Role, subjects};
    match subject {
        subjects::INTAKE_DIRECTORY => Role::Directory,
        subjects::INTAKE_BREACH => Role::Dpo,
        subjects::INTAKE_APPROVALS | subjects::INTAKE_TEMPLATE_DECISIONS => Role::Approver,
        subjects::INTAKE_TEMPLATES => Role::Editor,
        subjects::BROADCAST_START
        | subjects::BROADCAST_UPDATE
        | subjects::BROADCAST_CANCEL
        | subjects::BROADCAST_STATUS => Role::Coordinator,
        subjects::SLA_QUERY
        | subjects::ESCALATION_QUERY
        | subjects::ESCALATION_FEEDBACK
        | subjects::INTAKE_TRAIL
        | subjects::INTAKE_REPORTS => Role::Operator,
        _ => Role::Publisher,
    }
}
