//! How recipients confirm, on the broadcast service's HTTP port:
//!
//! * `GET /v1/broadcast/confirm?b=&r=&s=`: the link in the email opens a
//!   page with one button; pressing it (`POST` to the same address)
//!   confirms. A bare `GET` confirms nothing, because mail scanners open
//!   links before the person does, and a scanner must not stop the calls
//!   to someone who has not read the message.
//! * `POST /v1/broadcast/key?b=&r=&s=&job=`: the voice provider reports a
//!   key pressed during the call (`Digits`). Any key confirms: an answering
//!   machine presses none.
//! * `POST /v1/broadcast/sms`: the SMS provider reports a reply (`From`,
//!   `Body`); YES (or OUI, SI, JA, 1, OK, Y) confirms every running
//!   broadcast that texted that number. The same replies posted to
//!   delivery's inbound webhook (one URL for every reply to a number)
//!   reach this service through `HERALD_INBOUND` and confirm the same way.
//!
//! Links carry their own signature ([`crate::link`]). Provider callbacks
//! must also carry the provider's signature (`X-Twilio-Signature` or
//! `X-Signature`, keyed with `delivery.provider_token` or, for a shared
//! key, `delivery.provider_signing_key`, over the public URL with or
//! without its port and the posted parameters: [`herald_content::signature`]).
//! Anything that fails a check gets 403 and changes nothing.

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use herald_durable::stop::Stop;
use herald_proto::Message;
use herald_proto::broadcasts;
use herald_proto::v1::{AuditStep, BroadcastState, Channel, InboundMessage};
use herald_runtime::audit::Entry;
use herald_runtime::bus::Disposition;
use tracing::{error, info, warn};

use crate::{
    Broadcasts,
    cycles::EVERYONE_CONFIRMED,
    link::{Kind, Signed},
    metrics::{ChannelLabel, EventLabel},
    state::Confirmed,
};

/// Replies that confirm by SMS, compared in upper case.
const AFFIRMATIVE: [&str; 9] = ["YES", "Y", "1", "OK", "OUI", "SI", "SÍ", "JA", "CONFIRM"];

pub(crate) fn routes(broadcasts: Broadcasts) -> Router {
    Router::new()
        .route(Kind::Confirm.path(), get(link_page).post(link_confirm))
        .route(Kind::Key.path(), post(key_press))
        .route("/v1/broadcast/sms", post(sms_reply))
        .with_state(broadcasts)
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Broadcasts {
    fn refused(&self, endpoint: &str, why: &str) -> Response {
        self.metrics
            .refused
            .get_or_create(&EventLabel {
                event: endpoint.into(),
            })
            .inc();
        warn!(endpoint, why, "confirmation refused");
        (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
    }

    /// The broadcast and recipient an address names, if its signature holds.
    fn signed(&self, kind: Kind, uri: &Uri) -> Option<Signed> {
        self.signer.read(kind, uri.query().unwrap_or_default())
    }

    /// The posted parameters, if the provider's signature over them holds.
    fn provider_signed(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let url = self
            .signer
            .public(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        self.provider_keys.check(&url, headers, body)
    }
}

impl Broadcasts {
    /// Records a confirmation, stops the person's further calls and SMS,
    /// documents it, and ends the broadcast if everyone has confirmed.
    pub(crate) async fn confirm(
        &self,
        id: &str,
        recipient: usize,
        via: Channel,
        how: &str,
    ) -> anyhow::Result<Confirmed> {
        let outcome = self
            .store
            .confirm(id, recipient, via, self.clock.now())
            .await?;
        if matches!(outcome, Confirmed::New { .. } | Confirmed::Already) {
            // Again on a repeat: the first time may have stopped short.
            Stop::key(
                broadcasts::recipient_cancel_key(id, recipient),
                format!("recipient confirmed receipt by {how}"),
            )
            .send(&self.bus)
            .await?;
        }
        if let Confirmed::New {
            confirmed,
            recipients,
        } = outcome
        {
            let contact = self.store.person(id, recipient).await?.unwrap_or_default();
            let meta = self.store.meta(id).await?.unwrap_or_default();
            self.metrics
                .confirmations
                .get_or_create(&ChannelLabel {
                    channel: via.name().into(),
                })
                .inc();
            self.audit(Entry {
                contact_id: contact.clone(),
                channel: via,
                actor: Some(format!("contact:{contact}")),
                record_id: Some(format!("{id}-r{recipient}-confirmed")),
                ..self.entry(
                    id,
                    &meta.case_id,
                    AuditStep::Confirmed,
                    format!(
                        "recipient r{recipient} confirmed receipt by {how} ({confirmed} of {recipients})"
                    ),
                )
            })
            .await;
            info!(broadcast_id = id, recipient, via = via.name(), "confirmed");
            if confirmed >= recipients {
                self.end(id, BroadcastState::Finished, EVERYONE_CONFIRMED, None)
                    .await?;
            }
        }
        Ok(outcome)
    }
}

fn page(code: StatusCode, title: &str, text: &str, button: bool) -> Response {
    herald_runtime::public::link_page(code, title, text, button.then_some("Confirm receipt"))
}

fn twiml(text: &str) -> Response {
    herald_runtime::public::say(herald_content::twiml::say(text, ""))
}

async fn link_page(State(s): State<Broadcasts>, uri: Uri) -> Response {
    if s.signed(Kind::Confirm, &uri).is_none() {
        return s.refused("link", "this confirmation link is not valid");
    }
    page(
        StatusCode::OK,
        "Confirm receipt",
        "Press the button to confirm that you have received the emergency message.",
        true,
    )
}

async fn link_confirm(State(s): State<Broadcasts>, uri: Uri) -> Response {
    let Some(signed) = s.signed(Kind::Confirm, &uri) else {
        return s.refused("link", "this confirmation link is not valid");
    };
    match s
        .confirm(
            &signed.broadcast_id,
            signed.recipient,
            Channel::Email,
            "email link",
        )
        .await
    {
        Ok(Confirmed::New { .. } | Confirmed::Already) => page(
            StatusCode::OK,
            "Thank you",
            "Your confirmation is recorded. You will not be called about this message again.",
            false,
        ),
        Ok(Confirmed::Ended) => page(
            StatusCode::GONE,
            "This alert has ended",
            "No confirmation is needed any more.",
            false,
        ),
        Ok(Confirmed::Unknown) => page(
            StatusCode::NOT_FOUND,
            "Unknown alert",
            "This alert is not known.",
            false,
        ),
        Err(e) => {
            error!(error = %e, "confirmation not recorded");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Your confirmation could not be recorded just now. Please press the button again in a moment.",
                true,
            )
        }
    }
}

async fn key_press(
    State(s): State<Broadcasts>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match s.provider_signed(&uri, &headers, &body) {
        Ok(p) => p,
        Err(why) => return s.refused("key", &why),
    };
    let Some(signed) = s.signed(Kind::Key, &uri) else {
        return s.refused("key", "this key-press address is not valid");
    };
    if field(&params, "Digits").is_none_or(|d| d.trim().is_empty()) {
        return twiml("No key was pressed.");
    }
    let how = if signed.job.is_empty() {
        "key press".to_string()
    } else {
        format!("key press on call {}", signed.job)
    };
    match s
        .confirm(&signed.broadcast_id, signed.recipient, Channel::Voice, &how)
        .await
    {
        Ok(Confirmed::New { .. } | Confirmed::Already) => {
            twiml("Thank you. Your confirmation is recorded. Goodbye.")
        }
        Ok(Confirmed::Ended | Confirmed::Unknown) => {
            twiml("This alert has ended. No confirmation is needed.")
        }
        Err(e) => {
            error!(error = %e, "confirmation not recorded; the provider will repeat it");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

async fn sms_reply(
    State(s): State<Broadcasts>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match s.provider_signed(&uri, &headers, &body) {
        Ok(p) => p,
        Err(why) => return s.refused("sms", &why),
    };
    let empty = || {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml")],
            "<Response/>",
        )
            .into_response()
    };
    let (Some(from), Some(text)) = (field(&params, "From"), field(&params, "Body")) else {
        return (StatusCode::BAD_REQUEST, "From and Body are required\n").into_response();
    };
    match s.confirm_by_sms(from, text).await {
        Ok(_) => empty(),
        Err(e) => {
            error!(error = %e, "confirmation not recorded; the provider will repeat it");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

/// Whether a text says yes.
pub(crate) fn affirmative(text: &str) -> bool {
    let word = text.trim().trim_end_matches(['.', '!']).to_uppercase();
    AFFIRMATIVE.contains(&word.as_str())
}

impl Broadcasts {
    /// A text from `from`: a yes confirms every running broadcast that
    /// texted that number. Returns how many it confirmed.
    pub(crate) async fn confirm_by_sms(&self, from: &str, text: &str) -> anyhow::Result<usize> {
        if !affirmative(text) {
            return Ok(0);
        }
        let running = self.store.by_phone(from).await?;
        for (broadcast_id, recipient) in &running {
            self.confirm(broadcast_id, *recipient, Channel::Sms, "SMS reply")
                .await?;
        }
        Ok(running.len())
    }

    /// A reply delivery stored (`HERALD_INBOUND`): SMS replies confirm
    /// as they do when posted here directly.
    pub(crate) async fn inbound(&self, msg: async_nats::jetstream::Message) -> Disposition {
        let Ok(m) = InboundMessage::decode(msg.payload.clone()) else {
            error!(subject = %msg.subject, "undecodable inbound message dropped");
            return Disposition::Reject;
        };
        if m.channel != Channel::Sms as i32 {
            return Disposition::Ack;
        }
        match self.confirm_by_sms(&m.from, &m.text).await {
            Ok(_) => Disposition::Ack,
            Err(e) => {
                error!(error = %e, "confirmation by SMS not recorded yet; trying again");
                Disposition::Retry(std::time::Duration::from_secs(2))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_that_confirm() {
        for w in ["YES", "Y", "OUI", "SÍ", "1", " yes. ", "Oui!"] {
            assert!(affirmative(w), "{w}");
        }
        assert!(!affirmative("NO"));
        assert!(!affirmative("ACK 4821"));
    }
}
