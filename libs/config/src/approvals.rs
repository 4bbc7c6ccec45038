//! The `[approvals]` section: approval before first contact (SOP 004:
//! "staff must receive approval from their supervisor … before contacting
//! a parent"). Each rule names whom it protects (directory roles or
//! recipient groups) and, optionally, for which kinds of communication;
//! a notification that would be the first to such a person about a
//! matter waits until an approver decides, and a wait that runs out is
//! a refusal, never a send.

use std::time::Duration;

use herald_proto::v1::CommunicationType;
use serde::{Deserialize, Serialize};

use crate::{Secret, checks};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApprovalsConfig {
    /// The organisation's rules; none by default (every notification
    /// goes straight through).
    pub rules: Vec<ApprovalRule>,
    /// How long a held first contact waits for a decision before it is
    /// refused.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long an approval lets later messages to the same person about
    /// the same matter through without asking again.
    #[serde(with = "humantime_serde")]
    pub grant_ttl: Duration,
    /// Where the approve and deny links in the approver's message lead:
    /// the public address of intake's HTTP listener (`/v1/approvals/decide`).
    pub public_url: String,
    /// Signs those links (HMAC-SHA256); required once a rule is set. Keep
    /// it in the environment: `HERALD_APPROVALS_SIGNING_KEY`.
    pub signing_key: Option<Secret>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            rules: Vec::new(),
            timeout: Duration::from_secs(48 * 3600),
            grant_ttl: Duration::from_secs(400 * 24 * 3600),
            public_url: "http://127.0.0.1:9101".into(),
            signing_key: None,
        }
    }
}

/// One rule: who needs approval before a first contact, and who approves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Named in the trail and in the approver's message.
    pub name: String,
    /// Directory roles it protects (e.g. parent, guardian).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Recipient groups it protects: their members as they are when a
    /// notification arrives.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The kinds of communication it holds (names as in requests); empty:
    /// every kind. The emergency lane is never held.
    #[serde(default)]
    pub communication_types: Vec<String>,
    /// Contact ids of the approvers.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// A directory role whose holders approve too (in the responsible
    /// staff member's team when there are some there, else all of them).
    #[serde(default)]
    pub approver_role: Option<String>,
}

/// Kinds of communication that must never wait for a person's decision.
const NEVER_HELD: [CommunicationType; 2] =
    [CommunicationType::Emergency, CommunicationType::DataBreach];

impl ApprovalRule {
    /// Whether the rule holds communications of `kind`.
    pub fn covers(&self, kind: CommunicationType) -> bool {
        !NEVER_HELD.contains(&kind)
            && (self.communication_types.is_empty()
                || self
                    .communication_types
                    .iter()
                    .any(|t| CommunicationType::parse(t) == Some(kind)))
    }
}

impl ApprovalsConfig {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        checks::url_scheme(
            "approvals.public_url",
            &self.public_url,
            &["http", "https"],
            problems,
        );
        checks::more_than_zero(
            &[
                ("approvals.timeout", self.timeout),
                ("approvals.grant_ttl", self.grant_ttl),
            ],
            problems,
        );
        match &self.signing_key {
            Some(k) if k.expose_secret().len() < 16 => {
                problems.push("`approvals.signing_key` must be at least 16 characters".into())
            }
            None if !self.rules.is_empty() => problems.push(
                "`approvals.signing_key` is not set: the approve and deny links are signed with \
                 it (set HERALD_APPROVALS_SIGNING_KEY)"
                    .into(),
            ),
            _ => {}
        }
        let mut names = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("approvals.rules[{i}]");
            rule.validate(&at, problems);
            if names.contains(&rule.name) {
                problems.push(format!("{at}.name: {:?} is used twice", rule.name));
            }
            names.push(rule.name.clone());
        }
    }
}

impl ApprovalRule {
    fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if !herald_proto::subjects::is_subject_token(&self.name) {
            problems.push(format!(
                "{at}.name: must be 1-128 letters, digits or - _ : @ + ="
            ));
        }
        if self.roles.is_empty() && self.groups.is_empty() {
            problems.push(format!(
                "{at}: name the roles or groups whose first contact needs approval"
            ));
        }
        if self.approvers.is_empty() && self.approver_role.is_none() {
            problems.push(format!(
                "{at}: name the approvers (contact ids) or an approver_role"
            ));
        }
        for (field, values) in [
            ("roles", &self.roles),
            ("groups", &self.groups),
            ("approvers", &self.approvers),
        ] {
            for v in values {
                if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
                    problems.push(format!(
                        "{at}.{field}: {v:?} is not a directory id (1-128 printable characters)"
                    ));
                }
            }
        }
        for t in &self.communication_types {
            match CommunicationType::parse(t) {
                None | Some(CommunicationType::Unspecified) => problems.push(format!(
                    "{at}.communication_types: {t:?} is not a communication type"
                )),
                Some(kind) if NEVER_HELD.contains(&kind) => problems.push(format!(
                    "{at}.communication_types: {t} is never held for approval: it must reach \
                     people at once"
                )),
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::tests::env;

    fn load(extra: &str) -> Result<Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, extra).unwrap();
        Config::load(Some(&path), env(&[])).map_err(|e| e.problems)
    }

    #[test]
    fn a_rule_needs_whom_it_protects_who_approves_and_a_signing_key() {
        let problems = load(
            "[[approvals.rules]]\nname = \"parents\"\ncommunication_types = [\"emergency\", \"gossip\"]\n",
        )
        .unwrap_err();
        let joined = problems.join("\n");
        for wanted in [
            "approvals.signing_key",
            "approvals.rules[0]: name the roles or groups",
            "approvals.rules[0]: name the approvers",
            "emergency is never held",
            "\"gossip\" is not a communication type",
        ] {
            assert!(joined.contains(wanted), "{wanted} missing from {joined}");
        }
    }

    #[test]
    fn a_complete_rule_loads_and_covers_what_it_names() {
        let cfg = load(
            "[approvals]\nsigning_key = \"0123456789abcdef\"\ntimeout = \"2h\"\n\
             [[approvals.rules]]\nname = \"parents\"\nroles = [\"parent\", \"guardian\"]\n\
             approver_role = \"supervisor\"\ncommunication_types = [\"service_update\"]\n",
        )
        .unwrap();
        let rule = &cfg.approvals.rules[0];
        assert_eq!(cfg.approvals.timeout.as_secs(), 7200);
        use herald_proto::v1::CommunicationType as T;
        assert!(rule.covers(T::ServiceUpdate));
        assert!(!rule.covers(T::Incident));
        let mut every = rule.clone();
        every.communication_types.clear();
        assert!(every.covers(T::Incident));
        assert!(!every.covers(T::Emergency) && !every.covers(T::DataBreach));
    }

    #[test]
    fn two_rules_of_one_name_are_refused() {
        let rule =
            "[[approvals.rules]]\nname = \"p\"\nroles = [\"parent\"]\napprovers = [\"sup\"]\n";
        let problems = load(&format!(
            "[approvals]\nsigning_key = \"0123456789abcdef\"\n{rule}{rule}"
        ))
        .unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("\"p\" is used twice")),
            "{problems:?}"
        );
    }
}
