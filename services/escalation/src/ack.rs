//! Acknowledging from the page itself. Every staff alert of an escalation
//! carries three ways to say "I have it":
//!
//! * a signed link in the email, `<public_url>/v1/escalation/ack?case=&esc=&c=&s=`,
//!   which opens a page with one button (a bare `GET` acknowledges
//!   nothing: mail scanners open links before the person does);
//! * a short code in the SMS: replying `ACK 4821` (or just `ACK` when only
//!   one page to that number is waiting) acknowledges. The code belongs to
//!   the number it was sent to: `<escalation keyspace>ack:<number>`, a hash
//!   of code → page, each entry living `escalation.ack_code_ttl`;
//! * a key press on the call: the call asks for a key and the voice
//!   provider posts it to `<public_url>/v1/escalation/key?…`, which must
//!   carry the provider's signature as status callbacks do.
//!
//! Links are signed with `escalation.survey_secret` over what they name
//! (the purpose, the case, the escalation and the person), so nobody can
//! acknowledge for someone else or for another case by editing one, and a
//! survey token acknowledges nothing.
//!
//! An acknowledgement is a case event like any other: `acknowledged`, sent
//! to intake under the escalation service's name with the person as its
//! actor and how they did it as its reason. Intake stops the escalation's
//! queued messages before it answers, exactly as for `herald case ack`,
//! and this service stops the escalation when it reads the event. A page
//! whose escalation is over (acknowledged by someone else, the case
//! resolved, a later escalation begun) acknowledges nothing and says so.

use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use herald_content::token;
use herald_proto::{
    Message, subjects,
    v1::{CaseEvent, CaseEventKind, CaseReply, ErrorCode, case_reply},
};
use redis::{Script, aio::ConnectionManager};
use tracing::{error, warn};

use crate::{Escalator, machine::Status};

/// How long to wait for intake to take an acknowledgement.
const INTAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Candidate codes tried for one page before giving up (each collision
/// with another live page to the same number moves to the next).
const CANDIDATES: u32 = 32;

/// One page: a person alerted in one escalation of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub case_id: String,
    /// The escalation (`Escalation::seq`).
    pub seq: u64,
    pub contact_id: String,
}

impl Page {
    fn encode(&self) -> String {
        format!("{}\t{}\t{}", self.case_id, self.seq, self.contact_id)
    }

    fn decode(s: &str) -> Option<Page> {
        let mut parts = s.splitn(3, '\t');
        Some(Page {
            case_id: parts.next()?.to_string(),
            seq: parts.next()?.parse().ok()?,
            contact_id: parts.next()?.to_string(),
        })
    }
}

/// What an address is for; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The link in the email.
    Link,
    /// The voice provider's key-press callback.
    Key,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Link => "/v1/escalation/ack",
            Kind::Key => "/v1/escalation/key",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::Link => "ack-link",
            Kind::Key => "ack-key",
        }
    }
}

/// Puts a page's code in the number's hash: the first candidate that is
/// free, expired, or already this page's. Entries are `<expiry ms>|<page>`.
const MINT: &str = r#"
local now = tonumber(ARGV[2])
for i = 5, #ARGV do
  local code = ARGV[i]
  local cur = redis.call('HGET', KEYS[1], code)
  local free = true
  if cur then
    local bar = string.find(cur, '|', 1, true)
    local expires = tonumber(string.sub(cur, 1, bar - 1))
    free = string.sub(cur, bar + 1) == ARGV[1] or expires <= now
  end
  if free then
    redis.call('HSET', KEYS[1], code, ARGV[3] .. '|' .. ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    return code
  end
end
return false
"#;

/// Signed acknowledgement addresses, and the candidates for a page's code.
#[derive(Clone)]
pub struct Links {
    secret: Vec<u8>,
    base: String,
}

impl Links {
    pub fn new(secret: &str, public_url: &str) -> Links {
        Links {
            secret: secret.as_bytes().to_vec(),
            base: public_url.trim_end_matches('/').to_string(),
        }
    }

    fn signed(kind: Kind, page: &Page) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            kind.tag(),
            page.case_id,
            page.seq,
            page.contact_id
        )
    }

    /// The public address of a page's link or key press.
    pub fn url(&self, kind: Kind, page: &Page) -> String {
        let sig = token::sign(&self.secret, &Self::signed(kind, page));
        let seq = page.seq.to_string();
        herald_content::url::with_query(
            &format!("{}{}", self.base, kind.path()),
            &[
                ("case", &page.case_id),
                ("esc", &seq),
                ("c", &page.contact_id),
                ("s", &sig),
            ],
        )
    }

    /// The page an address's query names, if its signature holds for `kind`.
    pub fn read(&self, kind: Kind, query: &str) -> Option<Page> {
        let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let field = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let page = Page {
            case_id: field("case")?.to_string(),
            seq: field("esc")?.parse().ok()?,
            contact_id: field("c")?.to_string(),
        };
        token::verify(&self.secret, &Self::signed(kind, &page), field("s")?).then_some(page)
    }

    /// The public address the provider was given for a request that
    /// arrived at `path_and_query`: what its signature covers.
    fn public(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Four digits, from the page and the attempt, so a level repeated
    /// after a crash gets the code it had.
    fn candidate(&self, page: &Page, i: u32) -> String {
        let t = token::sign(&self.secret, &format!("code\n{}\n{i}", page.encode()));
        let n = t
            .bytes()
            .fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(b as u32));
        format!("{:04}", n % 10_000)
    }
}

/// The codes pages carry, per number.
#[derive(Clone)]
pub struct Acks {
    redis: ConnectionManager,
    prefix: String,
    pub links: Links,
    ttl: Duration,
    mint: Script,
}

impl Acks {
    pub fn new(redis: ConnectionManager, prefix: &str, links: Links, ttl: Duration) -> Acks {
        Acks {
            redis,
            prefix: herald_proto::keyspace::ESCALATION.prefix(prefix),
            links,
            ttl,
            mint: Script::new(MINT),
        }
    }

    fn number_key(&self, phone: &str) -> String {
        let number: String = phone.chars().filter(|c| !c.is_whitespace()).collect();
        format!("{}ack:{number}", self.prefix)
    }

    /// The code `page` carries to `phone`, the same every time it is asked
    /// for while it lives; `None` if every candidate is taken by other
    /// live pages to that number.
    pub async fn code(
        &self,
        phone: &str,
        page: &Page,
        now_ms: i64,
    ) -> redis::RedisResult<Option<String>> {
        let expires = now_ms + self.ttl.as_millis() as i64;
        let mut inv = self.mint.key(self.number_key(phone));
        inv.arg(page.encode())
            .arg(now_ms)
            .arg(expires)
            .arg(self.ttl.as_secs().max(1));
        for i in 0..CANDIDATES {
            inv.arg(self.links.candidate(page, i));
        }
        let mut r = self.redis.clone();
        inv.invoke_async(&mut r).await
    }

    /// The live pages to `phone`, by code.
    pub async fn pages(&self, phone: &str, now_ms: i64) -> redis::RedisResult<Vec<(String, Page)>> {
        let mut r = self.redis.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.number_key(phone))
            .query_async(&mut r)
            .await?;
        let mut out: Vec<(String, Page)> = all
            .into_iter()
            .filter_map(|(code, v)| {
                let (expires, page) = v.split_once('|')?;
                (expires.parse::<i64>().ok()? > now_ms).then_some((code, Page::decode(page)?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// What became of an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acked {
    /// Recorded now: the escalation stops.
    Done { reference: String },
    /// This person had already acknowledged it.
    Already { reference: String },
    /// The escalation is over: acknowledged by someone else, the case
    /// resolved or a later escalation begun. Nothing recorded.
    Over { reference: String, why: String },
    /// No such case here.
    Unknown,
}

impl Escalator {
    /// Acknowledges the case of `page` for its person, if the escalation
    /// the page belongs to still waits for it. An error is "try again".
    pub(crate) async fn acknowledge(&self, page: &Page, how: &str) -> anyhow::Result<Acked> {
        let Some(stored) = self.store.get(&page.case_id).await? else {
            return Ok(Acked::Unknown);
        };
        let st = stored.state;
        let reference = st.reference(&page.case_id);
        let over = |why: String| Acked::Over {
            reference: reference.clone(),
            why,
        };
        if st.resolved {
            return Ok(over("the case is resolved".into()));
        }
        match &st.current {
            Some(esc) if esc.seq == page.seq => match esc.status {
                Status::Active | Status::Exhausted => {}
                Status::Stopped
                    if esc
                        .stopped_by
                        .ends_with(&format!("contact:{}", page.contact_id)) =>
                {
                    return Ok(Acked::Already { reference });
                }
                Status::Stopped => {
                    return Ok(over(if esc.stopped_by.is_empty() {
                        "it was already acknowledged".into()
                    } else {
                        format!("it was already answered ({})", esc.stopped_by)
                    }));
                }
            },
            _ => {
                return Ok(over(
                    "a later escalation of the case has begun, or none is under way".into(),
                ));
            }
        }
        let event = CaseEvent {
            event_id: format!("ack-{}-{}", page.seq, page.contact_id),
            case_id: page.case_id.clone(),
            kind: CaseEventKind::Acknowledged as i32,
            actor: format!("contact:{}", page.contact_id),
            reason: format!("acknowledged by {how} from the escalation alert"),
            ..Default::default()
        };
        match self.submit_case(&event).await? {
            Ok(false) => Ok(Acked::Done { reference }),
            Ok(true) => Ok(Acked::Already { reference }),
            Err(why) => Ok(over(why)),
        }
    }

    /// Sends a case event to intake: `Ok(duplicate)` once stored,
    /// `Err(why)` for a refusal that will not change; the outer error is
    /// "try again".
    pub(crate) async fn submit_case(
        &self,
        event: &CaseEvent,
    ) -> anyhow::Result<Result<bool, String>> {
        let reply = tokio::time::timeout(
            INTAKE_TIMEOUT,
            self.bus.client.request(
                subjects::from_caller(subjects::INTAKE_CASE, &self.bus.identity),
                event.encode_to_vec().into(),
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("intake did not answer in time"))?
        .map_err(|e| anyhow::anyhow!("intake unreachable: {e}"))?;
        match CaseReply::decode(reply.payload)?.result {
            Some(case_reply::Result::Accepted(a)) => Ok(Ok(a.duplicate)),
            Some(case_reply::Result::Rejected(r)) if r.code == ErrorCode::Unavailable as i32 => {
                anyhow::bail!("intake unavailable: {}", r.message)
            }
            Some(case_reply::Result::Rejected(r)) => {
                warn!(field = %r.field, code = r.code, "intake refused a case event");
                Ok(Err(r.message))
            }
            None => anyhow::bail!("intake sent an empty reply"),
        }
    }

    /// Counts an acknowledgement that came `via` a link, key or SMS.
    pub(crate) fn count_ack(&self, via: &str, outcome: Option<&Acked>) {
        self.metrics
            .acks
            .get_or_create(&crate::metrics::AckLabel {
                via: via.into(),
                outcome: match outcome {
                    Some(Acked::Done { .. }) => "acknowledged",
                    Some(Acked::Already { .. }) => "already",
                    Some(Acked::Over { .. }) => "over",
                    Some(Acked::Unknown) | None => "unknown_code",
                }
                .into(),
            })
            .inc();
    }

    fn refused(&self, endpoint: &str, why: &str) -> Response {
        self.metrics
            .ack_refused
            .get_or_create(&crate::metrics::EndpointLabel {
                endpoint: endpoint.into(),
            })
            .inc();
        warn!(endpoint, why, "acknowledgement refused");
        (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
    }

    /// The posted parameters, if the provider's signature over them holds.
    fn provider_signed(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let url = self
            .acks
            .links
            .public(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        self.provider_keys.check(&url, headers, body)
    }
}

pub(crate) fn routes(esc: Escalator) -> Router {
    Router::new()
        .route(Kind::Link.path(), get(link_page).post(link_ack))
        .route(Kind::Key.path(), post(key_press))
        .with_state(esc)
}

fn page(code: StatusCode, title: &str, text: &str, button: bool) -> Response {
    herald_runtime::public::link_page(code, title, text, button.then_some("Acknowledge"))
}

fn twiml(text: &str) -> Response {
    herald_runtime::public::say(herald_content::twiml::say(text, ""))
}

/// The words for an outcome, as the person who acknowledged reads them.
pub(crate) fn words(outcome: &Acked) -> String {
    match outcome {
        Acked::Done { reference } => format!(
            "Case {reference} is acknowledged. The escalation has stopped; nobody else will be alerted."
        ),
        Acked::Already { reference } => {
            format!("You had already acknowledged case {reference}.")
        }
        Acked::Over { reference, why } => format!(
            "Case {reference} needs no acknowledgement now: {why}. Nothing was acknowledged."
        ),
        Acked::Unknown => "This case is not known. Nothing was acknowledged.".into(),
    }
}

async fn link_page(State(e): State<Escalator>, uri: Uri) -> Response {
    if e.acks
        .links
        .read(Kind::Link, uri.query().unwrap_or_default())
        .is_none()
    {
        return e.refused("link", "this acknowledgement link is not valid");
    }
    page(
        StatusCode::OK,
        "Acknowledge the case",
        "Press the button to take the case on. That stops its escalation.",
        true,
    )
}

async fn link_ack(State(e): State<Escalator>, uri: Uri) -> Response {
    let Some(p) = e
        .acks
        .links
        .read(Kind::Link, uri.query().unwrap_or_default())
    else {
        return e.refused("link", "this acknowledgement link is not valid");
    };
    let acked = e.acknowledge(&p, "email link").await;
    if let Ok(outcome) = &acked {
        e.count_ack("link", Some(outcome));
    }
    match acked {
        Ok(outcome @ (Acked::Done { .. } | Acked::Already { .. })) => {
            page(StatusCode::OK, "Acknowledged", &words(&outcome), false)
        }
        Ok(outcome @ Acked::Over { .. }) => page(
            StatusCode::CONFLICT,
            "Nothing to acknowledge",
            &words(&outcome),
            false,
        ),
        Ok(outcome @ Acked::Unknown) => page(
            StatusCode::NOT_FOUND,
            "Unknown case",
            &words(&outcome),
            false,
        ),
        Err(err) => {
            error!(error = %err, "acknowledgement not recorded");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Your acknowledgement could not be recorded just now. Please press the button again in a moment.",
                true,
            )
        }
    }
}

async fn key_press(
    State(e): State<Escalator>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match e.provider_signed(&uri, &headers, &body) {
        Ok(p) => p,
        Err(why) => return e.refused("key", &why),
    };
    let Some(p) = e
        .acks
        .links
        .read(Kind::Key, uri.query().unwrap_or_default())
    else {
        return e.refused("key", "this key-press address is not valid");
    };
    let digits = params
        .iter()
        .find(|(k, _)| k == "Digits")
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    if digits.is_empty() {
        return twiml("No key was pressed. Nothing was acknowledged.");
    }
    match e.acknowledge(&p, "key press on the call").await {
        Ok(outcome) => {
            e.count_ack("key", Some(&outcome));
            twiml(&format!("{} Goodbye.", words(&outcome)))
        }
        Err(err) => {
            error!(error = %err, "acknowledgement not recorded; the provider will repeat it");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(case: &str, seq: u64, c: &str) -> Page {
        Page {
            case_id: case.into(),
            seq,
            contact_id: c.into(),
        }
    }

    #[test]
    fn pages_survive_their_encoding() {
        let p = page_of("C+1:x", 42, "staff-1");
        assert_eq!(Page::decode(&p.encode()), Some(p));
        assert_eq!(Page::decode("C-1\tnot a number\ts"), None);
    }

    #[test]
    fn a_link_acknowledges_only_its_page_and_purpose() {
        let links = Links::new("0123456789abcdef0123", "https://h.example/esc/");
        let p = page_of("C+1", 7, "staff-1");
        let url = links.url(Kind::Link, &p);
        assert!(
            url.starts_with(
                "https://h.example/esc/v1/escalation/ack?case=C%2B1&esc=7&c=staff-1&s="
            ),
            "{url}"
        );
        let query = url.split_once('?').unwrap().1;
        assert_eq!(links.read(Kind::Link, query), Some(p.clone()));
        assert_eq!(links.read(Kind::Key, query), None, "a link is no key press");
        for (from, to) in [
            ("esc=7", "esc=8"),
            ("c=staff-1", "c=staff-2"),
            ("case=C%2B1", "case=C%2B2"),
        ] {
            assert_eq!(
                links.read(Kind::Link, &query.replace(from, to)),
                None,
                "{to}"
            );
        }
        let other = Links::new("another secret entirely", "https://h.example/esc");
        assert_eq!(other.read(Kind::Link, query), None);
        // The survey's token for the same case acknowledges nothing.
        let survey = crate::survey::token("0123456789abcdef0123", "C+1", 7);
        assert_eq!(
            links.read(
                Kind::Link,
                &format!("case=C%2B1&esc=7&c=staff-1&s={survey}")
            ),
            None
        );
    }

    #[test]
    fn codes_are_four_digits_and_the_same_for_the_same_page() {
        let links = Links::new("0123456789abcdef0123", "https://h.example");
        let p = page_of("C-1", 7, "staff-1");
        let a = links.candidate(&p, 0);
        assert_eq!(a.len(), 4);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(a, links.candidate(&p, 0));
        let distinct: std::collections::BTreeSet<String> =
            (0..CANDIDATES).map(|i| links.candidate(&p, i)).collect();
        assert!(distinct.len() > (CANDIDATES as usize) / 2, "{distinct:?}");
    }
}
