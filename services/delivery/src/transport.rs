//! The wire: email over SMTP with lettre (pooled connections, `smtp.rs`), SMS and calls
//! as form-encoded POSTs to provider webhooks with reqwest (pooled,
//! keep-alive), or files in a local outbox when a channel has no endpoint.
//!
//! Every failure is classified here and nowhere else: transient ones
//! (connection errors, timeouts, SMTP 4xx, HTTP 5xx and 429) are retried,
//! permanent ones (SMTP 5xx, HTTP 4xx, a malformed address) are not.

use std::{path::PathBuf, time::Duration};

use herald_config::DeliveryConfig;
use herald_content::twiml;
use herald_proto::v1::{Channel, DeliveryJob};
use lettre::{
    Message,
    message::{Mailbox, header::ContentType},
};

use crate::smtp::{SmtpError, SmtpPool};
use herald_config::EncryptedFrom;

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        /// What the provider asked for (HTTP Retry-After).
        retry_after: Option<Duration>,
    },
    #[error("permanent: {reason}")]
    Permanent { reason: String },
}

impl SendError {
    fn transient(reason: impl Into<String>) -> SendError {
        SendError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn permanent(reason: impl Into<String>) -> SendError {
        SendError::Permanent {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient { reason, .. } | SendError::Permanent { reason } => reason,
        }
    }
}

/// What the provider said when it took the message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    pub provider_id: String,
    /// Where the message went: "smtp", "smtp+tls", "http" or an outbox
    /// path.
    pub via: String,
}

/// HTTP status → classification (the rule, in one place).
pub fn classify_http(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<(), SendError> {
    // The reason goes to logs, spans and the audit trail: keep the
    // provider's codes, not its words, which may quote the recipient.
    let detail = herald_runtime::pii::provider_reply_summary(body);
    let reason = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    match status {
        200..=299 => Ok(()),
        429 | 408 | 425 => Err(SendError::Transient {
            reason,
            retry_after,
        }),
        500..=599 => Err(SendError::Transient {
            reason,
            retry_after,
        }),
        // 3xx: a provider endpoint that redirects is misconfigured.
        _ => Err(SendError::permanent(reason)),
    }
}

/// SMTP error → classification.
pub fn classify_smtp(e: &SmtpError) -> SendError {
    let e = match e {
        // Refused, unreachable, timed out, a TLS handshake cut short: the
        // server may well be back later.
        SmtpError::Connect(why) => return SendError::transient(format!("SMTP {why}")),
        // The relay may be fixed: tls=required in the URL retries.
        SmtpError::NoStartTls => return SendError::transient(format!("SMTP {e}")),
        SmtpError::Smtp(e) => e,
    };
    if e.is_permanent() {
        SendError::permanent(format!("SMTP {e}"))
    } else {
        // 4xx replies, timeouts, refused or dropped connections, TLS
        // handshakes that failed mid-way: all may succeed later.
        SendError::transient(format!("SMTP {e}"))
    }
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

enum Email {
    Smtp {
        pool: SmtpPool,
        /// For content that may only go encrypted, when `pool` may send in
        /// clear: the same relay with STARTTLS required.
        encrypted: Option<SmtpPool>,
    },
    Outbox(PathBuf),
}

enum Webhook {
    /// Parsed once at start, not per send.
    Http(reqwest::Url),
    Outbox(PathBuf),
}

/// All three channels, configured once at start.
pub struct Transports {
    email: Email,
    sms: Webhook,
    voice: Webhook,
    http: reqwest::Client,
    from_email: Mailbox,
    sms_from: String,
    voice_from: String,
    /// The provider's basic credentials, encoded once at start.
    auth: Option<reqwest::header::HeaderValue>,
    callback_base: Option<String>,
    encrypted_from: EncryptedFrom,
}

/// `Authorization: Basic …` for the provider's account and token, kept
/// out of logs and debug output.
fn basic_auth(user: &str, token: &str) -> anyhow::Result<reqwest::header::HeaderValue> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| anyhow::anyhow!("delivery.provider_account: not usable in an HTTP header"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl Transports {
    pub fn new(cfg: &DeliveryConfig) -> anyhow::Result<Transports> {
        let from_email: Mailbox = cfg
            .smtp_from
            .parse()
            .map_err(|e| anyhow::anyhow!("delivery.smtp_from {:?}: {e}", cfg.smtp_from))?;
        let email = match &cfg.smtp_url {
            Some(url) => {
                let roots = match &cfg.smtp_ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        anyhow::anyhow!("delivery.smtp_ca_file {}: {e}", path.display())
                    })?),
                    None => None,
                };
                let pool = |encrypted: bool| {
                    SmtpPool::new(
                        url.expose_secret(),
                        encrypted,
                        cfg.smtp_pool_size,
                        cfg.attempt_timeout,
                        Duration::from_secs(30),
                        roots.as_deref(),
                    )
                    .map_err(|e| anyhow::anyhow!("delivery.smtp_url: {e}"))
                };
                let plain = pool(false)?;
                let encrypted = if plain.encrypted() || cfg.encrypted_from == EncryptedFrom::None {
                    None
                } else {
                    Some(pool(true)?)
                };
                Email::Smtp {
                    pool: plain,
                    encrypted,
                }
            }
            None => Email::Outbox(cfg.outbox_dir.join("email")),
        };
        let webhook = |url: &Option<String>, name: &str| -> anyhow::Result<Webhook> {
            Ok(match url {
                Some(u) => Webhook::Http(
                    reqwest::Url::parse(u)
                        .map_err(|e| anyhow::anyhow!("delivery.{name}_url {u:?}: {e}"))?,
                ),
                None => Webhook::Outbox(cfg.outbox_dir.join(name)),
            })
        };
        let provider_roots = match &cfg.provider_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("delivery.provider_ca_file {}: {e}", path.display())
                })?;
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    anyhow::anyhow!("delivery.provider_ca_file {}: {e}", path.display())
                })?
            }
            None => Vec::new(),
        };
        let http = reqwest::Client::builder()
            .tls_certs_merge(provider_roots)
            .timeout(cfg.attempt_timeout)
            .connect_timeout(cfg.attempt_timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(cfg.concurrency.max(16))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        {
            let dir = &cfg.outbox_dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("delivery.outbox_dir {}: {e}", dir.display()))?;
        }
        Ok(Transports {
            email,
            sms: webhook(&cfg.sms_url, "sms")?,
            voice: webhook(&cfg.voice_url, "voice")?,
            http,
            from_email,
            sms_from: cfg.sms_from.clone(),
            voice_from: cfg.voice_from.clone(),
            auth: match (&cfg.provider_account, &cfg.provider_token) {
                (Some(user), Some(token)) => Some(basic_auth(user, token.expose_secret())?),
                _ => None,
            },
            callback_base: cfg.status_callback_base.clone(),
            encrypted_from: cfg.encrypted_from,
        })
    }

    /// Sends one job over its channel within `limit`; running out of time
    /// is transient (the provider may simply be slow today).
    pub async fn send(&self, job: &DeliveryJob, limit: Duration) -> Result<Sent, SendError> {
        match tokio::time::timeout(limit, self.send_now(job)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::transient(format!("no answer within {limit:?}"))),
        }
    }

    async fn send_now(&self, job: &DeliveryJob) -> Result<Sent, SendError> {
        let channel = Channel::try_from(job.channel).unwrap_or_default();
        if matches!(channel, Channel::Sms | Channel::Voice) {
            // No provider can reach a malformed number; asking is pointless.
            herald_directory::validate::e164(&job.address)
                .map_err(|why| SendError::permanent(format!("recipient number {why}")))?;
        }
        match channel {
            Channel::Email => self.send_email(job).await,
            Channel::Sms => {
                let form = vec![
                    ("To", job.address.clone()),
                    ("From", self.sms_from.clone()),
                    ("Body", job.body.clone()),
                ];
                self.post(&self.sms, Channel::Sms, job, form).await
            }
            Channel::Voice => {
                let script = if job.key_press_url.is_empty() {
                    twiml::say(&job.body, &job.language)
                } else {
                    twiml::say_and_wait_for_a_key(&job.body, &job.language, &job.key_press_url)
                };
                let form = vec![
                    ("To", job.address.clone()),
                    ("From", self.voice_from.clone()),
                    ("Twiml", script),
                ];
                self.post(&self.voice, Channel::Voice, job, form).await
            }
            Channel::Unspecified => Err(SendError::permanent("job has no channel")),
        }
    }

    async fn send_email(&self, job: &DeliveryJob) -> Result<Sent, SendError> {
        let to: lettre::Address = job
            .address
            .parse()
            .map_err(|e| SendError::permanent(format!("recipient address: {e}")))?;
        let name = (!job.recipient_name.is_empty()).then(|| job.recipient_name.clone());
        let message_id = crate::inbound::message_id(&job.job_id);
        let builder = Message::builder()
            .from(self.from_email.clone())
            .to(Mailbox::new(name, to))
            .subject(job.subject.clone())
            .message_id(Some(message_id.clone()));
        let message = if job.attachments.is_empty() {
            builder
                .header(ContentType::TEXT_PLAIN)
                .body(job.body.clone())
        } else {
            builder.multipart(with_attachments(job)?)
        }
        .map_err(|e| SendError::permanent(format!("building the email: {e}")))?;
        match &self.email {
            Email::Smtp { pool, encrypted } => {
                let must_encrypt = self.must_encrypt(job);
                let (smtp, forced) = match encrypted {
                    Some(e) if must_encrypt => (e, true),
                    _ => (pool, false),
                };
                match smtp.send(message.envelope(), &message.formatted()).await {
                    Ok(_) => Ok(Sent {
                        provider_id: message_id,
                        via: if smtp.encrypted() { "smtp+tls" } else { "smtp" }.into(),
                    }),
                    // A relay without STARTTLS will not grow it by the next
                    // attempt: the job is handed on, not sent in clear.
                    Err(SmtpError::NoStartTls) if forced => Err(SendError::permanent(
                        "confidential content goes only over an encrypted connection, and the \
                         SMTP relay does not offer STARTTLS: not sent in clear",
                    )),
                    Err(e) => Err(classify_smtp(&e)),
                }
            }
            Email::Outbox(dir) => {
                let path =
                    write_outbox(dir, &format!("{}.eml", job.job_id), &message.formatted()).await?;
                Ok(Sent {
                    provider_id: message_id,
                    via: path.display().to_string(),
                })
            }
        }
    }

    /// Whether `job` carries content that reaches providers only
    /// encrypted (`delivery.encrypted_from`); a content-free notice does
    /// not.
    fn must_encrypt(&self, job: &DeliveryJob) -> bool {
        !job.content_withheld && self.encrypted_from.requires(job.confidentiality)
    }

    async fn post(
        &self,
        endpoint: &Webhook,
        channel: Channel,
        job: &DeliveryJob,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<Sent, SendError> {
        if let Some(base) = &self.callback_base {
            form.push((
                "StatusCallback",
                status_callback(base, channel, &job.job_id),
            ));
        }
        match endpoint {
            Webhook::Outbox(dir) => {
                let fields: serde_json::Map<String, serde_json::Value> = form
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                let body = serde_json::to_vec_pretty(&fields).unwrap_or_default();
                let path = write_outbox(dir, &format!("{}.json", job.job_id), &body).await?;
                Ok(Sent {
                    provider_id: job.job_id.clone(),
                    via: path.display().to_string(),
                })
            }
            Webhook::Http(url) if self.must_encrypt(job) && url.scheme() != "https" => {
                Err(SendError::permanent(format!(
                    "confidential content goes to the {} provider only over HTTPS, and its URL \
                     is not https://: not sent in clear",
                    channel.name()
                )))
            }
            Webhook::Http(url) => {
                let mut req = self
                    .http
                    .post(url.clone())
                    // Providers that honour it drop a repeat of the same job.
                    .header("Idempotency-Key", &job.job_id)
                    .form(&form);
                if let Some(tp) = herald_runtime::telemetry::current_traceparent() {
                    req = req.header("traceparent", tp);
                }
                if let Some(auth) = &self.auth {
                    req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
                }
                let resp = req.send().await.map_err(|e| {
                    let kind = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "connection failed"
                    } else {
                        "request failed"
                    };
                    SendError::transient(format!("{kind}: {}", without_url(&e)))
                })?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = resp.text().await.unwrap_or_default();
                classify_http(status, retry_after, &body)?;
                Ok(Sent {
                    provider_id: provider_id(&body).unwrap_or_default(),
                    via: "http".into(),
                })
            }
        }
    }
}

/// The address a provider reports a job's status to. The job id is
/// encoded: a broadcast's may hold `+`, `=`, `:` or `@`, and a `+` read
/// back as a space would name no job.
fn status_callback(base: &str, channel: Channel, job_id: &str) -> String {
    herald_content::url::with_query(
        &format!(
            "{}/v1/status/{}",
            base.trim_end_matches('/'),
            channel.name()
        ),
        &[("job", job_id)],
    )
}

/// The provider's id for the message, from a JSON reply (`sid` or `id`).
fn provider_id(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    ["sid", "id", "message_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<provider>");
    }
    s
}

/// Writes an outbox file atomically (temp file, then rename), so a reader
/// never sees half a message and a repeated job overwrites, not duplicates.
async fn write_outbox(
    dir: &std::path::Path,
    name: &str,
    data: &[u8],
) -> Result<PathBuf, SendError> {
    let io = |e: std::io::Error| SendError::transient(format!("outbox: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, data).await.map_err(io)?;
    tokio::fs::rename(&tmp, &path).await.map_err(io)?;
    Ok(path)
}

/// An email with files: its text first, then each file, as
/// multipart/mixed. A content type that does not parse is permanent.
fn with_attachments(job: &DeliveryJob) -> Result<lettre::message::MultiPart, SendError> {
    use lettre::message::{Attachment, MultiPart, SinglePart};
    let mut mixed = MultiPart::mixed().singlepart(
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(job.body.clone()),
    );
    for (i, a) in job.attachments.iter().enumerate() {
        let kind = ContentType::parse(&a.content_type)
            .map_err(|e| SendError::permanent(format!("attachments[{i}].content_type: {e}")))?;
        mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(a.content.clone(), kind));
    }
    Ok(mixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_url_that_does_not_parse_is_refused_at_start_naming_its_key() {
        herald_runtime::install_crypto();
        let outbox = tempfile::tempdir().unwrap();
        let cfg = DeliveryConfig {
            outbox_dir: outbox.path().to_path_buf(),
            voice_url: Some("http://[::1".into()),
            ..Default::default()
        };
        let refused = Transports::new(&cfg).err().expect("refused").to_string();
        assert!(refused.starts_with("delivery.voice_url"), "{refused}");
        let cfg = DeliveryConfig {
            voice_url: Some("http://127.0.0.1:9/voice".into()),
            ..cfg
        };
        assert!(Transports::new(&cfg).is_ok());
    }

    #[test]
    fn http_statuses_are_classified_once() {
        assert!(classify_http(200, None, "").is_ok());
        assert!(classify_http(202, None, "").is_ok());
        assert!(matches!(
            classify_http(429, Some(Duration::from_secs(7)), ""),
            Err(SendError::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify_http(503, None, ""),
            Err(SendError::Transient { .. })
        ));
        assert!(matches!(
            classify_http(400, None, "bad number"),
            Err(SendError::Permanent { .. })
        ));
        assert!(matches!(
            classify_http(404, None, ""),
            Err(SendError::Permanent { .. })
        ));
        assert!(matches!(
            classify_http(301, None, ""),
            Err(SendError::Permanent { .. })
        ));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_status_callback_names_its_job_exactly() {
        let url = status_callback(
            "https://h.example/",
            Channel::Voice,
            "drill+1=a@b:c-r0-voice-c1",
        );
        assert_eq!(
            url,
            "https://h.example/v1/status/voice?job=drill%2B1%3Da%40b%3Ac-r0-voice-c1"
        );
    }

    #[test]
    fn call_scripts_escape_the_text() {
        assert_eq!(
            twiml::say("Tom & Jerry <3", "en"),
            "<Response><Say language=\"en\">Tom &amp; Jerry &lt;3</Say></Response>"
        );
        assert_eq!(
            twiml::say_and_wait_for_a_key(
                "Leave now.",
                "fr",
                "https://h.example/v1/k?b=x&r=r1&s=y"
            ),
            "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"10\" method=\"POST\" \
             action=\"https://h.example/v1/k?b=x&amp;r=r1&amp;s=y\"><Say language=\"fr\">Leave now.</Say>\
             </Gather></Response>"
        );
    }
}
