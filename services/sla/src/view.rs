//! `herald.v1.sla.query`: a case's clocks as `herald case show` prints
//! them, with the time left and the deadline worked out at the moment of
//! asking.

use herald_proto::{
    Message,
    v1::{CaseQuery, ClockState, ClockView, SlaQueryReply, SlaView, sla_query_reply},
};
use herald_runtime::{clock::from_millis, query::lookup};

use crate::Sla;

impl Sla {
    /// The reply to one query, encoded.
    pub(crate) async fn answer_query(&self, payload: &[u8]) -> Vec<u8> {
        let looked = match CaseQuery::case_of(payload) {
            Ok(id) => {
                lookup(
                    "case_id",
                    id,
                    "clocks",
                    |id| async move { self.view(&id).await },
                )
                .await
            }
            Err(r) => Err(r),
        };
        let reply = SlaQueryReply {
            result: Some(match looked {
                Ok(v) => sla_query_reply::Result::View(v),
                Err(r) => sla_query_reply::Result::Rejected(r),
            }),
        };
        reply.encode_to_vec()
    }

    /// The view of a case's clocks for `herald case show`.
    async fn view(&self, case_id: &str) -> anyhow::Result<Option<SlaView>> {
        let Some(s) = self.store.get(case_id).await? else {
            return Ok(None);
        };
        let c = &s.clocks;
        let cal = self.calendars.for_team(&c.team);
        let now = self.clock.now();
        Ok(Some(SlaView {
            case_id: case_id.to_string(),
            team: c.team.clone(),
            calendar: cal.name.clone(),
            time_zone: cal.tz.name().to_string(),
            channel: c.channel,
            priority: c.priority,
            clocks: c
                .clocks
                .iter()
                .map(|k| {
                    let deadline = k.projected_deadline(now, cal);
                    ClockView {
                        clock: k.kind,
                        state: k.state,
                        policy: k.policy.clone(),
                        target: self
                            .policies
                            .written(&k.policy, k.kind(), k.target_s, k.business),
                        started_at: Some(herald_proto::timestamp(
                            from_millis(k.started_s * 1000).into(),
                        )),
                        deadline: (deadline != i64::MAX)
                            .then(|| herald_proto::timestamp(from_millis(deadline).into())),
                        seconds_left: k.seconds_left(now, cal),
                        business_hours: k.business,
                        warned: k.warned,
                        breached: k.breached,
                        stopped_at: (k.state() == ClockState::Stopped).then(|| {
                            herald_proto::timestamp(from_millis(k.stopped_s * 1000).into())
                        }),
                    }
                })
                .collect(),
        }))
    }
}
