//! The approve and deny links in an approver's message:
//! `<approvals.public_url>/v1/approvals/decide?a=<id>&by=<approver>&d=approve|deny&s=<sig>`,
//! signed with `approvals.signing_key` over the purpose, the approval, the
//! approver and the decision, so a link decides only what it says, for
//! the person it was sent to. Opening one shows a page with one button
//! and changes nothing (mail scanners open links before people do); the
//! button posts back, and only that decides.

use axum::{
    Router,
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
    routing::get,
};
use herald_content::token;
use herald_proto::v1::ErrorCode;
use tracing::{error, warn};

use crate::Intake;

pub(crate) const PATH: &str = "/v1/approvals/decide";

/// Signed decision addresses.
#[derive(Clone)]
pub(crate) struct Links {
    secret: Vec<u8>,
    base: String,
}

/// What a link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub approval_id: String,
    pub by: String,
    pub approve: bool,
}

impl Links {
    pub fn new(secret: &str, public_url: &str) -> Links {
        Links {
            secret: secret.as_bytes().to_vec(),
            base: public_url.trim_end_matches('/').to_string(),
        }
    }

    fn signed(link: &Link) -> String {
        format!(
            "approval\n{}\n{}\n{}",
            link.approval_id,
            link.by,
            decision(link.approve)
        )
    }

    /// The address of `link`.
    pub fn url(&self, link: &Link) -> String {
        let sig = token::sign(&self.secret, &Self::signed(link));
        herald_content::url::with_query(
            &format!("{}{PATH}", self.base),
            &[
                ("a", &link.approval_id),
                ("by", &link.by),
                ("d", decision(link.approve)),
                ("s", &sig),
            ],
        )
    }

    /// What a query names, if its signature holds.
    pub fn read(&self, query: &str) -> Option<Link> {
        let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let field = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let link = Link {
            approval_id: field("a")?.to_string(),
            by: field("by")?.to_string(),
            approve: match field("d")? {
                "approve" => true,
                "deny" => false,
                _ => return None,
            },
        };
        token::verify(&self.secret, &Self::signed(&link), field("s")?).then_some(link)
    }
}

fn decision(approve: bool) -> &'static str {
    if approve { "approve" } else { "deny" }
}

/// The decision pages, served beside the HTTP API on intake's public
/// listener.
pub(crate) fn routes(intake: Intake) -> Router {
    Router::new()
        .route(PATH, get(show).post(decide))
        .with_state(intake)
}

fn page(code: StatusCode, title: &str, text: &str, button: Option<&str>) -> Response {
    herald_runtime::public::link_page(code, title, text, button)
}

fn read(intake: &Intake, uri: &Uri) -> Option<Link> {
    let link = intake
        .approvals
        .links()?
        .read(uri.query().unwrap_or_default());
    if link.is_none() {
        warn!("an approval link with a signature that does not hold was refused");
    }
    link
}

fn not_valid() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Link not valid",
        "This approval link is not valid.",
        None,
    )
}

async fn show(State(intake): State<Intake>, uri: Uri) -> Response {
    let Some(link) = read(&intake, &uri) else {
        return not_valid();
    };
    let held = match intake.approvals.load(&link.approval_id).await {
        Ok(Some((_, h))) => h,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "Unknown request",
                "There is no such request for approval (or it was decided long ago).",
                None,
            );
        }
        Err(e) => {
            error!(error = %e, "approval unreadable");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The request could not be read just now; open the link again in a moment.",
                None,
            );
        }
    };
    if held.stage.decided() {
        return page(
            StatusCode::OK,
            "Already decided",
            &format!(
                "This request was already {}.",
                held.stage.name().replace('_', " ")
            ),
            None,
        );
    }
    let (title, button) = if link.approve {
        ("Approve first contact", "Approve")
    } else {
        ("Deny first contact", "Deny")
    };
    page(
        StatusCode::OK,
        title,
        &format!(
            "First contact with {} about {} ({}, template {}), asked for by {}.",
            held.contact_ids.join(", "),
            held.matter,
            held.communication_type,
            held.template_id,
            if held.requester.is_empty() {
                &held.caller
            } else {
                &held.requester
            }
        ),
        Some(button),
    )
}

async fn decide(State(intake): State<Intake>, uri: Uri) -> Response {
    let Some(link) = read(&intake, &uri) else {
        return not_valid();
    };
    let reason = if link.approve {
        ""
    } else {
        "denied from the approval link"
    };
    match intake
        .decide_approval(&link.approval_id, link.approve, &link.by, reason, "link")
        .await
    {
        Ok(held) => page(
            StatusCode::OK,
            if link.approve { "Approved" } else { "Denied" },
            &if link.approve {
                format!(
                    "Approved: the message to {} goes out now.",
                    held.contact_ids.join(", ")
                )
            } else {
                format!(
                    "Denied: nothing is sent to {}, and the requester is told.",
                    held.contact_ids.join(", ")
                )
            },
            None,
        ),
        Err(r) if r.code == ErrorCode::Unavailable as i32 => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The decision could not be recorded just now; press the button again in a moment.",
            None,
        ),
        Err(r) if r.code == ErrorCode::NotFound as i32 => {
            page(StatusCode::NOT_FOUND, "Unknown request", &r.message, None)
        }
        Err(r) => page(StatusCode::CONFLICT, "Not decided", &r.message, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_decides_only_what_it_says_for_whom_it_says() {
        let links = Links::new("0123456789abcdef", "https://herald.example.org/");
        let link = Link {
            approval_id: "ntf_1".into(),
            by: "sup-ana".into(),
            approve: true,
        };
        let url = links.url(&link);
        assert!(url.starts_with("https://herald.example.org/v1/approvals/decide?"));
        let query = url.split_once('?').unwrap().1;
        assert_eq!(links.read(query), Some(link));
        for (from, to) in [
            ("d=approve", "d=deny"),
            ("by=sup-ana", "by=sup-ben"),
            ("a=ntf_1", "a=ntf_2"),
        ] {
            assert_eq!(links.read(&query.replace(from, to)), None, "{to}");
        }
        let other = Links::new("another-key-0123456", "https://herald.example.org");
        assert_eq!(other.read(query), None);
    }
}
