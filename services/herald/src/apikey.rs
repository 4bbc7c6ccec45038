//! `herald apikey create --system NAME`: a new API key for a system that
//! calls intake's gRPC API, and the configuration that admits it.
//!
//! The key is printed once and kept nowhere: the configuration holds only
//! its SHA-256 (`[intake] api_keys`), so a leaked configuration file lets
//! nobody in. When the system already has keys in the loaded
//! configuration, the lines printed keep them, so the old key goes on
//! working while the system moves to the new one.

use clap::Subcommand;
use herald_config::{Config, SystemKeys};

use crate::Failure;

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Make a new key for a calling system: the key to give it, and the
    /// lines for the configuration.
    Create {
        /// The calling system, as the audit trail names it (e.g. crm).
        #[arg(long)]
        system: String,
        /// Let the system also read the whole trail by client, staff
        /// member or case (`GET /v1/trail`), as a CRM or records system
        /// exporting interaction records does.
        #[arg(long)]
        read_trail: bool,
    },
}

pub fn run(cfg: &Config, cmd: ApiKeyCommand) -> Result<(), Failure> {
    match cmd {
        ApiKeyCommand::Create { system, read_trail } => create(cfg, &system, read_trail),
    }
}

fn create(cfg: &Config, system: &str, read_trail: bool) -> Result<(), Failure> {
    if !herald_proto::access::is_identity_name(system) {
        return Err(Failure {
            code: 2,
            message: format!(
                "--system {system:?}: a system name is lowercase letters, digits and `-`, starting with a letter (at most 64)"
            ),
        });
    }
    let (key, hash) = herald_directory::credentials::new_secret()
        .map_err(|e| format!("cannot read the operating system's random generator: {e}"))?;
    let (list, earlier) = with_new_key(&cfg.intake.api_keys, system, hash, read_trail);
    let entry = list
        .iter()
        .find(|s| s.system == system)
        .map(inline_table)
        .unwrap_or_default();
    println!("API key for {system} (shown only now; Herald keeps only its hash):");
    println!("  {key}");
    println!(
        "{system} sends it with every gRPC or HTTP call as `authorization: Bearer <key>` (gRPC metadata or HTTP header)."
    );
    println!();
    println!("In the configuration file, under [intake] api_keys:");
    println!("  {entry}");
    println!("or in the environment (the whole list):");
    println!(
        "  HERALD_INTAKE_API_KEYS='[{}]'",
        list.iter().map(inline_table).collect::<Vec<_>>().join(", ")
    );
    if earlier > 0 {
        println!();
        if earlier == 1 {
            println!(
                "{system}'s earlier key stays in the list and goes on working while {system} moves to the new one; then remove its hash."
            );
        } else {
            println!(
                "{system}'s {earlier} earlier keys stay in the list and go on working while {system} moves to the new one; then remove their hashes."
            );
        }
    }
    Ok(())
}

/// The configured systems with `hash` added to `system`'s keys (the
/// system added if it has none; allowed to read the trail if it was or
/// `read_trail` asks), and how many keys it had before.
fn with_new_key(
    configured: &[SystemKeys],
    system: &str,
    hash: String,
    read_trail: bool,
) -> (Vec<SystemKeys>, usize) {
    let mut list = configured.to_vec();
    match list.iter_mut().find(|s| s.system == system) {
        Some(s) => {
            let earlier = s.key_sha256.len();
            s.key_sha256.insert(0, hash);
            s.read_trail |= read_trail;
            (list, earlier)
        }
        None => {
            list.push(SystemKeys {
                system: system.to_string(),
                key_sha256: vec![hash],
                read_trail,
            });
            (list, 0)
        }
    }
}

/// One system as a TOML inline table. Names and hashes hold no character
/// that needs quoting, as the configuration's checks ensure.
fn inline_table(s: &SystemKeys) -> String {
    let hashes: Vec<String> = s.key_sha256.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "{{ system = \"{}\", key_sha256 = [{}]{} }}",
        s.system,
        hashes.join(", "),
        if s.read_trail {
            ", read_trail = true"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(system: &str, hashes: &[&str]) -> SystemKeys {
        SystemKeys {
            system: system.into(),
            key_sha256: hashes.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_key_goes_first_and_the_earlier_ones_stay_until_removed() {
        let configured = [keys("crm", &["old"]), keys("billing", &["b1"])];
        let (list, earlier) = with_new_key(&configured, "crm", "new".into(), false);
        assert_eq!(earlier, 1);
        assert_eq!(
            list,
            [keys("crm", &["new", "old"]), keys("billing", &["b1"])]
        );
        let (list, earlier) = with_new_key(&configured, "erp", "e1".into(), false);
        assert_eq!(earlier, 0);
        assert_eq!(list.last(), Some(&keys("erp", &["e1"])));
        assert_eq!(list.len(), 3);
        // A key that may read the trail makes its system a reader, and a
        // later key without the flag does not take that away.
        let (list, _) = with_new_key(&configured, "crm", "new".into(), true);
        assert!(list[0].read_trail && !list[1].read_trail);
        let (again, _) = with_new_key(&list, "crm", "newer".into(), false);
        assert!(again[0].read_trail);
    }

    #[test]
    fn the_printed_line_is_the_configuration_s_own_form() {
        let mut reader = keys("erp", &[&"c".repeat(64)]);
        reader.read_trail = true;
        let crm = keys("crm", &[&"a".repeat(64), &"b".repeat(64)]);
        for s in [crm, reader] {
            let line = inline_table(&s);
            let parsed: toml::Table = format!("api_keys = [{line}]").parse().unwrap();
            let back: Vec<SystemKeys> = parsed["api_keys"].clone().try_into().unwrap();
            assert_eq!(back, [s]);
        }
    }
}
