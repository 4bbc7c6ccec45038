//! `herald.v1.escalation.query`: a case's escalation state as `herald case
//! show` prints it, read from the stored state.

use herald_proto::{
    Message,
    v1::{CaseQuery, EscalationQueryReply, EscalationView, escalation_query_reply},
};
use herald_runtime::{clock::from_millis, query::lookup};

use crate::{
    Escalator,
    machine::{FollowUp, Status},
};

impl Escalator {
    /// The reply to one query, encoded.
    pub(crate) async fn answer_query(&self, payload: &[u8]) -> Vec<u8> {
        let looked = match CaseQuery::case_of(payload) {
            Ok(id) => {
                lookup("case_id", id, "escalation state", |id| async move {
                    self.view(&id).await
                })
                .await
            }
            Err(r) => Err(r),
        };
        let reply = EscalationQueryReply {
            result: Some(match looked {
                Ok(v) => escalation_query_reply::Result::View(v),
                Err(r) => escalation_query_reply::Result::Rejected(r),
            }),
        };
        reply.encode_to_vec()
    }

    async fn view(&self, case_id: &str) -> anyhow::Result<Option<EscalationView>> {
        let Some(s) = self.store.get(case_id).await? else {
            return Ok(None);
        };
        let st = s.state;
        let ts = |ms: i64| Some(herald_proto::timestamp(from_millis(ms).into()));
        let mut view = EscalationView {
            case_id: case_id.to_string(),
            state: "none".into(),
            follow_up: st.follow_up.name().into(),
            follow_up_at: st.follow_up.next_due().and_then(ts),
            rating: match st.follow_up {
                FollowUp::Answered { rating, .. } => rating,
                _ => 0,
            },
            escalations: st.escalations,
            meetings: st
                .meetings
                .iter()
                .map(|m| herald_proto::v1::MeetingView {
                    meeting_id: m.id.clone(),
                    title: m.title.clone(),
                    organizer: m.organizer.clone(),
                    start: ts(m.start_ms),
                    end: ts(m.end_ms),
                    location: m.location.clone(),
                    video_link: m.video_link.clone(),
                    sequence: m.sequence,
                    cancelled: m.cancelled,
                    attendees: m
                        .attendees
                        .iter()
                        .map(|a| herald_proto::v1::MeetingAttendee {
                            contact_id: a.contact.clone(),
                            answer: a.answer.name().into(),
                            reminded: a.reminded,
                            interpreter: a.interpreter,
                        })
                        .collect(),
                })
                .collect(),
            actions: st
                .actions
                .iter()
                .map(|a| herald_proto::v1::ActionView {
                    action_id: a.id.clone(),
                    description: a.description.clone(),
                    owner: a.owner.clone(),
                    due: ts(a.due_ms),
                    done: a.done,
                    reminded: a.reminded,
                })
                .collect(),
            feedback: st
                .feedback
                .as_ref()
                .map(|f| herald_proto::v1::FeedbackView {
                    category: f.category.clone(),
                    department: f.department.clone(),
                    owners: f.owners.clone(),
                    status: f.status,
                    rating: f.rating,
                    updated_at: ts(f.updated_ms),
                }),
            ..Default::default()
        };
        if let Some(e) = &st.current {
            view.state = match e.status {
                Status::Active => "active",
                Status::Stopped => "stopped",
                Status::Exhausted => "exhausted",
            }
            .into();
            view.policy = e.policy.clone();
            view.trigger = e.trigger.clone();
            view.level = e.level as u32 + 1;
            view.level_name = self.level_of(e).map(|l| l.name.clone()).unwrap_or_default();
            view.round = e.round + 1;
            view.started_at = ts(e.started_ms);
            view.next_at = e.next_ms.and_then(ts);
            view.notified = e.notified.clone();
            view.stopped_at = e.stopped_ms.and_then(ts);
            view.stopped_by = e.stopped_by.clone();
        }
        Ok(Some(view))
    }
}
