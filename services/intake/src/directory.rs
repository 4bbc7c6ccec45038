//! Intake's directory desk (`herald.v1.intake.directory`). Intake owns the
//! contact directory and its groups: the command line (and any system
//! that keeps people's details) imports, shows, lists and removes them
//! here, never in Redis. Every record is checked like a request; one bad
//! record refuses the whole import, naming it and the field.

use std::collections::HashSet;

use herald_directory::{
    contacts::{Contact, Directory, DirectoryError, Verification},
    groups::{Group, Groups},
};
use herald_durable::stop::Stop;
use herald_proto::{
    Message,
    v1::{
        self, ContactList, DirectoryReply, DirectoryRequest, ErrorCode, GroupList, IdList,
        Rejected, directory_reply, directory_request::Op,
    },
};
use herald_runtime::bus::Bus;
use std::time::Duration;
use tracing::{error, info, warn};

/// The most records one request may carry (a larger import is sent in
/// parts, which the command line does).
pub const MAX_RECORDS: usize = 1000;

#[derive(Clone)]
pub(crate) struct DirectoryDesk {
    contacts: Directory,
    groups: Groups,
    /// For the stops a withdrawn consent asks of delivery.
    bus: Bus,
    stop_wait: Duration,
}

impl DirectoryDesk {
    pub(crate) fn new(
        contacts: Directory,
        groups: Groups,
        bus: Bus,
        stop_wait: Duration,
    ) -> DirectoryDesk {
        DirectoryDesk {
            contacts,
            groups,
            bus,
            stop_wait,
        }
    }

    /// Answers one directory request from `caller` (as NATS verified it).
    pub(crate) async fn answer(&self, payload: &[u8], caller: &str) -> DirectoryReply {
        let mut cleared = Vec::new();
        let result = match read(payload) {
            Err(r) => Err(r),
            Ok((order, requester)) => {
                let who = match requester.trim() {
                    "" => caller.to_string(),
                    said => format!("{said} (via {caller})"),
                };
                self.apply(order, &who, &mut cleared).await
            }
        };
        DirectoryReply {
            result: Some(result.unwrap_or_else(directory_reply::Result::Rejected)),
            verification_cleared: cleared,
        }
    }

    async fn apply(
        &self,
        order: Order,
        requester: &str,
        cleared: &mut Vec<String>,
    ) -> Result<directory_reply::Result, Rejected> {
        use directory_reply::Result as R;
        let unavailable = |e: DirectoryError| match e {
            // The change would leave a record that does not pass its checks
            // (one stored before a check existed, say): that record's
            // field, not an outage.
            DirectoryError::Invalid { id, field, reason } => Rejected::new(
                ErrorCode::InvalidArgument,
                format!("contact.{field}"),
                format!("({id}) {reason}; fix the record (herald contacts import) first"),
            ),
            e => {
                error!(error = %e, "directory unreadable");
                Rejected::new(
                    ErrorCode::Unavailable,
                    "",
                    "the directory cannot be reached just now; ask again",
                )
            }
        };
        match order {
            Order::PutContacts(contacts) => {
                *cleared = self
                    .contacts
                    .put_all(&contacts)
                    .await
                    .map_err(unavailable)?;
                if !cleared.is_empty() {
                    // A new address was never checked: sensitive content
                    // waits until someone verifies the person again.
                    warn!(
                        contacts = %cleared.join(","),
                        requester,
                        "email or phone changed: identity verification cleared"
                    );
                }
                info!(count = contacts.len(), requester, "contacts imported");
                Ok(R::Changed(contacts.len() as u32))
            }
            Order::GiveConsent { id, with, source } => {
                self.known_third_party(&with).await?;
                let (contact, new) = self
                    .contacts
                    .give_consent(&id, &with, &source)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| not_found("give_consent.id", "contact", &id))?;
                info!(contact = %id, with, new, requester, "consent to share recorded");
                Ok(R::Contacts(ContactList {
                    contacts: vec![v1::Contact::from(&contact)],
                }))
            }
            Order::WithdrawConsent { id, with } => {
                let (contact, found) = self
                    .contacts
                    .withdraw_consent(&id, &with)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| not_found("withdraw_consent.id", "contact", &id))?;
                if !found {
                    return Err(Rejected::new(
                        ErrorCode::NotFound,
                        "withdraw_consent.with",
                        format!("{id} has no consent on record to share with {with}"),
                    ));
                }
                // Recorded first, so nothing new is accepted on it; then
                // whatever is queued on it stops, and the answer comes only
                // once nothing carrying the key can still go out.
                let key = herald_proto::cancel_keys::consent_key(&id, &with);
                Stop::key(
                    key,
                    format!("{id} withdrew consent to share with {with} ({requester})"),
                )
                .and_wait(self.stop_wait)
                .send(&self.bus)
                .await
                .map_err(|e| {
                    error!(error = %e, "delivery could not record the stop of a withdrawn consent");
                    Rejected::new(
                        ErrorCode::Unavailable,
                        "",
                        "the consent is withdrawn but queued sends could not be stopped yet; \
                         withdraw it again",
                    )
                })?;
                info!(contact = %id, with, requester, "consent to share withdrawn");
                Ok(R::Contacts(ContactList {
                    contacts: vec![v1::Contact::from(&contact)],
                }))
            }
            Order::VerifyContact { id, by, method } => {
                // The verifier is someone the directory knows, so the
                // record names a person, not a word.
                if self.contacts.get(&by).await.map_err(unavailable)?.is_none() {
                    return Err(Rejected::new(
                        ErrorCode::UnknownContact,
                        "verify_contact.by",
                        format!("no contact with id {by:?}: the verifier must be in the directory"),
                    ));
                }
                let verification = Verification {
                    by,
                    method,
                    at: chrono::Utc::now(),
                };
                let verified = self
                    .contacts
                    .verify(&id, verification)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| not_found("verify_contact.id", "contact", &id))?;
                info!(
                    contact = %verified.id,
                    requester,
                    "identity verification recorded"
                );
                Ok(R::Contacts(ContactList {
                    contacts: vec![v1::Contact::from(&verified)],
                }))
            }
            Order::PutGroups(groups) => {
                let unknown = Groups::unknown_members(&self.contacts, &groups)
                    .await
                    .map_err(unavailable)?;
                if let Some(first) = unknown.first() {
                    return Err(Rejected::new(
                        ErrorCode::UnknownContact,
                        first.split(':').next().unwrap_or("groups"),
                        format!("{} (import the contacts first)", unknown.join("; ")),
                    ));
                }
                self.groups.put_all(&groups).await.map_err(unavailable)?;
                info!(count = groups.len(), requester, "groups imported");
                Ok(R::Changed(groups.len() as u32))
            }
            Order::GetContact(id) => {
                let found = self.contacts.get(&id).await.map_err(unavailable)?;
                let c = found.ok_or_else(|| not_found("get_contact", "contact", &id))?;
                Ok(R::Contacts(ContactList {
                    contacts: vec![v1::Contact::from(&c)],
                }))
            }
            Order::GetGroup(id) => {
                let found = self.groups.get(&id).await.map_err(unavailable)?;
                let g = found.ok_or_else(|| not_found("get_group", "group", &id))?;
                Ok(R::Groups(GroupList {
                    groups: vec![v1::Group::from(&g)],
                }))
            }
            Order::ListContacts => Ok(R::Ids(IdList {
                ids: self.contacts.ids().await.map_err(unavailable)?,
            })),
            Order::ListGroups => {
                let ids = self.groups.ids().await.map_err(unavailable)?;
                let groups = self.groups.get_many(&ids).await.map_err(unavailable)?;
                Ok(R::Groups(GroupList {
                    groups: groups.iter().flatten().map(v1::Group::from).collect(),
                }))
            }
            Order::RemoveContact(id) => {
                if !self.contacts.remove(&id).await.map_err(unavailable)? {
                    return Err(not_found("remove_contact", "contact", &id));
                }
                info!(requester, "contact removed");
                Ok(R::Changed(1))
            }
            Order::RemoveGroup(id) => {
                if !self.groups.remove(&id).await.map_err(unavailable)? {
                    return Err(not_found("remove_group", "group", &id));
                }
                info!(requester, "group removed");
                Ok(R::Changed(1))
            }
        }
    }
}

impl DirectoryDesk {
    /// A consent names a contact the directory knows (a category needs no
    /// contact yet).
    async fn known_third_party(&self, with: &str) -> Result<(), Rejected> {
        if with.starts_with("category:") {
            return Ok(());
        }
        match self.contacts.get(with).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Rejected::new(
                ErrorCode::UnknownContact,
                "give_consent.with",
                format!(
                    "no contact with id {with:?}: import the third party first, or name a category:<name>"
                ),
            )),
            Err(e) => {
                error!(error = %e, "directory unreadable");
                Err(Rejected::new(
                    ErrorCode::Unavailable,
                    "",
                    "the directory cannot be reached just now; ask again",
                ))
            }
        }
    }
}

/// What a directory request asks, decoded and with the records of an
/// import checked: everything that can be refused before the directory is
/// read.
#[derive(Debug)]
pub enum Order {
    PutContacts(Vec<Contact>),
    PutGroups(Vec<Group>),
    GetContact(String),
    GetGroup(String),
    ListContacts,
    ListGroups,
    RemoveContact(String),
    RemoveGroup(String),
    VerifyContact {
        id: String,
        by: String,
        method: String,
    },
    GiveConsent {
        id: String,
        with: String,
        source: String,
    },
    WithdrawConsent {
        id: String,
        with: String,
    },
}

/// Reads a request on `herald.v1.intake.directory`: what it asks, and who
/// asks (for the log). An undecodable payload is refused as a whole,
/// naming no field.
pub fn read(payload: &[u8]) -> Result<(Order, String), Rejected> {
    let req = DirectoryRequest::decode(payload).map_err(|e| {
        Rejected::new(
            ErrorCode::Undecodable,
            "",
            format!("not a herald.v1.DirectoryRequest: {e}"),
        )
    })?;
    let order = match req.op {
        None => {
            return Err(Rejected::new(
                ErrorCode::InvalidArgument,
                "op",
                "name what to do (put_contacts, get_contact, …)",
            ));
        }
        Some(Op::PutContacts(list)) => Order::PutContacts(checked(
            list.contacts,
            "contacts",
            Contact::problems,
            |c| &c.id,
        )?),
        Some(Op::PutGroups(list)) => {
            Order::PutGroups(checked(list.groups, "groups", Group::problems, |g| &g.id)?)
        }
        Some(Op::GetContact(id)) => Order::GetContact(id),
        Some(Op::GetGroup(id)) => Order::GetGroup(id),
        Some(Op::ListContacts(_)) => Order::ListContacts,
        Some(Op::ListGroups(_)) => Order::ListGroups,
        Some(Op::RemoveContact(id)) => Order::RemoveContact(id),
        Some(Op::RemoveGroup(id)) => Order::RemoveGroup(id),
        Some(Op::GiveConsent(c)) => {
            let with = consent_with(&c.with, "give_consent.with")?;
            if let Err(why) = herald_directory::contacts::one_line(&c.source) {
                return Err(Rejected::new(
                    ErrorCode::InvalidArgument,
                    "give_consent.source",
                    format!("{why}: say where the consent comes from (a signed form, a call)"),
                ));
            }
            Order::GiveConsent {
                id: c.id,
                with,
                source: c.source.trim().to_string(),
            }
        }
        Some(Op::WithdrawConsent(c)) => Order::WithdrawConsent {
            with: consent_with(&c.with, "withdraw_consent.with")?,
            id: c.id,
        },
        Some(Op::VerifyContact(v)) => {
            let method = v.method.trim().to_string();
            let check = Verification {
                by: v.by.trim().to_string(),
                method,
                at: chrono::Utc::now(),
            };
            if let Some((field, reason)) = check.problems().into_iter().next() {
                return Err(Rejected::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "verify_contact.{}",
                        field.trim_start_matches("verification.")
                    ),
                    reason,
                ));
            }
            Order::VerifyContact {
                id: v.id,
                by: check.by,
                method: check.method,
            }
        }
    };
    Ok((order, req.requester))
}

/// Whom a consent names, checked.
fn consent_with(with: &str, field: &str) -> Result<String, Rejected> {
    let with = with.trim();
    herald_directory::contacts::check_sharing_with(with)
        .map_err(|why| Rejected::new(ErrorCode::InvalidArgument, field, why))?;
    Ok(with.to_string())
}

fn not_found(field: &str, what: &str, id: &str) -> Rejected {
    Rejected::new(
        ErrorCode::NotFound,
        field,
        format!("no {what} with id {id:?}"),
    )
}

/// The records of an import, each checked and each id once; the first
/// problem refuses the import, named `<key>[<i>].<field>`.
fn checked<W, T>(
    records: Vec<W>,
    key: &str,
    problems: fn(&T) -> Vec<(String, String)>,
    id: fn(&T) -> &String,
) -> Result<Vec<T>, Rejected>
where
    T: From<W>,
{
    if records.is_empty() {
        return Err(Rejected::new(
            ErrorCode::InvalidArgument,
            key,
            "is empty: nothing to import",
        ));
    }
    if records.len() > MAX_RECORDS {
        return Err(Rejected::new(
            ErrorCode::InvalidArgument,
            key,
            format!("at most {MAX_RECORDS} per request; send the rest in another"),
        ));
    }
    let out: Vec<T> = records.into_iter().map(T::from).collect();
    let mut seen = HashSet::new();
    for (i, r) in out.iter().enumerate() {
        if let Some((field, reason)) = problems(r).into_iter().next() {
            return Err(Rejected::new(
                ErrorCode::InvalidArgument,
                format!("{key}[{i}].{field}"),
                format!("({}) {reason}", id(r)),
            ));
        }
        if !seen.insert(id(r).clone()) {
            return Err(Rejected::new(
                ErrorCode::InvalidArgument,
                format!("{key}[{i}].id"),
                format!("{} appears twice", id(r)),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, email: &str) -> v1::Contact {
        v1::Contact {
            id: id.into(),
            name: "N".into(),
            email: Some(email.into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_import_names_the_record_and_field_that_is_wrong() {
        let ok = checked(
            vec![contact("a", "a@example.org")],
            "contacts",
            Contact::problems,
            |c| &c.id,
        );
        assert_eq!(ok.unwrap()[0].language, "en");
        let bad = checked(
            vec![contact("a", "a@example.org"), contact("b", "not-mail")],
            "contacts",
            Contact::problems,
            |c| &c.id,
        )
        .unwrap_err();
        assert_eq!(bad.field, "contacts[1].email");
        let twice = checked(
            vec![contact("a", "a@example.org"), contact("a", "b@example.org")],
            "contacts",
            Contact::problems,
            |c| &c.id,
        )
        .unwrap_err();
        assert_eq!(twice.field, "contacts[1].id");
        let none = checked(
            Vec::<v1::Contact>::new(),
            "contacts",
            Contact::problems,
            |c| &c.id,
        );
        assert_eq!(none.unwrap_err().field, "contacts");
    }
}
