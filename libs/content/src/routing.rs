//! Routing rules: communication type × priority × confidentiality →
//! channels, limited by the approved-channel allowlist (SOP 000 §3, SOP 003
//! §5) and by what each recipient can and agreed to receive.
//!
//! The rules shipped in `config/routing.toml` follow the SOPs'
//! documentation matrix (SOP 001 §5) and escalation rules (SOP 002 §8.2);
//! they are compiled in and used unless a deployment gives its own file.
//! Intake uses the same rules to refuse a recipient who could receive
//! nothing; the router uses them to choose channels.

use std::path::Path;

use herald_proto::v1::{Channel, CommunicationType, Confidentiality, Priority};
use serde::Deserialize;

/// The rules Herald ships with.
pub const DEFAULT_RULES: &str = include_str!("../../../config/routing.toml");

#[derive(Debug, Clone)]
pub struct RoutingRules {
    pub allowed: Vec<Channel>,
    matrix: Vec<(CommunicationType, Confidentiality)>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    types: Vec<CommunicationType>,
    priorities: Vec<Priority>,
    confidentiality: Vec<Confidentiality>,
    channels: Vec<Choice>,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    Preferred,
    Fixed(Channel),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Send on the first usable channel; the rest are fallbacks.
    #[default]
    First,
    /// Send on every usable channel at once.
    All,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    allowed_channels: Vec<String>,
    #[serde(default)]
    confidentiality: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    rule: Vec<FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    priorities: Vec<String>,
    #[serde(default)]
    confidentiality: Vec<String>,
    channels: Vec<String>,
    #[serde(default)]
    mode: Mode,
}

/// What the rules need to know about a recipient.
pub trait Reachable {
    fn preferred(&self) -> Option<Channel>;
    /// Has an address for the channel and consented to it.
    fn can_receive(&self, channel: Channel) -> bool;
}

impl Reachable for herald_directory::contacts::Contact {
    fn preferred(&self) -> Option<Channel> {
        herald_directory::contacts::Contact::preferred(self)
    }

    fn can_receive(&self, channel: Channel) -> bool {
        self.address(channel).is_some() && self.consent.allows(channel)
    }
}

impl Reachable for herald_proto::v1::InlineRecipient {
    fn preferred(&self) -> Option<Channel> {
        match Channel::try_from(self.preferred_channel) {
            Ok(Channel::Unspecified) | Err(_) => None,
            Ok(c) => Some(c),
        }
    }

    fn can_receive(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => !self.email.is_empty() && self.consent_email,
            Channel::Sms => !self.phone.is_empty() && self.consent_sms,
            Channel::Voice => !self.phone.is_empty() && self.consent_voice,
            Channel::Unspecified => false,
        }
    }
}

/// The channels to send on now, and the ones to fall back to, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub send: Vec<Channel>,
    pub fallbacks: Vec<Channel>,
}

impl RoutingRules {
    /// The shipped rules, or the file given, checked; every problem is
    /// reported.
    pub fn load(path: Option<&Path>) -> Result<RoutingRules, Vec<String>> {
        let (text, origin) = herald_config::built_in_or_file(path, DEFAULT_RULES, "routing rules")?;
        RoutingRules::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<RoutingRules, Vec<String>> {
        let file: File = toml::from_str(text).map_err(|e| vec![format!("{origin}: {e}")])?;
        let mut problems = Vec::new();
        let mut allowed = Vec::new();
        for c in &file.allowed_channels {
            match Channel::parse(c) {
                Some(ch) => allowed.push(ch),
                None => problems.push(format!(
                    "{origin}: allowed_channels: {c:?} is not email, sms or voice"
                )),
            }
        }
        let mut matrix = Vec::new();
        for (t, level) in &file.confidentiality {
            match (CommunicationType::parse(t), Confidentiality::parse(level)) {
                (Some(t), Some(l)) => matrix.push((t, l)),
                (None, _) => problems.push(format!("{origin}: confidentiality: unknown communication type {t:?}")),
                (_, None) => problems.push(format!(
                    "{origin}: confidentiality.{t}: {level:?} is not standard, confidential or sensitive"
                )),
            }
        }
        let mut rules = Vec::new();
        for (i, r) in file.rule.iter().enumerate() {
            let at = format!("{origin}: rule[{i}]");
            let mut rule = Rule {
                types: Vec::new(),
                priorities: Vec::new(),
                confidentiality: Vec::new(),
                channels: Vec::new(),
                mode: r.mode,
            };
            for t in &r.types {
                match CommunicationType::parse(t) {
                    Some(t) => rule.types.push(t),
                    None => problems.push(format!("{at}: unknown communication type {t:?}")),
                }
            }
            for p in &r.priorities {
                match Priority::parse(p) {
                    Some(p) => rule.priorities.push(p),
                    None => problems.push(format!("{at}: unknown priority {p:?}")),
                }
            }
            for c in &r.confidentiality {
                match Confidentiality::parse(c) {
                    Some(c) => rule.confidentiality.push(c),
                    None => problems.push(format!("{at}: unknown confidentiality {c:?}")),
                }
            }
            if r.channels.is_empty() {
                problems.push(format!("{at}: channels is empty"));
            }
            for c in &r.channels {
                if c == "preferred" {
                    rule.channels.push(Choice::Preferred);
                } else {
                    match Channel::parse(c) {
                        Some(ch) if allowed.contains(&ch) => rule.channels.push(Choice::Fixed(ch)),
                        Some(ch) => {
                            problems.push(format!("{at}: {} is not in allowed_channels", ch.name()))
                        }
                        None => problems
                            .push(format!("{at}: {c:?} is not email, sms, voice or preferred")),
                    }
                }
            }
            rules.push(rule);
        }
        if problems.is_empty() {
            Ok(RoutingRules {
                allowed,
                matrix,
                rules,
            })
        } else {
            Err(problems)
        }
    }

    pub fn is_allowed(&self, channel: Channel) -> bool {
        self.allowed.contains(&channel)
    }

    /// The documentation-matrix level for a type (SOP 001 §5), standard when
    /// the rules do not say.
    pub fn default_confidentiality(&self, t: CommunicationType) -> Confidentiality {
        self.matrix
            .iter()
            .find(|(ty, _)| *ty == t)
            .map(|(_, c)| *c)
            .unwrap_or(Confidentiality::Standard)
    }

    /// Chooses channels for one recipient. `overrides`, when not empty,
    /// replaces the rules (every usable channel named is sent on).
    pub fn decide(
        &self,
        t: CommunicationType,
        p: Priority,
        c: Confidentiality,
        overrides: &[Channel],
        who: &impl Reachable,
    ) -> Decision {
        let usable = |ch: Channel| self.is_allowed(ch) && who.can_receive(ch);
        let (candidates, mode): (Vec<Channel>, Mode) = if !overrides.is_empty() {
            (overrides.to_vec(), Mode::All)
        } else {
            let rule = self.rules.iter().find(|r| {
                (r.types.is_empty() || r.types.contains(&t))
                    && (r.priorities.is_empty() || r.priorities.contains(&p))
                    && (r.confidentiality.is_empty() || r.confidentiality.contains(&c))
            });
            let choices = rule
                .map(|r| r.channels.clone())
                .unwrap_or_else(|| vec![Choice::Preferred, Choice::Fixed(Channel::Email)]);
            let mut out = Vec::new();
            for choice in choices {
                let ch = match choice {
                    Choice::Preferred => match who.preferred() {
                        Some(ch) => ch,
                        None => continue,
                    },
                    Choice::Fixed(ch) => ch,
                };
                if !out.contains(&ch) {
                    out.push(ch);
                }
            }
            (out, rule.map(|r| r.mode).unwrap_or_default())
        };
        let usable_candidates: Vec<Channel> =
            candidates.iter().copied().filter(|c| usable(*c)).collect();
        let send = match mode {
            Mode::All => usable_candidates.clone(),
            Mode::First => usable_candidates.iter().take(1).copied().collect(),
        };
        if send.is_empty() {
            return Decision::default();
        }
        // Fallbacks: the remaining candidates, then any other channel the
        // person can receive, preferred first. A channel override is exact
        // and has none.
        let mut fallbacks = Vec::new();
        if overrides.is_empty() {
            let rest = usable_candidates
                .iter()
                .copied()
                .chain(who.preferred())
                .chain(Channel::ALL);
            for ch in rest {
                if usable(ch) && !send.contains(&ch) && !fallbacks.contains(&ch) {
                    fallbacks.push(ch);
                }
            }
        }
        Decision { send, fallbacks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Who {
        preferred: Option<Channel>,
        can: Vec<Channel>,
    }

    impl Reachable for Who {
        fn preferred(&self) -> Option<Channel> {
            self.preferred
        }
        fn can_receive(&self, c: Channel) -> bool {
            self.can.contains(&c)
        }
    }

    fn shipped() -> RoutingRules {
        RoutingRules::load(None).expect("shipped rules parse")
    }

    #[test]
    fn shipped_rules_follow_the_documentation_matrix() {
        let r = shipped();
        use CommunicationType as T;
        assert_eq!(
            r.default_confidentiality(T::InitialInquiry),
            Confidentiality::Standard
        );
        assert_eq!(
            r.default_confidentiality(T::ServiceUpdate),
            Confidentiality::Confidential
        );
        assert_eq!(
            r.default_confidentiality(T::FeedbackComplaint),
            Confidentiality::Sensitive
        );
        assert_eq!(
            r.default_confidentiality(T::Resolution),
            Confidentiality::Standard
        );
    }

    #[test]
    fn an_inquiry_answers_on_the_preferred_channel_and_falls_back_to_email() {
        let who = Who {
            preferred: Some(Channel::Sms),
            can: vec![Channel::Email, Channel::Sms],
        };
        let d = shipped().decide(
            CommunicationType::InitialInquiry,
            Priority::Normal,
            Confidentiality::Standard,
            &[],
            &who,
        );
        assert_eq!(d.send, vec![Channel::Sms]);
        assert_eq!(d.fallbacks, vec![Channel::Email]);
    }

    #[test]
    fn a_critical_incident_goes_by_email_and_phone_at_once() {
        let who = Who {
            preferred: Some(Channel::Sms),
            can: vec![Channel::Email, Channel::Sms, Channel::Voice],
        };
        let d = shipped().decide(
            CommunicationType::Incident,
            Priority::Critical,
            Confidentiality::Confidential,
            &[],
            &who,
        );
        assert!(
            d.send.contains(&Channel::Email) && d.send.contains(&Channel::Voice),
            "{d:?}"
        );
    }

    #[test]
    fn nothing_is_chosen_for_someone_who_consented_to_nothing_usable() {
        let who = Who {
            preferred: Some(Channel::Voice),
            can: vec![],
        };
        let d = shipped().decide(
            CommunicationType::InitialInquiry,
            Priority::Normal,
            Confidentiality::Standard,
            &[],
            &who,
        );
        assert!(d.send.is_empty());
    }

    #[test]
    fn the_allowlist_wins_over_overrides_and_rules() {
        let r = RoutingRules::parse(
            "allowed_channels = [\"email\"]\n[[rule]]\nchannels = [\"preferred\", \"email\"]\n",
            "test",
        )
        .unwrap();
        let who = Who {
            preferred: Some(Channel::Sms),
            can: vec![Channel::Email, Channel::Sms],
        };
        let d = r.decide(
            CommunicationType::InitialInquiry,
            Priority::Normal,
            Confidentiality::Standard,
            &[Channel::Sms],
            &who,
        );
        assert!(d.send.is_empty());
        let d = r.decide(
            CommunicationType::InitialInquiry,
            Priority::Normal,
            Confidentiality::Standard,
            &[],
            &who,
        );
        assert_eq!(d.send, vec![Channel::Email]);
        assert!(d.fallbacks.is_empty());
    }

    #[test]
    fn bad_rules_are_all_reported() {
        let err = RoutingRules::parse(
            "allowed_channels = [\"email\", \"fax\"]\n[[rule]]\ntypes = [\"gossip\"]\nchannels = [\"sms\"]\n",
            "f",
        )
        .unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
    }
}
