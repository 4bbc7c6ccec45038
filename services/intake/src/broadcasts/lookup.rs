//! What an update, a cancel or a start must know first: whether the
//! broadcast it names exists and where it stands (the broadcast service
//! owns that; intake's own record of the starts it accepted fills in), and
//! whether everyone an audience names is in the directory.

use super::*;

impl Desk {
    /// The state of the broadcast an update or cancel names (its id
    /// already checked), or the (documented) refusal when it names none.
    pub(super) async fn existing(
        &self,
        attempt: &Attempt<'_>,
        credential: &str,
    ) -> Result<BroadcastState, BroadcastReply> {
        match self.running(attempt.broadcast_id, credential).await {
            Ok(state) => Ok(state),
            Err(r) => Err(self.refuse(attempt, r).await),
        }
    }

    pub(super) fn claim_key(&self, broadcast_id: &str) -> String {
        self.dedupe
            .key_for(&format!("broadcast-claim:{broadcast_id}"))
    }

    /// The state of a broadcast that was started, or why an update or
    /// cancel cannot name it. The broadcast service owns the state and is
    /// asked; intake's own record of the starts it accepted answers for a
    /// broadcast the service has not read yet, and while the service does
    /// not answer, so that a cancel still stops delivery at once.
    pub(super) async fn running(
        &self,
        broadcast_id: &str,
        credential: &str,
    ) -> Result<BroadcastState, Rejected> {
        let ask = BroadcastStatusRequest {
            broadcast_id: broadcast_id.to_string(),
            credential: credential.to_string(),
            recipients: false,
        };
        let known = match self
            .bus
            .ask::<_, BroadcastStatusReply>(subjects::BROADCAST_STATUS, &ask, STATUS_WAIT)
            .await
        {
            Ok(BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Status(s)),
            }) => return Ok(BroadcastState::try_from(s.state).unwrap_or_default()),
            Ok(BroadcastStatusReply {
                result: Some(broadcast_status_reply::Result::Rejected(r)),
            }) if r.code == ErrorCode::NotFound as i32 => "not read yet",
            Ok(other) => {
                warn!(answer = ?other.result.map(|_| ()), "the broadcast service refused a status query");
                "refused"
            }
            Err(e) => {
                warn!(error = %e, "the broadcast service did not answer");
                "not answering"
            }
        };
        match redis::cmd("EXISTS")
            .arg(self.claim_key(broadcast_id))
            .query_async::<bool>(&mut self.redis.clone())
            .await
        {
            // Accepted here; the broadcast service acts on the command
            // once it reads it.
            Ok(true) => Ok(BroadcastState::Starting),
            Ok(false) => Err(reject(
                ErrorCode::NotFound,
                "broadcast_id",
                "no broadcast with this id was started",
            )),
            Err(e) => {
                error!(error = %e, broadcast_service = known, "broadcast claim unreadable");
                Err(unavailable())
            }
        }
    }

    /// Every contact, group, organisation and role the audience names
    /// exists, and together they stay within `max_recipients`.
    pub(super) async fn check_audience(&self, audience: Option<&Audience>) -> Result<(), Rejected> {
        let a = audience.cloned().unwrap_or_default();
        let lookup = |e: herald_directory::contacts::DirectoryError| {
            error!(error = %e, "directory lookup failed");
            unavailable()
        };
        let mut people: BTreeSet<String> = BTreeSet::new();
        let found = self
            .directory
            .get_many(&a.contact_ids)
            .await
            .map_err(lookup)?;
        for (i, (id, c)) in a.contact_ids.iter().zip(found).enumerate() {
            if c.is_none() {
                return Err(reject(
                    ErrorCode::UnknownContact,
                    format!("audience.contact_ids[{i}]"),
                    format!("no contact with id {id:?} in the directory"),
                ));
            }
            people.insert(id.clone());
        }
        let groups = self.groups.get_many(&a.group_ids).await.map_err(lookup)?;
        for (i, (id, g)) in a.group_ids.iter().zip(groups).enumerate() {
            let Some(g) = g else {
                return Err(reject(
                    ErrorCode::NotFound,
                    format!("audience.group_ids[{i}]"),
                    format!("no group with id {id:?} (herald groups list)"),
                ));
            };
            people.extend(g.members);
        }
        // The organisation and role sets may still name people who moved
        // (the broadcast service checks each), so they only add a largest
        // possible count, not people.
        let mut largest = people.len() as u64;
        for (field, by, values) in [
            ("organisations", MemberOf::Organisation, &a.organisations),
            ("roles", MemberOf::Role, &a.roles),
        ] {
            for (i, v) in values.iter().enumerate() {
                let n = self.directory.count_in(by, v).await.map_err(lookup)?;
                if n == 0 {
                    return Err(reject(
                        ErrorCode::NotFound,
                        format!("audience.{field}[{i}]"),
                        format!(
                            "no contact in the directory has {} {v:?}",
                            match by {
                                MemberOf::Organisation => "organisation",
                                MemberOf::Role => "role",
                            }
                        ),
                    ));
                }
                largest += n;
            }
        }
        // Only a sure excess is refused here: the people named directly
        // and through groups, each once. Beyond that the broadcast service
        // counts exactly and refuses to start (documented in the trail).
        if people.len() > self.cfg.max_recipients {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "audience",
                format!(
                    "reaches more than {} people (broadcast.max_recipients)",
                    self.cfg.max_recipients
                ),
            ));
        }
        if largest as usize > self.cfg.max_recipients {
            info!(
                largest,
                "audience may exceed broadcast.max_recipients; counted when resolved"
            );
        }
        Ok(())
    }
}
