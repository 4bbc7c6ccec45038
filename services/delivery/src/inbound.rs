//! What people send back, on delivery's public listener beside the status
//! callbacks:
//!
//! * `POST /v1/inbound/sms`: the SMS provider's incoming-message webhook
//!   (form-encoded `From`, `To`, `Body`, `MessageSid`), signed as status
//!   callbacks are (`delivery.provider_token` or the shared key, over
//!   `<status_callback_base>/v1/inbound/sms`).
//! * `POST /v1/inbound/email`: a parsed incoming email as inbound-parse
//!   webhooks post it (form-encoded, or multipart when it has
//!   attachments): `from`, `sender`, `recipient`, `subject`,
//!   `stripped-text` / `body-plain`, the headers (`Message-Id`,
//!   `In-Reply-To`, `References`) as fields of their own or in
//!   `message-headers`, the first `text/calendar` attachment (an
//!   attendee's iMIP answer to an invitation), and `timestamp`, `token`,
//!   `signature`
//!   ([`herald_content::mailhook`], keyed with
//!   `delivery.inbound_email_signing_key`).
//!
//! Each message is matched to what Herald sent that it answers: an email by
//! the `<job id@herald>` its `In-Reply-To` or `References` names, else (and
//! every SMS) by the last message about a case or a broadcast sent to that
//! address ([`Replies`], written when such a message is sent). It is then
//! stored once in `HERALD_INBOUND` (the message id is the stream's
//! deduplication id, so a provider's repeated post is one message) and
//! answered 200. Who it is for decides there: the broadcast service takes
//! confirmations, the escalation service acknowledgement codes and replies
//! to cases. A post that cannot be stored gets 503, so the provider posts
//! it again; one that is not believed gets 403 and stores nothing.

use std::time::SystemTime;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::post,
};
use herald_content::{mailhook, signature};
use herald_proto::{
    Message, subjects,
    v1::{Channel, DeliveryJob, InReplyTo, InboundMessage},
};
use herald_runtime::bus;
use redis::aio::ConnectionManager;
use tracing::{info, warn};

use crate::Delivery;

/// Largest inbound post read (an email with its attachments, which are
/// not kept).
const MAX_POST: usize = 10 * 1024 * 1024;
/// Longest reply text kept; anything longer is cut at a character
/// boundary.
const MAX_TEXT: usize = 16 * 1024;
/// Largest calendar file kept from an email; a larger one is not an
/// answer to an invitation.
const MAX_CALENDAR: usize = 64 * 1024;
/// The field an email's calendar attachment is read into.
const CALENDAR: &str = "herald-calendar";

/// The `Message-ID` an email job is sent with, by which a reply names it.
pub fn message_id(job_id: &str) -> String {
    format!("<{job_id}@herald>")
}

/// The job ids a reply's `In-Reply-To` and `References` name, newest first
/// (References lists the thread oldest first).
pub fn referenced_jobs(in_reply_to: &str, references: &str) -> Vec<String> {
    let ids = |s: &str| -> Vec<String> {
        s.split(['<', '>', ' ', ',', '\t', '\r', '\n'])
            .filter_map(|t| t.strip_suffix("@herald"))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut out = ids(in_reply_to);
    for id in ids(references).into_iter().rev() {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// What delivery remembers of the messages a reply may answer: per
/// address, the last one about a case or a broadcast, and per email job,
/// the job; each for `delivery.sent_ttl`.
#[derive(Clone)]
pub struct Replies {
    redis: ConnectionManager,
    prefix: String,
    keep_secs: u64,
}

impl Replies {
    pub fn new(redis: ConnectionManager, prefix: &str, keep: std::time::Duration) -> Replies {
        Replies {
            redis,
            prefix: herald_proto::keyspace::DELIVERY.prefix(prefix),
            keep_secs: keep.as_secs().max(1),
        }
    }

    fn address_key(&self, channel: Channel, address: &str) -> String {
        format!(
            "{}reply:{}:{}",
            self.prefix,
            channel.name(),
            normalise(channel, address)
        )
    }

    fn job_key(&self, job_id: &str) -> String {
        format!("{}thread:{job_id}", self.prefix)
    }

    /// Whether a reply to `job` could be about anything: emails about a
    /// case, and texts about a case or a broadcast (a broadcast is
    /// confirmed by text, and a text to a number after a case's message
    /// must not be taken for a reply to the case). Broadcast emails are
    /// confirmed by their link; nothing reads a reply to one.
    pub fn answerable(job: &DeliveryJob) -> bool {
        match Channel::try_from(job.channel).unwrap_or_default() {
            Channel::Email => !job.case_id.is_empty(),
            Channel::Sms => !job.case_id.is_empty() || !job.broadcast_id.is_empty(),
            _ => false,
        }
    }

    /// Remembers a sent job a reply may answer. Repeating it is harmless.
    pub async fn remember(&self, job: &DeliveryJob) -> redis::RedisResult<()> {
        if !Self::answerable(job) {
            return Ok(());
        }
        let channel = Channel::try_from(job.channel).unwrap_or_default();
        let what = InReplyTo {
            job_id: job.job_id.clone(),
            notification_id: job.notification_id.clone(),
            case_id: job.case_id.clone(),
            broadcast_id: job.broadcast_id.clone(),
            contact_id: job.contact_id.clone(),
            communication_type: job.communication_type,
            sent_at: Some(herald_proto::timestamp(SystemTime::now())),
        }
        .encode_to_vec();
        let mut pipe = redis::pipe();
        pipe.set_ex(
            self.address_key(channel, &job.address),
            &what,
            self.keep_secs,
        )
        .ignore();
        if channel == Channel::Email {
            pipe.set_ex(self.job_key(&job.job_id), &what, self.keep_secs)
                .ignore();
        }
        let mut r = self.redis.clone();
        pipe.query_async(&mut r).await
    }

    /// What a reply from `from` on `channel` answers: the first of
    /// `jobs` Herald remembers, else the last message to `from`.
    pub async fn find(
        &self,
        channel: Channel,
        from: &str,
        jobs: &[String],
    ) -> redis::RedisResult<Option<InReplyTo>> {
        let mut keys: Vec<String> = jobs.iter().map(|j| self.job_key(j)).collect();
        keys.push(self.address_key(channel, from));
        let mut r = self.redis.clone();
        let found: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut r).await?;
        Ok(found
            .into_iter()
            .flatten()
            .find_map(|b| InReplyTo::decode(b.as_slice()).ok()))
    }
}

/// An address as it is remembered and looked up: numbers without spaces,
/// email addresses in lower case.
fn normalise(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Email => address.trim().to_ascii_lowercase(),
        _ => address.chars().filter(|c| !c.is_whitespace()).collect(),
    }
}

/// The address in a `From` header: `Ana <ana@example.org>` or a bare one.
pub fn bare_address(from: &str) -> String {
    let from = from.trim();
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim().to_string(),
        _ => from.to_string(),
    }
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

pub(crate) fn routes(delivery: Delivery) -> Router {
    Router::new()
        .route("/v1/inbound/sms", post(sms))
        .route("/v1/inbound/email", post(email))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_POST))
        .with_state(delivery)
}

fn answer(code: StatusCode, text: &str) -> Response {
    (code, format!("{text}\n")).into_response()
}

/// A post refused before anything is read from it: counted and logged
/// without its content.
fn refused(d: &Delivery, channel: Channel, code: StatusCode, why: &str) -> Response {
    d.metrics
        .inbound
        .get_or_create(&crate::metrics::InboundLabel {
            channel: channel.name().into(),
            outcome: if code == StatusCode::FORBIDDEN {
                "rejected"
            } else {
                "invalid"
            }
            .into(),
        })
        .inc();
    warn!(channel = channel.name(), why, "inbound message refused");
    answer(code, why)
}

fn field<'a>(pairs: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    })
}

async fn sms(State(d): State<Delivery>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (Some(secrets), Some(base)) = (d.provider_secrets(), d.cfg.status_callback_base.as_deref())
    else {
        return refused(
            &d,
            Channel::Sms,
            StatusCode::FORBIDDEN,
            "inbound SMS is not accepted: delivery.provider_token and delivery.status_callback_base are not both set",
        );
    };
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let params = match signature::check(secrets, &url, &headers, &body) {
        Ok(p) => p,
        Err(e) => return refused(&d, Channel::Sms, StatusCode::FORBIDDEN, &e.to_string()),
    };
    let Some(from) = field(&params, &["From"]).filter(|f| !f.trim().is_empty()) else {
        return refused(&d, Channel::Sms, StatusCode::BAD_REQUEST, "From: missing");
    };
    let Some(sid) = field(&params, &["MessageSid", "SmsSid"]).filter(|s| !s.is_empty()) else {
        return refused(
            &d,
            Channel::Sms,
            StatusCode::BAD_REQUEST,
            "MessageSid: missing",
        );
    };
    let msg = InboundMessage {
        message_id: format!("sms:{sid}"),
        channel: Channel::Sms as i32,
        from: normalise(Channel::Sms, from),
        to: field(&params, &["To"]).unwrap_or_default().to_string(),
        subject: String::new(),
        text: clip(field(&params, &["Body"]).unwrap_or_default()),
        received_at: Some(herald_proto::timestamp(SystemTime::now())),
        in_reply_to: None,
        calendar: String::new(),
    };
    match d.store_inbound(msg, &[]).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml")],
            "<Response/>",
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "inbound SMS not stored; the provider will post it again");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

/// The fields of an inbound-email post, form-encoded or multipart. Of
/// the file parts, the attachments, only the first calendar file is kept
/// (as the field [`CALENDAR`]).
async fn email_fields(req: Request) -> Result<Vec<(String, String)>, String> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let body = Bytes::from_request(req, &())
            .await
            .map_err(|e| format!("body: {e}"))?;
        return serde_urlencoded::from_bytes(&body).map_err(|e| format!("body: {e}"));
    }
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| format!("body: {e}"))?;
    let mut out = Vec::new();
    while let Some(part) = form.next_field().await.map_err(|e| format!("body: {e}"))? {
        let Some(name) = part.name().map(str::to_string) else {
            continue;
        };
        if part.file_name().is_some() {
            let calendar = part
                .content_type()
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/calendar"))
                || part
                    .file_name()
                    .is_some_and(|f| f.to_ascii_lowercase().ends_with(".ics"));
            if calendar && !out.iter().any(|(n, _)| n == CALENDAR) {
                let bytes = part.bytes().await.map_err(|e| format!("{name}: {e}"))?;
                if bytes.len() <= MAX_CALENDAR
                    && let Ok(text) = String::from_utf8(bytes.to_vec())
                {
                    out.push((CALENDAR.to_string(), text));
                }
            }
            continue;
        }
        let text = part.text().await.map_err(|e| format!("{name}: {e}"))?;
        out.push((name, text));
    }
    Ok(out)
}

/// A header of the email: its own field, else from `message-headers` (a
/// JSON list of `[name, value]` pairs).
fn email_header(fields: &[(String, String)], name: &str) -> String {
    if let Some(v) = field(fields, &[name]) {
        return v.to_string();
    }
    let listed: Vec<(String, String)> = field(fields, &["message-headers"])
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    field(&listed, &[name]).unwrap_or_default().to_string()
}

async fn email(State(d): State<Delivery>, req: Request) -> Response {
    let Some(key) = d.cfg.inbound_email_signing_key.as_ref() else {
        return refused(
            &d,
            Channel::Email,
            StatusCode::FORBIDDEN,
            "inbound email is not accepted: delivery.inbound_email_signing_key is not set",
        );
    };
    let fields = match email_fields(req).await {
        Ok(f) => f,
        Err(why) => return refused(&d, Channel::Email, StatusCode::BAD_REQUEST, &why),
    };
    let (timestamp, token, signed) = (
        field(&fields, &["timestamp"]).unwrap_or_default(),
        field(&fields, &["token"]).unwrap_or_default(),
        field(&fields, &["signature"]).unwrap_or_default(),
    );
    if token.is_empty() || !mailhook::verify(key.expose_secret(), timestamp, token, signed) {
        return refused(
            &d,
            Channel::Email,
            StatusCode::FORBIDDEN,
            "signature: does not match timestamp and token under delivery.inbound_email_signing_key",
        );
    }
    let from = field(&fields, &["from", "sender"])
        .map(bare_address)
        .filter(|f| f.contains('@'));
    let Some(from) = from else {
        return refused(
            &d,
            Channel::Email,
            StatusCode::BAD_REQUEST,
            "from: missing or not an email address",
        );
    };
    let header_id = email_header(&fields, "Message-Id");
    // Without a Message-ID the post's token names it: a repeated post of
    // the same message carries the same token.
    let message_id = if header_id.trim().is_empty() {
        format!("email:token:{token}")
    } else {
        format!("email:{}", header_id.trim())
    };
    let jobs = referenced_jobs(
        &email_header(&fields, "In-Reply-To"),
        &email_header(&fields, "References"),
    );
    let text = field(&fields, &["stripped-text", "body-plain", "text"]).unwrap_or_default();
    let msg = InboundMessage {
        message_id,
        channel: Channel::Email as i32,
        from: normalise(Channel::Email, &from),
        to: field(&fields, &["recipient", "to"])
            .unwrap_or_default()
            .to_string(),
        subject: field(&fields, &["subject"]).unwrap_or_default().to_string(),
        text: clip(text.trim()),
        received_at: Some(herald_proto::timestamp(SystemTime::now())),
        in_reply_to: None,
        calendar: field(&fields, &[CALENDAR]).unwrap_or_default().to_string(),
    };
    match d.store_inbound(msg, &jobs).await {
        Ok(()) => answer(StatusCode::OK, "received"),
        Err(e) => {
            warn!(error = %e, "inbound email not stored; the service will post it again");
            answer(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

impl Delivery {
    /// Matches `msg` to what it answers and stores it in `HERALD_INBOUND`,
    /// confirmed, once per message id.
    async fn store_inbound(&self, mut msg: InboundMessage, jobs: &[String]) -> anyhow::Result<()> {
        let channel = Channel::try_from(msg.channel).unwrap_or_default();
        msg.in_reply_to = self.replies.find(channel, &msg.from, jobs).await?;
        let matched = msg.in_reply_to.is_some();
        let ack = self
            .bus
            .publish(subjects::inbound(channel), &msg, Some(&msg.message_id))
            .await?;
        bus::confirm(subjects::inbound(channel), ack).await?;
        self.metrics
            .inbound
            .get_or_create(&crate::metrics::InboundLabel {
                channel: channel.name().into(),
                outcome: if matched { "matched" } else { "unmatched" }.into(),
            })
            .inc();
        info!(channel = channel.name(), matched, "inbound message stored");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_names_the_jobs_of_its_thread_newest_first() {
        assert_eq!(
            referenced_jobs(
                "<n-2:0:email@herald>",
                "<n-1:0:email@herald> <other@mail.example> <n-2:0:email@herald>"
            ),
            vec!["n-2:0:email".to_string(), "n-1:0:email".to_string()]
        );
        assert!(referenced_jobs("<abc@mail.example>", "").is_empty());
        assert_eq!(message_id("n-1:0:email"), "<n-1:0:email@herald>");
    }

    #[test]
    fn only_sends_a_reply_can_answer_are_remembered() {
        let job = |channel: Channel, case: &str, broadcast: &str| DeliveryJob {
            channel: channel as i32,
            case_id: case.into(),
            broadcast_id: broadcast.into(),
            ..Default::default()
        };
        assert!(Replies::answerable(&job(Channel::Email, "C-1", "")));
        assert!(Replies::answerable(&job(Channel::Sms, "C-1", "")));
        assert!(Replies::answerable(&job(Channel::Sms, "", "fire-b")));
        assert!(!Replies::answerable(&job(Channel::Email, "", "fire-b")));
        assert!(!Replies::answerable(&job(Channel::Voice, "C-1", "")));
        assert!(!Replies::answerable(&job(Channel::Email, "", "")));
    }

    #[test]
    fn addresses_are_read_from_from_headers() {
        assert_eq!(
            bare_address("Ana Ruiz <Ana@Example.org>"),
            "Ana@Example.org"
        );
        assert_eq!(bare_address(" ana@example.org "), "ana@example.org");
        assert_eq!(
            normalise(Channel::Email, " Ana@Example.org"),
            "ana@example.org"
        );
        assert_eq!(normalise(Channel::Sms, "+44 7700 900123"), "+447700900123");
    }

    #[test]
    fn headers_come_from_their_own_field_or_the_header_list() {
        let f = vec![(
            "message-headers".to_string(),
            r#"[["In-Reply-To", "<j1@herald>"], ["Subject", "Re: x"]]"#.to_string(),
        )];
        assert_eq!(email_header(&f, "In-Reply-To"), "<j1@herald>");
        let mut g = f.clone();
        g.push(("In-Reply-To".into(), "<j2@herald>".into()));
        assert_eq!(email_header(&g, "in-reply-to"), "<j2@herald>");
        assert_eq!(email_header(&f, "References"), "");
    }

    #[test]
    fn long_texts_are_cut_on_a_character() {
        let t = "é".repeat(MAX_TEXT);
        let c = clip(&t);
        assert!(c.len() <= MAX_TEXT && c.chars().all(|ch| ch == 'é'));
    }
}
