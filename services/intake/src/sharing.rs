//! Consent before third-party sharing (SOP 001 §4.4.3, SOP 002 §7, SOP 003
//! §6.4): a recipient the directory marks as a third party hears about a
//! client's matter only when that client's consent to share with them (by
//! id or by their kind) is on record. Each send that rests on a consent
//! carries the consent's cancel key, so withdrawing it stops what is still
//! queued (`herald contacts consent withdraw`).

use herald_directory::contacts::Contact;
use herald_proto::{
    cancel_keys,
    v1::{ErrorCode, NotificationRequest, Rejected},
};

use crate::validate::reject;

/// Checks the third parties among `req`'s recipients (index in
/// `recipients`, contact) against the consents of `about`, the client the
/// request names in `about_contact_id` (looked up; `None` if unknown), and
/// adds the cancel key of each consent relied on to `req`.
pub fn check(
    req: &mut NotificationRequest,
    about: Option<&Contact>,
    third_parties: &[(usize, Contact)],
) -> Result<(), Rejected> {
    let named = req.about_contact_id.clone();
    if !named.is_empty() {
        if !herald_proto::subjects::is_subject_token(&named) {
            return Err(reject(
                ErrorCode::InvalidArgument,
                "about_contact_id",
                "must be 1-128 letters, digits or - _ : @ + = (no dots or spaces)",
            ));
        }
        if about.is_none() {
            return Err(reject(
                ErrorCode::UnknownContact,
                "about_contact_id",
                format!("no contact with id {named:?} in the directory"),
            ));
        }
    }
    for (i, recipient) in third_parties {
        let field = format!("recipients[{i}].contact_id");
        let Some(client) = about else {
            return Err(reject(
                ErrorCode::MissingConsent,
                "about_contact_id",
                format!(
                    "{} (recipients[{i}]) is a third party: name the client whose matter this \
                     is, so that their consent to share it can be checked",
                    recipient.id
                ),
            ));
        };
        let Some(consent) = client.consent_to_share(recipient) else {
            return Err(reject(
                ErrorCode::MissingConsent,
                field,
                format!(
                    "{} is a third party and {} has no consent on record to share their matter \
                     with them (record it with herald contacts consent give {} --with {})",
                    recipient.id, client.id, client.id, recipient.id
                ),
            ));
        };
        let key = cancel_keys::consent_key(&client.id, &consent.with);
        if !req.cancel_keys.contains(&key) {
            if req.cancel_keys.len() >= cancel_keys::MAX_KEYS {
                return Err(reject(
                    ErrorCode::InvalidArgument,
                    "cancel_keys",
                    format!(
                        "leaves no room for the consent key a send to {} carries (at most {} keys)",
                        recipient.id,
                        cancel_keys::MAX_KEYS
                    ),
                ));
            }
            req.cancel_keys.push(key);
        }
    }
    Ok(())
}
