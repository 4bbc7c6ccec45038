//! Operators' trail queries (`herald.v1.intake.trail`): a client's, a staff
//! member's or a case's records over a span, of some kinds. Positions come
//! from the index (or, for a case alone, its own trail); the writes at
//! those positions are fetched a few at a time and every record in them is
//! checked against the whole query, so a write that also documents someone
//! else yields only the records asked for.

use std::collections::BTreeSet;

use futures::StreamExt;
use herald_proto::{
    Message, subjects,
    v1::{
        AuditBatch, AuditRecord, AuditStep, ErrorCode, Rejected, TrailQuery, TrailRecords,
        TrailReply, trail_reply,
    },
};
use herald_runtime::bus::Bus;
use tracing::error;

use super::{TrailIndex, at_ms, cases_key, contact_key, staff_key};
use crate::{unavailable, validate::reject};

/// Records returned when the query sets no limit, and the most it may ask.
const DEFAULT_LIMIT: u32 = 10_000;
const MAX_LIMIT: u32 = 100_000;
/// Audit writes fetched at once.
const FETCHES: usize = 32;

/// A query as checked: the span in ms, the kinds.
struct Asked {
    client: String,
    staff: String,
    case: String,
    since: i64,
    until: i64,
    types: Vec<String>,
    limit: usize,
}

fn check(q: TrailQuery) -> Result<Asked, Rejected> {
    let bad = |field: &str, why: &str| reject(ErrorCode::InvalidArgument, field, why);
    for (field, v) in [
        ("client_contact_id", &q.client_contact_id),
        ("responsible_staff", &q.responsible_staff),
        ("case_id", &q.case_id),
    ] {
        if !v.is_empty() && !subjects::is_subject_token(v) {
            return Err(bad(field, "is not an id (letters, digits, - _ : @ + =)"));
        }
    }
    if q.client_contact_id.is_empty() && q.responsible_staff.is_empty() && q.case_id.is_empty() {
        return Err(bad(
            "client_contact_id",
            "name a client, a responsible staff member or a case (or several)",
        ));
    }
    let ms = |t: &Option<herald_proto::Timestamp>, default: i64| {
        t.as_ref().map_or(default, |t| {
            herald_runtime::clock::millis(herald_proto::system_time(Some(t)).into())
        })
    };
    let (since, until) = (ms(&q.since, 0), ms(&q.until, i64::MAX));
    if since > until {
        return Err(bad("until", "is before since"));
    }
    if q.limit > MAX_LIMIT {
        return Err(bad("limit", &format!("is more than {MAX_LIMIT}")));
    }
    if let Some(t) = q
        .types
        .iter()
        .find(|t| t.is_empty() || t.len() > 64 || !subjects::is_subject_token(t))
    {
        return Err(bad("types", &format!("{t:?} is not a kind")));
    }
    Ok(Asked {
        client: q.client_contact_id,
        staff: q.responsible_staff,
        case: q.case_id,
        since,
        until,
        types: q.types,
        limit: if q.limit == 0 { DEFAULT_LIMIT } else { q.limit } as usize,
    })
}

/// Whether `r` is of one of `types` (empty: any): its step, its
/// communication type or the kind of interaction it documents.
fn of_kind(r: &AuditRecord, types: &[String]) -> bool {
    types.is_empty()
        || types.iter().any(|t| {
            AuditStep::name_of(r.step) == t
                || ["communication_type", "interaction", "kind"]
                    .iter()
                    .any(|a| r.attributes.get(*a) == Some(t))
        })
}

impl TrailIndex {
    /// Answers one query from `bus`'s audit stream.
    pub async fn answer(&self, bus: &Bus, payload: &[u8]) -> TrailReply {
        let result = match TrailQuery::decode(payload) {
            Err(e) => Err(reject(
                ErrorCode::Undecodable,
                "",
                format!("not a herald.v1.TrailQuery: {e}"),
            )),
            Ok(q) => self.query(bus, q).await,
        };
        TrailReply {
            result: Some(match result {
                Ok(records) => trail_reply::Result::Records(records),
                Err(r) => trail_reply::Result::Rejected(r),
            }),
        }
    }

    /// The records `q` asks for, or why it is refused (each refusal naming
    /// the query's field).
    pub async fn query(&self, bus: &Bus, q: TrailQuery) -> Result<TrailRecords, Rejected> {
        let asked = check(q)?;
        self.find(bus, &asked).await.map_err(|e| {
            error!(error = %e, "trail query failed");
            unavailable()
        })
    }

    async fn find(&self, bus: &Bus, q: &Asked) -> anyhow::Result<TrailRecords> {
        let mut candidates: Vec<AuditRecord> = Vec::new();
        // The cases whose whole trail belongs: the one asked for, and the
        // client's own.
        let mut cases: BTreeSet<String> = BTreeSet::new();
        if !q.case.is_empty() {
            cases.insert(q.case.clone());
        }
        if !q.client.is_empty() {
            cases.extend(self.cases_of(&q.client, q.until).await?);
        }
        if !q.client.is_empty() || !q.staff.is_empty() {
            let seqs = self.positions(q).await?;
            candidates.extend(self.fetch(bus, seqs).await?);
        }
        for (_, t) in read_cases(bus, cases.iter().cloned()).await? {
            candidates.extend(t);
        }
        // A notification's own records (accepted, routed) name no one: they
        // are the client's when the notification reached them.
        let theirs: BTreeSet<String> = candidates
            .iter()
            .filter(|r| r.contact_id == q.client && !r.notification_id.is_empty())
            .map(|r| r.notification_id.clone())
            .collect();
        candidates.retain(|r| {
            let at = at_ms(r);
            at >= q.since
                && at <= q.until
                && (q.client.is_empty()
                    || r.contact_id == q.client
                    || (r.contact_id.is_empty() && theirs.contains(&r.notification_id))
                    || (!r.case_id.is_empty() && cases.contains(&r.case_id)))
                && (q.staff.is_empty() || r.responsible_staff == q.staff)
                && (q.case.is_empty() || r.case_id == q.case)
                && of_kind(r, &q.types)
        });
        candidates.sort_by_key(at_ms);
        candidates.dedup_by(|a, b| a.record_id == b.record_id);
        let truncated = candidates.len() > q.limit;
        candidates.truncate(q.limit);
        Ok(TrailRecords {
            records: candidates,
            truncated,
        })
    }

    /// The whole trails of `client`'s cases opened before `until`, each
    /// with its case id.
    pub(crate) async fn client_trails(
        &self,
        bus: &Bus,
        client: &str,
        until: i64,
    ) -> anyhow::Result<Vec<(String, Vec<AuditRecord>)>> {
        read_cases(bus, self.cases_of(client, until).await?).await
    }

    /// The cases `client` is the client of, opened before `until`.
    pub(crate) async fn cases_of(&self, client: &str, until: i64) -> anyhow::Result<Vec<String>> {
        let mut redis = self.redis.clone();
        // Not the cases the stream no longer keeps, which the index may
        // still name until it is next trimmed.
        let oldest =
            herald_runtime::clock::millis(chrono::Utc::now()) - self.retention.as_millis() as i64;
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(cases_key(&self.prefix, client))
            .arg(oldest)
            .arg(if until == i64::MAX {
                "+inf".to_string()
            } else {
                until.to_string()
            })
            .query_async(&mut redis)
            .await?)
    }

    /// The stream positions the index has for the query's people in its
    /// span (both, when a client and a staff member are named).
    async fn positions(&self, q: &Asked) -> anyhow::Result<Vec<u64>> {
        let mut redis = self.redis.clone();
        let mut sets: Vec<BTreeSet<u64>> = Vec::new();
        for key in [
            (!q.client.is_empty()).then(|| contact_key(&self.prefix, &q.client)),
            (!q.staff.is_empty()).then(|| staff_key(&self.prefix, &q.staff)),
        ]
        .into_iter()
        .flatten()
        {
            let seqs: Vec<u64> = redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(q.since)
                .arg(if q.until == i64::MAX {
                    "+inf".to_string()
                } else {
                    q.until.to_string()
                })
                .query_async(&mut redis)
                .await?;
            sets.push(seqs.into_iter().collect());
        }
        let mut all = sets.pop().unwrap_or_default();
        for s in sets {
            all.retain(|seq| s.contains(seq));
        }
        Ok(all.into_iter().collect())
    }

    /// The records of the audit writes at `seqs`; writes gone from the
    /// stream (aged out, erased) are skipped.
    async fn fetch(&self, bus: &Bus, seqs: Vec<u64>) -> anyhow::Result<Vec<AuditRecord>> {
        let stream = bus.js.get_stream(subjects::STREAM_AUDIT).await?;
        let fetched: Vec<anyhow::Result<Vec<AuditRecord>>> = futures::stream::iter(seqs)
            .map(|seq| {
                let stream = stream.clone();
                async move {
                    match stream.get_raw_message(seq).await {
                        Ok(m) => Ok(AuditBatch::decode(m.payload)
                            .map(|b| b.records)
                            .unwrap_or_default()),
                        Err(e)
                            if e.kind()
                                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                        {
                            Ok(Vec::new())
                        }
                        Err(e) => Err(anyhow::anyhow!("reading audit write {seq}: {e}")),
                    }
                }
            })
            .buffered(FETCHES)
            .collect()
            .await;
        let mut out = Vec::new();
        for f in fetched {
            out.extend(f?);
        }
        Ok(out)
    }
}

/// The whole trail of each of `cases`, a few read at once, in order.
async fn read_cases(
    bus: &Bus,
    cases: impl IntoIterator<Item = String>,
) -> anyhow::Result<Vec<(String, Vec<AuditRecord>)>> {
    let read: Vec<(String, anyhow::Result<Vec<AuditRecord>>)> = futures::stream::iter(cases)
        .map(|c| async move {
            let t = herald_runtime::audit::read_trail(bus, &subjects::audit_of_case(&c)).await;
            (c, t)
        })
        .buffered(4)
        .collect()
        .await;
    read.into_iter().map(|(c, t)| Ok((c, t?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_someone_and_a_sane_span() {
        let field = |q: TrailQuery| check(q).err().map(|r| r.field);
        assert_eq!(
            field(TrailQuery::default()).as_deref(),
            Some("client_contact_id")
        );
        let t = |s| {
            Some(herald_proto::Timestamp {
                seconds: s,
                nanos: 0,
            })
        };
        let q = TrailQuery {
            client_contact_id: "alice".into(),
            since: t(100),
            until: t(50),
            ..Default::default()
        };
        assert_eq!(field(q).as_deref(), Some("until"));
        let q = TrailQuery {
            responsible_staff: "has space".into(),
            ..Default::default()
        };
        assert_eq!(field(q).as_deref(), Some("responsible_staff"));
        let q = TrailQuery {
            case_id: "CASE-1".into(),
            types: vec!["sent".into(), "".into()],
            ..Default::default()
        };
        assert_eq!(field(q).as_deref(), Some("types"));
        let ok = check(TrailQuery {
            case_id: "CASE-1".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((ok.since, ok.until, ok.limit), (0, i64::MAX, 10_000));
    }

    #[test]
    fn a_kind_is_a_step_a_communication_type_or_an_interaction() {
        let r = AuditRecord {
            step: AuditStep::CaseEvent as i32,
            attributes: [("interaction".to_string(), "call".to_string())].into(),
            ..Default::default()
        };
        assert!(of_kind(&r, &[]));
        assert!(of_kind(&r, &["case_event".into()]));
        assert!(of_kind(&r, &["call".into()]));
        assert!(!of_kind(&r, &["sent".into(), "meeting".into()]));
    }
}
