//! Sending through the normal pipeline: a level's alerts to staff, the
//! client's escalation notice, the follow-up survey and its reminder, each
//! a `NotificationRequest` to intake with an idempotency key that makes a
//! repeated step send nothing twice, and a line in the case's trail.

use std::{collections::BTreeMap, time::Duration};

use herald_directory::contacts::{Contact, MemberOf};
use herald_durable::stop::first_stopped;
use herald_proto::cancel_keys::{escalation_family, family_key, follow_up_family};
use herald_proto::{
    Message, subjects,
    v1::{
        AuditStep, CommunicationType, ErrorCode, IntakeReply, Lane, NotificationRequest, Priority,
        Recipient, Rejected, intake_reply,
    },
};
use herald_runtime::audit::Entry;
use tracing::{info, warn};

use crate::{
    ACTION_REMINDER, CLIENT_NOTICE, Escalator, STAFF_ALERT, SURVEY, SURVEY_REMINDER,
    ack::{Kind, Page},
    machine::Escalation,
    policy::Target,
    state::CaseState,
    survey,
};

/// How long to wait for intake to answer a notification request.
const INTAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Escalator {
    /// The contacts a level's targets name, each once. Roles are looked
    /// up in the case's team first, then among staff with no team.
    pub(crate) async fn resolve(
        &self,
        targets: &[Target],
        st: &CaseState,
    ) -> anyhow::Result<Vec<Contact>> {
        let mut out: Vec<Contact> = Vec::new();
        for t in targets {
            let found = match t {
                Target::Responsible if st.staff.is_empty() => Vec::new(),
                Target::Responsible => self.directory.get(&st.staff).await?.into_iter().collect(),
                Target::Contact(id) => self.directory.get(id).await?.into_iter().collect(),
                Target::Role(role) => {
                    let all = self.directory.in_group(MemberOf::Role, role).await?;
                    let in_team: Vec<Contact> = all
                        .iter()
                        .filter(|c| !st.team.is_empty() && c.team.as_deref() == Some(&st.team))
                        .cloned()
                        .collect();
                    if in_team.is_empty() {
                        all.into_iter().filter(|c| c.team.is_none()).collect()
                    } else {
                        in_team
                    }
                }
            };
            for c in found {
                if !out.iter().any(|o| o.id == c.id) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// Notifies one level: each target, and the client on a new level.
    /// Returns the contacts reached.
    pub(crate) async fn notify_level(
        &self,
        case_id: &str,
        st: &CaseState,
        esc: &Escalation,
        level_index: usize,
        round: u32,
        client: bool,
    ) -> anyhow::Result<Vec<String>> {
        let policy = self
            .policies
            .named(&esc.policy)
            .ok_or_else(|| anyhow::anyhow!("no escalation policy {}", esc.policy))?;
        let level = &policy.levels[level_index];
        let key = family_key(&escalation_family(case_id), esc.seq);
        // Stopped already (an acknowledgement stored meanwhile): sending
        // would only be cancelled in delivery.
        if first_stopped(&self.bus, std::slice::from_ref(&key))
            .await?
            .is_some()
        {
            info!(case_id, "escalation already stopped; level not notified");
            return Ok(Vec::new());
        }
        let staff = self.resolve(&level.targets, st).await?;
        let reference = st.reference(case_id);
        let mut notified = Vec::new();
        let mut problems = Vec::new();
        for c in &staff {
            // Each target can acknowledge from the alert itself (`ack.rs`).
            let page = Page {
                case_id: case_id.to_string(),
                seq: esc.seq,
                contact_id: c.id.clone(),
            };
            let mut params = BTreeMap::from([
                ("reference".to_string(), reference.clone()),
                ("level".to_string(), level.title()),
                ("reason".to_string(), trigger_words(&esc.trigger)),
                ("round".to_string(), (round + 1).to_string()),
                (
                    "ack_url".to_string(),
                    self.acks.links.url(Kind::Link, &page),
                ),
            ]);
            if let Some(phone) = &c.phone {
                let now = herald_runtime::clock::millis(self.clock.now());
                match self.acks.code(phone, &page, now).await? {
                    Some(code) => {
                        params.insert("ack_code".into(), code);
                    }
                    None => warn!(
                        case_id,
                        "every acknowledgement code for this number is in use; the SMS carries none"
                    ),
                }
            }
            let req = NotificationRequest {
                idempotency_key: format!(
                    "esc:{case_id}:{}:{level_index}:{round}:{}",
                    esc.seq, c.id
                ),
                communication_type: CommunicationType::EscalationNotice as i32,
                priority: st.priority,
                recipients: vec![Recipient::contact(&c.id)],
                template_id: STAFF_ALERT.into(),
                params,
                case_id: case_id.to_string(),
                requester: "escalation".into(),
                responsible_staff: st.staff.clone(),
                cancel_keys: vec![key.clone()],
                key_press_url: self.acks.links.url(Kind::Key, &page),
                ..Default::default()
            };
            match self.submit(&req).await? {
                Ok(_) => notified.push(c.id.clone()),
                Err(r) => problems.push(format!("{}: {} {}", c.id, r.field, r.message)),
            }
        }
        let mut client_told = String::new();
        if client && !st.client.is_empty() {
            let point = staff.first();
            let language = self
                .directory
                .get(&st.client)
                .await?
                .map(|c| c.language)
                .unwrap_or_else(|| "en".into());
            let mut params = BTreeMap::from([
                ("reference".to_string(), reference.clone()),
                (
                    "contact_name".to_string(),
                    point
                        .map(|p| p.name.clone())
                        .unwrap_or_else(|| format!("our {}", level.title())),
                ),
                (
                    "timeframe".to_string(),
                    survey::timeframe(level.expected_within, &language),
                ),
            ]);
            if let Some(email) = point.and_then(|p| p.email.clone()) {
                params.insert("contact_email".into(), email);
            }
            let req = NotificationRequest {
                idempotency_key: format!("esc:{case_id}:{}:{level_index}:client", esc.seq),
                communication_type: CommunicationType::EscalationNotice as i32,
                priority: st.priority,
                recipients: vec![Recipient::contact(&st.client)],
                template_id: CLIENT_NOTICE.into(),
                params,
                case_id: case_id.to_string(),
                requester: "escalation".into(),
                responsible_staff: st.staff.clone(),
                cancel_keys: vec![key.clone()],
                ..Default::default()
            };
            client_told = match self.submit(&req).await? {
                Ok(_) => format!(
                    "; client {} told: new point of contact {}, expected within {}",
                    st.client,
                    point.map(|p| p.id.as_str()).unwrap_or("(none)"),
                    survey::timeframe(level.expected_within, "en")
                ),
                Err(r) => format!("; client notice refused: {} {}", r.field, r.message),
            };
        }
        let who = if notified.is_empty() {
            "nobody reachable".to_string()
        } else {
            notified.join(", ")
        };
        let mut summary = format!(
            "escalated to {} (level {} of {}){}: notified {who}{client_told}",
            level.title(),
            level_index + 1,
            policy.levels.len(),
            if round > 0 {
                format!(", notice {}", round + 1)
            } else {
                String::new()
            },
        );
        if !problems.is_empty() {
            summary.push_str(&format!("; not notified: {}", problems.join("; ")));
        }
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                responsible_staff: st.staff.clone(),
                record_id: Some(format!("esc-{case_id}-{}-{level_index}-{round}", esc.seq)),
                ..Entry::new(AuditStep::Escalated, summary)
            }
            .attr("escalation", esc.seq)
            .attr("level", level_index + 1)
            .attr("level_name", &level.name)
            .attr("round", round + 1)
            .attr("trigger", &esc.trigger)
            .attr("cancel_key", &key),
        )
        .await?;
        Ok(notified)
    }

    /// The follow-up survey (or its reminder) to the client.
    pub(crate) async fn send_survey(
        &self,
        case_id: &str,
        st: &CaseState,
        seq: u64,
        reminder: bool,
    ) -> anyhow::Result<()> {
        let what = if reminder { "reminder" } else { "survey" };
        let link = survey::link(&self.survey_url, &self.survey_secret, case_id, seq);
        let req = NotificationRequest {
            idempotency_key: format!("fu:{case_id}:{seq}:{what}"),
            communication_type: CommunicationType::FollowUp as i32,
            priority: Priority::Normal as i32,
            recipients: vec![Recipient::contact(&st.client)],
            template_id: if reminder { SURVEY_REMINDER } else { SURVEY }.into(),
            params: BTreeMap::from([
                ("reference".to_string(), st.reference(case_id)),
                ("survey_link".to_string(), link),
            ]),
            case_id: case_id.to_string(),
            requester: "escalation".into(),
            responsible_staff: st.staff.clone(),
            cancel_keys: vec![family_key(&follow_up_family(case_id), seq)],
            ..Default::default()
        };
        let summary = match self.submit(&req).await? {
            Ok(_) if reminder => "follow-up survey reminder sent to the client".to_string(),
            Ok(_) => "follow-up survey sent to the client".to_string(),
            Err(r) => format!("follow-up {what} refused: {} {}", r.field, r.message),
        };
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: st.client.clone(),
                record_id: Some(format!("fu-{case_id}-{seq}-{what}")),
                ..Entry::new(AuditStep::FollowUp, summary)
            }
            .attr("round", seq),
        )
        .await
    }

    /// Reminds an action's owner that it is due (or overdue), and says so
    /// in the case's trail.
    pub(crate) async fn remind_action(
        &self,
        case_id: &str,
        st: &CaseState,
        action: &crate::actions::Action,
        round: u32,
        overdue: bool,
    ) -> anyhow::Result<()> {
        let due = herald_runtime::clock::from_millis(action.due_ms)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string();
        let req = NotificationRequest {
            idempotency_key: format!("act:{case_id}:{}:{round}", action.id),
            communication_type: CommunicationType::FollowUp as i32,
            priority: Priority::Normal as i32,
            recipients: vec![Recipient::contact(&action.owner)],
            template_id: ACTION_REMINDER.into(),
            params: BTreeMap::from([
                ("reference".to_string(), st.reference(case_id)),
                ("action".to_string(), action.description.clone()),
                ("action_id".to_string(), action.id.clone()),
                ("due".to_string(), due),
                ("overdue".to_string(), overdue.to_string()),
            ]),
            case_id: case_id.to_string(),
            requester: "escalation".into(),
            responsible_staff: st.staff.clone(),
            ..Default::default()
        };
        let summary = match self.submit(&req).await? {
            Ok(_) if overdue => format!(
                "action {} overdue: reminder {round} sent to {}",
                action.id, action.owner
            ),
            Ok(_) => format!(
                "action {} due: reminder sent to {}",
                action.id, action.owner
            ),
            Err(r) => format!(
                "reminder of action {} refused: {} {}",
                action.id, r.field, r.message
            ),
        };
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: action.owner.clone(),
                record_id: Some(format!("act-{case_id}-{}-{round}", action.id)),
                ..Entry::new(AuditStep::FollowUp, summary)
            }
            .attr("action_id", &action.id)
            .attr("round", round),
        )
        .await
    }

    /// Sends a request to intake. The outer error is "try again" (intake
    /// unreachable or unavailable); the inner one a refusal that will not
    /// change.
    pub(crate) async fn submit(
        &self,
        req: &NotificationRequest,
    ) -> anyhow::Result<Result<String, Rejected>> {
        let reply = tokio::time::timeout(
            INTAKE_TIMEOUT,
            self.bus.client.request(
                subjects::from_caller(subjects::intake_notify(Lane::Normal), &self.bus.identity),
                req.encode_to_vec().into(),
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("intake did not answer in time"))?
        .map_err(|e| anyhow::anyhow!("intake unreachable: {e}"))?;
        match IntakeReply::decode(reply.payload)?.result {
            Some(intake_reply::Result::Accepted(a)) => Ok(Ok(a.notification_id)),
            Some(intake_reply::Result::Rejected(r)) if r.code == ErrorCode::Unavailable as i32 => {
                anyhow::bail!("intake unavailable: {}", r.message)
            }
            Some(intake_reply::Result::Rejected(r)) => {
                warn!(field = %r.field, code = r.code, "intake refused an escalation notice");
                Ok(Err(r))
            }
            None => anyhow::bail!("intake sent an empty reply"),
        }
    }
}

/// Why the case is escalated, in words for the staff alert.
fn trigger_words(trigger: &str) -> String {
    match trigger.split_once(':') {
        Some(("breach", clock)) => format!("its {clock} time ran out"),
        _ if trigger == "critical" => "it is critical".into(),
        _ => "an escalation was requested".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_content::templates::TemplateStore;
    use herald_proto::v1::Channel;

    #[test]
    fn the_templates_it_sends_render_with_the_parameters_it_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
        let store = TemplateStore::load(&dir).unwrap();
        let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .chain(&[("recipient_name", "Alice Martin"), ("case_id", "C-1")])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let staff = vars(&[
            ("reference", "INQ-7"),
            ("level", "team lead"),
            ("reason", trigger_words("breach:response").as_str()),
            ("round", "2"),
        ]);
        let notice = vars(&[
            ("reference", "INQ-7"),
            ("contact_name", "Kim Lee"),
            ("contact_email", "kim.lee@example.org"),
            ("timeframe", "2 hours"),
        ]);
        let link = survey::link("https://f.example/s", "0123456789abcdef", "C-1", 9);
        let survey = vars(&[("reference", "INQ-7"), ("survey_link", link.as_str())]);
        for (id, v, langs, wants) in [
            (
                STAFF_ALERT,
                &staff,
                &["en"][..],
                &["INQ-7", "team lead", "response time ran out", "notice 2"][..],
            ),
            (
                CLIENT_NOTICE,
                &notice,
                &["en", "fr", "es"][..],
                &["INQ-7", "Kim Lee"][..],
            ),
            (
                SURVEY,
                &survey,
                &["en", "fr", "es"][..],
                &["INQ-7", link.as_str()][..],
            ),
            (
                SURVEY_REMINDER,
                &survey,
                &["en", "fr", "es"][..],
                &["INQ-7", link.as_str()][..],
            ),
        ] {
            for lang in langs {
                let r = store.render(id, 0, lang, Channel::Email, v).unwrap();
                assert_eq!(&r.language, lang, "{id} has {lang}");
                for want in wants {
                    assert!(
                        r.body.contains(want),
                        "{id}/{lang}: {want} not in {}",
                        r.body
                    );
                }
                let sms = store.render(id, 0, lang, Channel::Sms, v).unwrap();
                assert!(sms.body.contains("INQ-7"), "{id}/{lang} sms");
            }
        }
        let en = store
            .render(CLIENT_NOTICE, 0, "en", Channel::Email, &notice)
            .unwrap();
        assert!(en.body.contains("within 2 hours"), "{}", en.body);
        assert!(en.body.contains("(kim.lee@example.org)"), "{}", en.body);
    }
}
