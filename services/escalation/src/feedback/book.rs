//! Every case's feedback, kept for the departments across cases (SOP 000
//! §5: feedback tracked and followed up). It is kept in
//! `<escalation keyspace>feedback:case:<case>`
//! (JSON: the case, its client and reference, the category, department,
//! rating and status, when it arrived and last moved) and
//! `<escalation keyspace>feedback:received`, the cases scored by when
//! their feedback arrived. Both are written each time the feedback is
//! relayed or moves on (whole values, so a repeat writes the same) and
//! kept for `retention.case_state`, longer than the case's own state.
//! `herald.v1.escalation.feedback` lists them (`herald feedback list`);
//! the trend report counts them.

use std::time::Duration;

use herald_proto::{
    Message,
    v1::{
        ErrorCode, FeedbackEntry, FeedbackList, FeedbackListReply, FeedbackListRequest,
        FeedbackStatus, Rejected, feedback_list_reply,
    },
};
use herald_runtime::clock::{from_millis, millis};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use tracing::error;

use crate::{
    Escalator,
    state::{CaseState, FeedbackItem},
};

/// Entries listed when the request sets no limit, and the most it may ask.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

/// One case's feedback as the book keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub case_id: String,
    pub reference: String,
    pub client: String,
    pub category: String,
    pub department: String,
    pub rating: u32,
    /// `FeedbackStatus`.
    pub status: i32,
    pub received_ms: i64,
    pub updated_ms: i64,
}

impl Kept {
    pub fn of(case_id: &str, st: &CaseState, item: &FeedbackItem) -> Kept {
        Kept {
            case_id: case_id.to_string(),
            reference: st.reference(case_id),
            client: st.client.clone(),
            category: item.category.clone(),
            department: item.department.clone(),
            rating: item.rating,
            status: item.status,
            received_ms: if item.received_ms > 0 {
                item.received_ms
            } else {
                item.updated_ms
            },
            updated_ms: item.updated_ms,
        }
    }

    fn to_wire(&self) -> FeedbackEntry {
        FeedbackEntry {
            case_id: self.case_id.clone(),
            reference: self.reference.clone(),
            client_contact_id: self.client.clone(),
            category: self.category.clone(),
            department: self.department.clone(),
            rating: self.rating,
            status: self.status,
            received_at: Some(herald_proto::timestamp(
                from_millis(self.received_ms).into(),
            )),
            updated_at: Some(herald_proto::timestamp(from_millis(self.updated_ms).into())),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Book {
    redis: ConnectionManager,
    prefix: String,
    keep: Duration,
}

impl Book {
    pub fn new(redis: ConnectionManager, deployment: &str, keep: Duration) -> Book {
        Book {
            redis,
            prefix: herald_proto::keyspace::ESCALATION.prefix(deployment),
            keep,
        }
    }

    fn case_key(&self, case_id: &str) -> String {
        format!("{}feedback:case:{case_id}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}feedback:received", self.prefix)
    }

    /// Writes a case's feedback as it now stands.
    pub async fn put(&self, k: &Kept) -> anyhow::Result<()> {
        let keep = self.keep.as_secs().max(1);
        let oldest = millis(chrono::Utc::now()) - self.keep.as_millis() as i64;
        let mut r = self.redis.clone();
        let _: () = redis::pipe()
            .set_ex(self.case_key(&k.case_id), serde_json::to_string(k)?, keep)
            .ignore()
            .zadd(self.index_key(), &k.case_id, k.received_ms)
            .ignore()
            .zrembyscore(self.index_key(), "-inf", oldest)
            .ignore()
            .expire(self.index_key(), keep as i64)
            .ignore()
            .query_async(&mut r)
            .await?;
        Ok(())
    }

    /// The feedback received in `[from, until)`, oldest first.
    pub async fn received(&self, from: i64, until: i64) -> anyhow::Result<Vec<Kept>> {
        let mut r = self.redis.clone();
        let cases: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.index_key())
            .arg(from)
            .arg(format!("({until}"))
            .query_async(&mut r)
            .await?;
        if cases.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = cases.iter().map(|c| self.case_key(c)).collect();
        let values: Vec<Option<String>> = r.mget(&keys).await?;
        let mut out: Vec<Kept> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        out.sort_by_key(|k| (k.received_ms, k.case_id.clone()));
        Ok(out)
    }
}

/// A list request as checked: the span in ms and the filters.
struct Asked {
    department: String,
    status: i32,
    since: i64,
    until: i64,
    limit: usize,
}

fn check(q: FeedbackListRequest) -> Result<Asked, Rejected> {
    let bad = |field: &str, why: String| Rejected::new(ErrorCode::InvalidArgument, field, why);
    if q.department.len() > 128 || q.department.contains(['\n', '\r']) {
        return Err(bad("department", "is not a department's name".into()));
    }
    if FeedbackStatus::try_from(q.status).is_err() {
        return Err(bad(
            "status",
            format!("{} is not a feedback status", q.status),
        ));
    }
    let ms = |t: &Option<herald_proto::Timestamp>, default: i64| {
        t.as_ref().map_or(default, |t| {
            millis(herald_proto::system_time(Some(t)).into())
        })
    };
    let (since, until) = (ms(&q.since, 0), ms(&q.until, i64::MAX));
    if since > until {
        return Err(bad("until", "is before since".into()));
    }
    if q.limit > MAX_LIMIT {
        return Err(bad("limit", format!("is more than {MAX_LIMIT}")));
    }
    Ok(Asked {
        department: q.department.trim().to_string(),
        status: q.status,
        since,
        until,
        limit: if q.limit == 0 { DEFAULT_LIMIT } else { q.limit } as usize,
    })
}

impl Escalator {
    /// The reply to one `herald.v1.escalation.feedback` request, encoded.
    pub(crate) async fn answer_feedback_list(&self, payload: &[u8]) -> Vec<u8> {
        let result = match FeedbackListRequest::decode(payload) {
            Err(e) => Err(Rejected::new(
                ErrorCode::Undecodable,
                "",
                format!("not a herald.v1.FeedbackListRequest: {e}"),
            )),
            Ok(q) => match check(q) {
                Err(r) => Err(r),
                Ok(a) => self
                    .book
                    .received(a.since, a.until.saturating_add(1))
                    .await
                    .map_err(|e| {
                        error!(error = %e, "feedback unreadable");
                        Rejected::new(
                            ErrorCode::Unavailable,
                            "",
                            "the feedback could not be read just now; ask again",
                        )
                    })
                    .map(|all| {
                        let mut entries: Vec<FeedbackEntry> = all
                            .iter()
                            .filter(|k| {
                                (a.department.is_empty()
                                    || k.department.eq_ignore_ascii_case(&a.department))
                                    && (a.status == 0 || k.status == a.status)
                            })
                            .map(Kept::to_wire)
                            .collect();
                        let truncated = entries.len() > a.limit;
                        entries.truncate(a.limit);
                        FeedbackList { entries, truncated }
                    }),
            },
        };
        FeedbackListReply {
            result: Some(match result {
                Ok(l) => feedback_list_reply::Result::List(l),
                Err(r) => feedback_list_reply::Result::Rejected(r),
            }),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_request_is_checked_field_by_field() {
        let field = |q: FeedbackListRequest| check(q).err().map(|r| r.field);
        assert_eq!(
            field(FeedbackListRequest {
                status: 9,
                ..Default::default()
            })
            .as_deref(),
            Some("status")
        );
        let t = |s| {
            Some(herald_proto::Timestamp {
                seconds: s,
                nanos: 0,
            })
        };
        assert_eq!(
            field(FeedbackListRequest {
                since: t(100),
                until: t(50),
                ..Default::default()
            })
            .as_deref(),
            Some("until")
        );
        assert_eq!(
            field(FeedbackListRequest {
                limit: MAX_LIMIT + 1,
                ..Default::default()
            })
            .as_deref(),
            Some("limit")
        );
        let ok = check(FeedbackListRequest::default()).unwrap();
        assert_eq!((ok.since, ok.limit), (0, 1000));
    }
}
