//! Provider status callbacks: `POST /v1/status/{sms|voice}?job=<job id>` on
//! delivery's HTTP port, form-encoded the way SMS and voice providers post
//! them (`MessageStatus` / `CallStatus`, `MessageSid` / `CallSid`,
//! `ErrorCode`).
//!
//! A callback is believed only with a valid signature
//! ([`herald_content::signature`], keyed with `delivery.provider_token`, or
//! `delivery.provider_signing_key` when the provider says it signed with a
//! shared key, over the public URL under `delivery.status_callback_base`,
//! with or without its port, and the posted parameters). Anything else gets 403 and changes nothing, so nobody can
//! mark a message delivered, or trigger a fallback, by posting to us.
//!
//! A verified status updates the send ledger and is documented in the
//! audit trail, its record carrying the `DeliveryStatus`. A failure
//! (SMS undelivered or failed; a call busy, unanswered, failed or
//! cancelled) hands the job on exactly as a failed send does: the next
//! channel, or the dead-letter stream. Errors on our side answer 503, so the
//! provider repeats the callback; a repeat is harmless (deterministic event
//! ids, and the ledger hands a job on only once).

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::post,
};
use herald_content::signature;
use herald_proto::{
    Message,
    v1::{AuditStep, Channel, DeliveryJob, DeliveryState, Lane},
};
use herald_runtime::metrics::ChannelOutcome;
use tracing::{error, info, warn};

use crate::{
    Delivery,
    ledger::{HandOn, StatusOutcome},
};

/// Headers a provider may put its signature in.
pub const SIGNATURE_HEADERS: [&str; 2] = signature::HEADERS;

/// A status as the provider reported it, mapped onto Herald's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub state: DeliveryState,
    /// No later status is expected.
    pub is_final: bool,
    /// Counts as a failure to reach the person: fall back.
    pub is_failure: bool,
}

impl Reported {
    const fn new(state: DeliveryState, is_final: bool, is_failure: bool) -> Reported {
        Reported {
            state,
            is_final,
            is_failure,
        }
    }
}

/// The form field carrying the status for a channel.
pub fn status_field(channel: Channel) -> &'static str {
    match channel {
        Channel::Voice => "CallStatus",
        _ => "MessageStatus",
    }
}

/// Maps a provider's status word. `None` for a word we do not know.
pub fn parse_status(channel: Channel, value: &str) -> Option<Reported> {
    use DeliveryState as S;
    let v = value.trim().to_ascii_lowercase();
    Some(match (channel, v.as_str()) {
        (Channel::Sms, "accepted" | "scheduled" | "queued" | "sending") => {
            Reported::new(S::Queued, false, false)
        }
        (Channel::Sms, "sent") => Reported::new(S::Sent, false, false),
        (Channel::Sms, "delivered" | "read") => Reported::new(S::Delivered, true, false),
        (Channel::Sms, "undelivered") => Reported::new(S::Undelivered, true, true),
        (Channel::Sms, "failed" | "canceled" | "cancelled") => Reported::new(S::Failed, true, true),
        (Channel::Voice, "queued" | "initiated") => Reported::new(S::Initiated, false, false),
        (Channel::Voice, "ringing") => Reported::new(S::Ringing, false, false),
        (Channel::Voice, "answered" | "in-progress") => Reported::new(S::Answered, false, false),
        (Channel::Voice, "completed") => Reported::new(S::Completed, true, false),
        (Channel::Voice, "busy") => Reported::new(S::Busy, true, true),
        (Channel::Voice, "no-answer") => Reported::new(S::NoAnswer, true, true),
        (Channel::Voice, "failed" | "canceled" | "cancelled") => {
            Reported::new(S::Failed, true, true)
        }
        _ => return None,
    })
}

impl Delivery {
    /// What the provider signs its callbacks with, if it is configured.
    pub(crate) fn provider_secrets(&self) -> Option<signature::Secrets<'_>> {
        self.cfg
            .provider_token
            .as_ref()
            .map(|token| signature::Secrets {
                auth_token: token.expose_secret(),
                shared_key: self
                    .cfg
                    .provider_signing_key
                    .as_ref()
                    .map(|k| k.expose_secret()),
            })
    }
}

/// The callback routes, mounted on delivery's health port.
pub(crate) fn routes(delivery: Delivery) -> Router {
    Router::new()
        .route("/v1/status/{channel}", post(callback))
        .with_state(delivery)
}

fn reply(code: StatusCode, text: impl Into<String>) -> Response {
    (code, format!("{}\n", text.into())).into_response()
}

/// What a verified callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub job_id: String,
    pub channel: Channel,
    pub reported: Reported,
    pub provider_id: String,
    pub detail: String,
}

/// The answer to a callback that is not acted on: 403 when it is not
/// believed, 404 or 400 when it is signed but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub why: String,
}

impl Refused {
    fn new(status: StatusCode, why: impl Into<String>) -> Refused {
        Refused {
            status,
            why: why.into(),
        }
    }
}

/// Reads a callback posted to `/v1/status/{channel}`: the signature first
/// (with `secrets`, over the public URL under `base`), then the channel,
/// the job and the status. Nothing is looked up, so every answer a
/// stranger's request can get before the ledger is read comes from here.
pub fn read(
    secrets: Option<signature::Secrets<'_>>,
    base: Option<&str>,
    channel: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Callback, Refused> {
    let forged = |why: &str| Refused::new(StatusCode::FORBIDDEN, why);
    let (Some(secrets), Some(base)) = (secrets, base) else {
        return Err(forged(
            "status callbacks are not accepted: delivery.provider_token and delivery.status_callback_base are not both set",
        ));
    };
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let params =
        signature::check(secrets, &url, headers, body).map_err(|e| forged(&e.to_string()))?;

    let channel = match Channel::parse(channel) {
        Some(c @ (Channel::Sms | Channel::Voice)) => c,
        _ => {
            return Err(Refused::new(
                StatusCode::NOT_FOUND,
                format!("channel: no status callbacks for {channel:?} (sms or voice)"),
            ));
        }
    };
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let field = |name: &str| {
        params
            .iter()
            .chain(query.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(job_id) = field("job").filter(|j| !j.is_empty()) else {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "job: missing from the callback URL (?job=<job id>)",
        ));
    };
    let status_key = status_field(channel);
    let Some(raw) = field(status_key).or_else(|| {
        (channel == Channel::Sms)
            .then(|| field("SmsStatus"))
            .flatten()
    }) else {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            format!("{status_key}: missing"),
        ));
    };
    let Some(reported) = parse_status(channel, raw) else {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            format!("{status_key}: {raw:?} is not a status Herald knows"),
        ));
    };
    let provider_id = ["MessageSid", "SmsSid", "CallSid"]
        .iter()
        .find_map(|k| field(k))
        .unwrap_or_default()
        .to_string();
    let mut detail = String::new();
    if let Some(code) = field("ErrorCode").filter(|c| !c.is_empty()) {
        detail = format!("error code {code}");
    }
    if let Some(msg) = field("ErrorMessage").filter(|c| !c.is_empty()) {
        detail = format!("{detail} {msg}").trim().to_string();
    }
    Ok(Callback {
        job_id: job_id.to_string(),
        channel,
        reported,
        provider_id,
        detail,
    })
}

async fn callback(
    State(d): State<Delivery>,
    Path(channel): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = read(
        d.provider_secrets(),
        d.cfg.status_callback_base.as_deref(),
        &channel,
        &uri,
        &headers,
        &body,
    );
    let cb = match answer {
        Ok(cb) => cb,
        Err(r) if r.status == StatusCode::FORBIDDEN => {
            d.metrics
                .callbacks
                .get_or_create(&ChannelOutcome {
                    lane: String::new(),
                    channel: channel.clone(),
                    outcome: "rejected".into(),
                })
                .inc();
            warn!(why = r.why.as_str(), "status callback refused");
            return reply(r.status, r.why);
        }
        Err(r) => return reply(r.status, r.why),
    };
    match d
        .on_status(
            &cb.job_id,
            cb.channel,
            cb.reported,
            &cb.provider_id,
            &cb.detail,
        )
        .await
    {
        Ok(code) => reply(code, "ok"),
        Err(why) => {
            let job_id = cb.job_id.as_str();
            error!(job_id, error = %why, "status callback not processed; the provider will repeat it");
            reply(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}

impl Delivery {
    /// Applies one verified status. `Err` means "not done, ask for a
    /// repeat".
    async fn on_status(
        &self,
        job_id: &str,
        channel: Channel,
        reported: Reported,
        provider_id: &str,
        detail: &str,
    ) -> anyhow::Result<StatusCode> {
        let name = reported.state.name();
        let outcome = self
            .ledger
            .status(
                job_id,
                name,
                reported.is_final,
                reported.is_failure,
                provider_id,
            )
            .await?;
        let (meta, attempt, hand_on) = match outcome {
            StatusOutcome::Unknown => return Ok(StatusCode::NOT_FOUND),
            StatusOutcome::Stale { .. } => {
                info!(job_id, status = %name, "status after a final one; ignored");
                return Ok(StatusCode::OK);
            }
            StatusOutcome::Recorded {
                meta,
                attempt,
                hand_on,
            } => (meta, attempt, hand_on),
        };
        let mut job = DeliveryJob::decode(meta.as_slice()).unwrap_or_default();
        if job.job_id.is_empty() {
            job.job_id = job_id.to_string();
            job.channel = channel as i32;
        }
        let lane = Lane::try_from(job.lane).unwrap_or_default();
        self.metrics
            .callbacks
            .get_or_create(&ChannelOutcome {
                lane: lane.name().into(),
                channel: channel.name().into(),
                outcome: name.to_string(),
            })
            .inc();

        let event = self.status_event(&job, reported.state, detail, attempt, provider_id);
        let summary = if detail.is_empty() {
            format!("provider reports {name}")
        } else {
            format!("provider reports {name} ({detail})")
        };
        let id = format!("{job_id}-status-{name}");
        let entry = self
            .entry(&job, AuditStep::Status, summary, id.clone())
            .attr("state", name);
        self.document(&job, entry, event, &id).await?;

        match hand_on {
            HandOn::No => {
                if reported.is_final {
                    let _ = self.ledger.forget_job(job_id).await;
                }
            }
            HandOn::Job(bytes) => {
                let full = DeliveryJob::decode(bytes.as_slice())?;
                let reason = if detail.is_empty() {
                    format!("provider reported {name}")
                } else {
                    format!("provider reported {name} ({detail})")
                };
                let _ = self
                    .ledger
                    .note_attempt(job_id, crate::retry::history_line(attempt, name, detail))
                    .await;
                self.hand_on(&full, attempt, &reason, None).await?;
                self.ledger.handed_on(job_id).await?;
            }
            HandOn::Lost => {
                error!(
                    job_id,
                    "failure reported after the job's data expired; cannot fall back"
                );
                self.ledger.handed_on(job_id).await?;
            }
        }
        Ok(StatusCode::NO_CONTENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_busy_and_undelivered_are_failures_and_final() {
        for (ch, word) in [
            (Channel::Sms, "undelivered"),
            (Channel::Sms, "failed"),
            (Channel::Voice, "busy"),
            (Channel::Voice, "no-answer"),
            (Channel::Voice, "failed"),
        ] {
            let r = parse_status(ch, word).unwrap();
            assert!(r.is_failure && r.is_final, "{word}");
        }
        for (ch, word) in [
            (Channel::Sms, "queued"),
            (Channel::Sms, "sent"),
            (Channel::Voice, "initiated"),
            (Channel::Voice, "ringing"),
            (Channel::Voice, "answered"),
            (Channel::Voice, "in-progress"),
        ] {
            let r = parse_status(ch, word).unwrap();
            assert!(!r.is_failure && !r.is_final, "{word}");
        }
        assert_eq!(
            parse_status(Channel::Sms, "Delivered").unwrap().state,
            DeliveryState::Delivered
        );
        assert!(parse_status(Channel::Voice, "completed").unwrap().is_final);
    }

    #[test]
    fn words_of_the_other_channel_or_unknown_words_are_refused() {
        assert_eq!(parse_status(Channel::Sms, "ringing"), None);
        assert_eq!(parse_status(Channel::Voice, "delivered"), None);
        assert_eq!(parse_status(Channel::Sms, "lost-in-space"), None);
        assert_eq!(DeliveryState::NoAnswer.name(), "no_answer");
    }
}
