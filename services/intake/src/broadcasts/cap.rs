//! The CAP alert a broadcast was started from, kept in intake's keyspace
//! (the broadcast service has no use for it), and the broadcast exported
//! as CAP 1.2: that alert with its latest update's message, or one made
//! from the broadcast's state, with a note of where it stands.

use redis::AsyncCommands;

use super::*;

/// How long the alert is kept: well past any broadcast's run.
const KEPT: Duration = Duration::from_secs(90 * 24 * 3600);

impl Desk {
    fn cap_key(&self, broadcast_id: &str) -> String {
        self.dedupe.key_for(&format!("cap:{broadcast_id}"))
    }

    /// Keeps `xml` (already checked) for `broadcast_id`; an update's
    /// message replaces the kept alert's. A failure only costs the export
    /// its detail, so it is logged, not refused.
    pub(super) async fn keep_cap(&self, broadcast_id: &str, xml: &str, update: bool) {
        if xml.is_empty() {
            return;
        }
        let mut r = self.redis.clone();
        let key = self.cap_key(broadcast_id);
        let kept = if update {
            let earlier: Option<String> = r.get(&key).await.unwrap_or(None);
            match (
                earlier.and_then(|e| herald_cap::parse(e.as_bytes()).ok()),
                herald_cap::parse(xml.as_bytes()),
            ) {
                (Some(mut original), Ok(new)) => {
                    original.info = new.info;
                    herald_cap::write(&original)
                }
                _ => xml.to_string(),
            }
        } else {
            xml.to_string()
        };
        let stored: redis::RedisResult<()> = r.set_ex(&key, kept, KEPT.as_secs()).await;
        if let Err(e) = stored {
            warn!(error = %e, "the broadcast's CAP alert was not kept");
        }
    }

    /// The broadcast as a CAP 1.2 document, for a coordinator.
    pub(crate) async fn cap_export(
        &self,
        broadcast_id: &str,
        credential: &str,
        caller: &str,
    ) -> Result<String, Rejected> {
        let attempt = Attempt::new("export", broadcast_id, "", caller);
        if coordinators::authenticate(&self.cfg.coordinators, credential).is_none() {
            return Err(match self
                .refuse(
                    &attempt,
                    reject(
                        ErrorCode::Unauthorized,
                        "credential",
                        "is not a coordinator credential: only a coordinator may export a broadcast",
                    ),
                )
                .await
                .result
            {
                Some(broadcast_reply::Result::Rejected(r)) => r,
                _ => crate::unavailable(),
            });
        }
        let ask = BroadcastStatusRequest {
            broadcast_id: broadcast_id.to_string(),
            credential: credential.to_string(),
            recipients: false,
        };
        let status = match self
            .bus
            .ask::<_, BroadcastStatusReply>(subjects::BROADCAST_STATUS, &ask, STATUS_WAIT)
            .await
        {
            Ok(BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Status(s)),
            }) => s,
            Ok(BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Rejected(r)),
            }) => return Err(r),
            Ok(_) => return Err(crate::unavailable()),
            Err(e) => {
                warn!(error = %e, "the broadcast service did not answer");
                return Err(crate::unavailable());
            }
        };
        let kept: Option<String> = self
            .redis
            .clone()
            .get(self.cap_key(broadcast_id))
            .await
            .map_err(|e| {
                warn!(error = %e, "the broadcast's CAP alert unreadable");
                crate::unavailable()
            })?;
        Ok(herald_cap::export(&status, kept.as_deref()))
    }
}
