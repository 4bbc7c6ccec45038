//! What people send back, as delivery stored it (`HERALD_INBOUND`), read
//! in full by this service:
//!
//! * `ACK 4821` (or `ACK` alone, when one page to the number waits) by
//!   SMS acknowledges the page with that code ([`crate::ack`]); the sender
//!   is told by SMS what became of it, a wrong or stale code included, so
//!   nobody believes a case is taken that is not.
//! * Anything else that answers a message about a case (delivery matched
//!   it: [`InReplyTo`]) and comes from the case's client is the client
//!   replying: documented in the case's trail (without its words), sent to
//!   intake as `client_replied` with the channel they wrote on (paused
//!   clocks run again; later messages to them about the case use that
//!   channel first), and forwarded to the responsible staff member.
//!
//! Replies to broadcasts are the broadcast service's. Everything else is
//! read and left. A step that fails (intake or Redis away) is retried;
//! every step is idempotent by the message's id.

use std::collections::BTreeMap;

use async_nats::jetstream;
use herald_proto::{
    Message,
    v1::{
        AuditStep, CaseEvent, CaseEventKind, Channel, ClientReply, CommunicationType,
        Confidentiality, InboundMessage, InlineRecipient, NotificationRequest, Priority, Recipient,
        recipient::Target as RecipientTarget,
    },
};
use herald_runtime::{audit::Entry, bus::Disposition};
use tracing::{error, info};

use crate::{
    ACK_REPLY, CLIENT_REPLY, Escalator,
    ack::{Acked, Page},
};

/// What a text asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `ACK`, `ACK 4821`, `ack: 4821`, `Ack #4821`.
    Ack(Option<String>),
    /// Anything else.
    Words,
}

/// Reads a text as a command.
pub fn command(text: &str) -> Command {
    let t = text.trim();
    let Some(head) = t.get(..3) else {
        return Command::Words;
    };
    if !head.eq_ignore_ascii_case("ack") {
        return Command::Words;
    }
    let rest = t[3..].trim_start_matches([' ', ':', '#', '-', '.', '\t']);
    let rest = rest.trim_end_matches(['.', '!', ' ']);
    if rest.is_empty() {
        return Command::Ack(None);
    }
    if rest.len() <= 8 && rest.bytes().all(|b| b.is_ascii_digit()) {
        return Command::Ack(Some(rest.to_string()));
    }
    // "acknowledged, thanks": words, not a command.
    Command::Words
}

/// A short id of a message for event and record ids (which hold no
/// personal data, and a Message-ID may).
fn short_id(message_id: &str) -> String {
    let mut id = herald_directory::credentials::sha256_hex(message_id);
    id.truncate(24);
    id
}

impl Escalator {
    pub(crate) async fn on_inbound(&self, msg: jetstream::Message) -> Disposition {
        let Ok(inbound) = InboundMessage::decode(msg.payload.clone()) else {
            error!(subject = %msg.subject, "undecodable inbound message dropped");
            return Disposition::Reject;
        };
        match self.handle_inbound(&inbound).await {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                error!(error = %e, "inbound message not handled yet; trying again");
                Disposition::Retry(std::time::Duration::from_secs(2))
            }
        }
    }

    async fn handle_inbound(&self, m: &InboundMessage) -> anyhow::Result<()> {
        let channel = Channel::try_from(m.channel).unwrap_or_default();
        // A calendar program's answer to an invitation is the attendee's
        // answer, not a message to the case.
        if let Some(reply) = crate::imip::read(&m.calendar) {
            return self.answer_by_calendar(m, &reply).await;
        }
        if channel == Channel::Sms
            && let Command::Ack(code) = command(&m.text)
        {
            return self.ack_by_sms(m, code).await;
        }
        let Some(to) = &m.in_reply_to else {
            return Ok(());
        };
        if to.case_id.is_empty() || !to.broadcast_id.is_empty() {
            return Ok(());
        }
        self.client_replied(m, channel, &to.case_id, &to.contact_id)
            .await
    }

    /// `ACK [code]` from a number: the page it names, acknowledged, and
    /// the sender told.
    async fn ack_by_sms(&self, m: &InboundMessage, code: Option<String>) -> anyhow::Result<()> {
        let now = herald_runtime::clock::millis(self.clock.now());
        let pages = self.acks.pages(&m.from, now).await?;
        let chosen: Result<(String, Page), String> = match &code {
            Some(code) => pages
                .iter()
                .find(|(c, _)| c == code)
                .cloned()
                .ok_or_else(|| {
                    format!("Code {code} is not one Herald sent to this number, or it has expired. Nothing was acknowledged.")
                }),
            None => {
                let mut waiting = Vec::new();
                for (c, p) in &pages {
                    if self.still_waits(p).await? {
                        waiting.push((c.clone(), p.clone()));
                    }
                }
                match waiting.len() {
                    1 => Ok(waiting.remove(0)),
                    0 => Err("No case is waiting for your acknowledgement. Nothing was acknowledged.".into()),
                    n => Err(format!(
                        "{n} cases are waiting for you. Reply ACK with the code of the one you take: {}.",
                        waiting
                            .iter()
                            .map(|(c, _)| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
        };
        let (text, outcome) = match chosen {
            Ok((code, page)) => {
                let outcome = self
                    .acknowledge(&page, &format!("SMS reply (code {code})"))
                    .await?;
                (crate::ack::words(&outcome), Some(outcome))
            }
            Err(text) => (text, None),
        };
        self.count_ack("sms", outcome.as_ref());
        info!(
            acknowledged = matches!(outcome, Some(Acked::Done { .. })),
            "acknowledgement by SMS answered"
        );
        self.tell_sender(m, &text).await
    }

    /// Whether the escalation `page` belongs to still waits for someone.
    async fn still_waits(&self, page: &Page) -> anyhow::Result<bool> {
        let Some(stored) = self.store.get(&page.case_id).await? else {
            return Ok(false);
        };
        let st = stored.state;
        Ok(!st.resolved
            && st
                .current
                .as_ref()
                .is_some_and(|e| e.seq == page.seq && e.status != crate::machine::Status::Stopped))
    }

    /// An SMS back to whoever wrote, on the number they wrote from.
    async fn tell_sender(&self, m: &InboundMessage, text: &str) -> anyhow::Result<()> {
        let req = NotificationRequest {
            idempotency_key: format!("ack-reply:{}", short_id(&m.message_id)),
            communication_type: CommunicationType::EscalationNotice as i32,
            priority: Priority::High as i32,
            recipients: vec![Recipient {
                target: Some(RecipientTarget::Inline(InlineRecipient {
                    phone: m.from.clone(),
                    consent_sms: true,
                    preferred_channel: Channel::Sms as i32,
                    ..Default::default()
                })),
            }],
            template_id: ACK_REPLY.into(),
            params: BTreeMap::from([("message".to_string(), text.to_string())]),
            channel_override: vec![Channel::Sms as i32],
            requester: "escalation".into(),
            ..Default::default()
        };
        if let Err(r) = self.submit(&req).await? {
            error!(field = %r.field, "the answer to an acknowledgement was refused");
        }
        Ok(())
    }

    /// The client's reply to a message about their case.
    async fn client_replied(
        &self,
        m: &InboundMessage,
        channel: Channel,
        case_id: &str,
        contact_id: &str,
    ) -> anyhow::Result<()> {
        let Some(stored) = self.store.get(case_id).await? else {
            return Ok(());
        };
        let st = stored.state;
        if contact_id.is_empty() || st.client != contact_id {
            // Staff answering their own alert, or someone the case does
            // not name: not the client's reply.
            return Ok(());
        }
        let id = short_id(&m.message_id);
        let reference = st.reference(case_id);
        let recorded = if st.resolved {
            "the case is resolved, so its clocks stay as they are".to_string()
        } else {
            let event = CaseEvent {
                event_id: format!("reply-{id}"),
                case_id: case_id.to_string(),
                kind: CaseEventKind::ClientReplied as i32,
                actor: format!("contact:{contact_id}"),
                reason: format!("the client replied by {}", channel.name()),
                reply: Some(ClientReply {
                    channel: channel as i32,
                    contact_id: contact_id.to_string(),
                    message_id: m.message_id.clone(),
                }),
                ..Default::default()
            };
            match self.submit_case(&event).await? {
                Ok(_) => "recorded as the client's reply".to_string(),
                Err(why) => format!("not recorded as a case event: {why}"),
            }
        };
        let mut forwarded = "no responsible staff member to forward it to".to_string();
        if !st.staff.is_empty() {
            let client = self.directory.get(contact_id).await?;
            let req = NotificationRequest {
                idempotency_key: format!("reply:{case_id}:{id}:{}", st.staff),
                communication_type: CommunicationType::ServiceUpdate as i32,
                priority: if st.priority == 0 {
                    Priority::Normal as i32
                } else {
                    st.priority
                },
                // The client's own words: kept off channels that would
                // carry them in clear.
                confidentiality: Confidentiality::Confidential as i32,
                recipients: vec![Recipient::contact(&st.staff)],
                template_id: CLIENT_REPLY.into(),
                params: BTreeMap::from([
                    ("reference".to_string(), reference.clone()),
                    (
                        "client_name".to_string(),
                        client
                            .map(|c| c.name)
                            .unwrap_or_else(|| contact_id.to_string()),
                    ),
                    ("channel".to_string(), channel.name().to_string()),
                    ("subject".to_string(), m.subject.clone()),
                    ("reply".to_string(), m.text.clone()),
                ]),
                case_id: case_id.to_string(),
                requester: "escalation".into(),
                responsible_staff: st.staff.clone(),
                ..Default::default()
            };
            forwarded = match self.submit(&req).await? {
                Ok(_) => format!("forwarded to {}", st.staff),
                Err(r) => format!("not forwarded to {}: {} {}", st.staff, r.field, r.message),
            };
        }
        self.metrics
            .replies
            .get_or_create(&crate::metrics::ChannelLabel {
                channel: channel.name().into(),
            })
            .inc();
        self.audit(
            Entry {
                case_id: case_id.to_string(),
                contact_id: contact_id.to_string(),
                channel,
                responsible_staff: st.staff.clone(),
                actor: Some(format!("contact:{contact_id}")),
                record_id: Some(format!("reply-{case_id}-{id}")),
                ..Entry::new(
                    AuditStep::ReplyReceived,
                    format!(
                        "the client replied by {} to case {reference}: {recorded}; {forwarded}",
                        channel.name()
                    ),
                )
            }
            .attr(
                "in_reply_to",
                m.in_reply_to
                    .as_ref()
                    .map(|t| t.notification_id.as_str())
                    .unwrap_or_default(),
            ),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_are_read_the_ways_people_type_them() {
        for (text, want) in [
            ("ACK 4821", Command::Ack(Some("4821".into()))),
            ("ack4821", Command::Ack(Some("4821".into()))),
            ("Ack: 4821.", Command::Ack(Some("4821".into()))),
            (" ACK #0042 ", Command::Ack(Some("0042".into()))),
            ("ACK", Command::Ack(None)),
            ("ack!", Command::Ack(None)),
            ("acknowledged, thanks", Command::Words),
            ("Hello, about my invoice", Command::Words),
            ("", Command::Words),
            ("ok", Command::Words),
            ("é", Command::Words),
        ] {
            assert_eq!(command(text), want, "{text:?}");
        }
    }

    #[test]
    fn record_ids_carry_no_address() {
        let id = short_id("email:<CAF=abc@mail.example.org>");
        assert_eq!(id.len(), 24);
        assert!(!id.contains('@'));
        assert_eq!(id, short_id("email:<CAF=abc@mail.example.org>"));
    }
}
