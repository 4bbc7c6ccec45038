//! Feedback followed through (SOP 000 §5, SOP 001 §4.3): a client's
//! feedback is relayed to the department its category names (`[feedback]`
//! in the escalation policies), with the client's words, and the client is
//! told it arrived and, later, each change of its status (in progress,
//! resolved) on their usual channel. Every step is in the case's trail.
//! Each case's feedback is also kept across cases ([`book`]), for
//! `herald feedback list` and the periodic trend to the departments'
//! heads ([`trend`]).

pub(crate) mod book;
pub(crate) mod trend;

use std::collections::BTreeMap;

use herald_proto::v1::{
    AuditStep, CommunicationType, Confidentiality, FeedbackStatus, NotificationRequest, Priority,
    Recipient,
};
use herald_runtime::audit::Entry;

use crate::{Escalator, state::CaseState, state::FeedbackItem};

/// The department's copy of the feedback.
pub const FEEDBACK_RELAYED: &str = "feedback_relayed";
/// The client's news of their feedback.
pub const FEEDBACK_STATUS: &str = "feedback_status";

impl Escalator {
    /// Sends the feedback to its department's owners and tells the client
    /// it arrived; returns who in the department was told.
    pub(crate) async fn relay_feedback(
        &self,
        case_id: &str,
        st: &CaseState,
        item: &FeedbackItem,
        comment: &str,
    ) -> anyhow::Result<Vec<String>> {
        let owners = match self.policies.department_for(&item.category) {
            Some(d) => self.resolve(&d.owners, st).await?,
            None => Vec::new(),
        };
        let mut told = Vec::new();
        for owner in &owners {
            let req = NotificationRequest {
                idempotency_key: format!("fb:{case_id}:{}:relay:{}", item.seq, owner.id),
                communication_type: CommunicationType::FeedbackComplaint as i32,
                priority: Priority::Normal as i32,
                // The client's own words.
                confidentiality: Confidentiality::Confidential as i32,
                recipients: vec![Recipient::contact(&owner.id)],
                template_id: FEEDBACK_RELAYED.into(),
                params: BTreeMap::from([
                    ("reference".to_string(), st.reference(case_id)),
                    ("department".to_string(), item.department.clone()),
                    ("category".to_string(), category_words(&item.category)),
                    ("rating".to_string(), item.rating.to_string()),
                    ("comment".to_string(), comment.to_string()),
                ]),
                case_id: case_id.to_string(),
                requester: "escalation".into(),
                responsible_staff: st.staff.clone(),
                ..Default::default()
            };
            if self.submit(&req).await?.is_ok() {
                told.push(owner.id.clone());
            }
        }
        let client = self.tell_client(case_id, st, item, "", item.seq).await?;
        let department = if item.department.is_empty() {
            "no department (none is configured for it)".to_string()
        } else {
            item.department.clone()
        };
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: st.client.clone(),
                record_id: Some(format!("fb-{case_id}-{}-relayed", item.seq)),
                ..Entry::new(
                    AuditStep::FollowUp,
                    format!(
                        "feedback ({}) relayed to {department}: {}; {client}",
                        category_words(&item.category),
                        if told.is_empty() {
                            "nobody there could be told".to_string()
                        } else {
                            told.join(", ")
                        }
                    ),
                )
            }
            .attr("department", &item.department)
            .attr("category", &item.category),
        )
        .await?;
        Ok(told)
    }

    /// Tells the client their feedback's new status, and says so in the
    /// trail.
    pub(crate) async fn feedback_moved(
        &self,
        case_id: &str,
        st: &CaseState,
        item: &FeedbackItem,
        note: &str,
        seq: u64,
    ) -> anyhow::Result<()> {
        let client = self.tell_client(case_id, st, item, note, seq).await?;
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: st.client.clone(),
                record_id: Some(format!("fb-{case_id}-{seq}-status")),
                ..Entry::new(
                    AuditStep::FollowUp,
                    format!(
                        "feedback {}: {client}",
                        FeedbackStatus::name_of(item.status).replace('_', " ")
                    ),
                )
            }
            .attr("status", FeedbackStatus::name_of(item.status)),
        )
        .await
    }

    /// The client's message about their feedback; what the trail says of it.
    async fn tell_client(
        &self,
        case_id: &str,
        st: &CaseState,
        item: &FeedbackItem,
        note: &str,
        seq: u64,
    ) -> anyhow::Result<String> {
        if st.client.is_empty() {
            return Ok("the case names no client to tell".into());
        }
        let status = FeedbackStatus::name_of(item.status);
        let req = NotificationRequest {
            idempotency_key: format!("fb:{case_id}:{seq}:{status}"),
            communication_type: CommunicationType::FollowUp as i32,
            priority: Priority::Normal as i32,
            recipients: vec![Recipient::contact(&st.client)],
            template_id: FEEDBACK_STATUS.into(),
            params: BTreeMap::from([
                ("reference".to_string(), st.reference(case_id)),
                ("status".to_string(), status.to_string()),
                ("department".to_string(), item.department.clone()),
                ("note".to_string(), note.to_string()),
            ]),
            case_id: case_id.to_string(),
            requester: "escalation".into(),
            responsible_staff: st.staff.clone(),
            ..Default::default()
        };
        Ok(match self.submit(&req).await? {
            Ok(_) => "the client was told".to_string(),
            Err(r) => format!("telling the client refused: {} {}", r.field, r.message),
        })
    }
}

fn category_words(category: &str) -> String {
    if category.is_empty() {
        "no category".into()
    } else {
        category.replace('_', " ")
    }
}
