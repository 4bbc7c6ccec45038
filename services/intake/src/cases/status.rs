//! Whether each case is open or resolved, as intake keeps it, and which
//! events make sense in each: an acknowledgement of a case never opened,
//! or a reopening of one that is open, is refused before it is stored.

use herald_proto::v1::{AnswerOn, CaseEventKind, Channel, ErrorCode, Rejected};
use redis::AsyncCommands;

use super::Cases;
use crate::validate::reject;

/// Where a case stands, as far as events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Unknown,
    Open,
    Resolved,
}

impl Cases {
    fn status_key(&self, case_id: &str) -> String {
        format!("{}case:{case_id}", self.prefix)
    }

    pub(crate) async fn status(&self, case_id: &str) -> redis::RedisResult<Status> {
        let mut r = self.redis.clone();
        let v: Option<String> = r.get(self.status_key(case_id)).await?;
        Ok(match v.as_deref() {
            None => Status::Unknown,
            Some("resolved") => Status::Resolved,
            Some(_) => Status::Open,
        })
    }

    pub(super) async fn set_status(&self, case_id: &str, status: Status) -> redis::RedisResult<()> {
        let value = match status {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Unknown => return Ok(()),
        };
        let mut r = self.redis.clone();
        r.set_ex(self.status_key(case_id), value, self.keep.as_secs().max(1))
            .await
    }
}

/// How long the channel a client last wrote on is remembered.
const ANSWER_TTL_SECS: u64 = 180 * 24 * 3600;

impl Cases {
    fn answer_key(&self, case_id: &str) -> String {
        format!("{}answer:{case_id}", self.prefix)
    }

    /// Remembers that the case's client, `contact_id`, last wrote on
    /// `channel` (SOP 001 §4.2: answer on the channel the client used).
    pub(super) async fn set_answer(
        &self,
        case_id: &str,
        contact_id: &str,
        channel: Channel,
    ) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        r.set_ex(
            self.answer_key(case_id),
            format!("{}\t{contact_id}", channel.name()),
            ANSWER_TTL_SECS.min(self.keep.as_secs()).max(1),
        )
        .await
    }

    /// The channel to answer the case's client on, if they wrote.
    pub(crate) async fn answer_on(&self, case_id: &str) -> redis::RedisResult<Option<AnswerOn>> {
        let mut r = self.redis.clone();
        let v: Option<String> = r.get(self.answer_key(case_id)).await?;
        Ok(v.and_then(|v| {
            let (channel, contact) = v.split_once('\t')?;
            Some(AnswerOn {
                contact_id: contact.to_string(),
                channel: Channel::parse(channel)? as i32,
            })
        }))
    }
}

/// Whether an event fits where the case stands.
pub(super) fn allowed(kind: CaseEventKind, status: Status, case_id: &str) -> Result<(), Rejected> {
    use CaseEventKind as K;
    let problem = match (kind, status) {
        (K::Opened, Status::Unknown) => None,
        (K::Opened, _) => Some(format!(
            "case {case_id} is already open or was resolved; reopen it instead"
        )),
        (_, Status::Unknown) => {
            return Err(reject(
                ErrorCode::NotFound,
                "case_id",
                format!("case {case_id} was never opened; send an opened event first"),
            ));
        }
        (K::Reopened, Status::Open) => Some(format!(
            "case {case_id} is open; only a resolved case can be reopened"
        )),
        (K::Reopened, _)
        | (K::FeedbackReceived, _)
        | (K::InteractionLogged, _)
        | (K::ActionDone, _)
        | (K::FeedbackUpdated, _)
        | (K::MeetingCancelled, _)
        | (K::MeetingAnswered, _) => None,
        (_, Status::Resolved) => Some(format!(
            "case {case_id} is resolved; reopen it before sending {}",
            kind.name()
        )),
        _ => None,
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(reject(ErrorCode::InvalidState, "kind", p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_must_fit_the_case_state() {
        use CaseEventKind as K;
        assert!(allowed(K::Opened, Status::Unknown, "C").is_ok());
        assert_eq!(
            allowed(K::Acknowledged, Status::Unknown, "C")
                .unwrap_err()
                .code,
            ErrorCode::NotFound as i32
        );
        assert_eq!(
            allowed(K::Opened, Status::Open, "C").unwrap_err().code,
            ErrorCode::InvalidState as i32
        );
        assert!(allowed(K::Reopened, Status::Open, "C").is_err());
        assert!(allowed(K::Reopened, Status::Resolved, "C").is_ok());
        assert!(allowed(K::Acknowledged, Status::Resolved, "C").is_err());
        assert!(allowed(K::FeedbackReceived, Status::Resolved, "C").is_ok());
    }
}
