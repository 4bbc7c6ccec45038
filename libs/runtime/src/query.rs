//! Answering a question about one thing a service keeps (`herald case
//! show` asks the sla service for a case's clocks and the escalation
//! service for its escalation): the lookup's outcome as the asker reads
//! it, with every refusal naming the field.

use std::future::Future;

use herald_proto::v1::{ErrorCode, Rejected};
use tracing::warn;

/// Looks `key` (the value of request field `field`) up with `look`: the
/// view, `NOT_FOUND` when nothing is kept for it, `UNAVAILABLE` when the
/// store cannot be read just now. `what` says what is kept ("clocks").
pub async fn lookup<V, F, Fut>(field: &str, key: String, what: &str, look: F) -> Result<V, Rejected>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<Option<V>>>,
{
    let shown = key.clone();
    match look(key).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Rejected {
            code: ErrorCode::NotFound as i32,
            field: field.into(),
            message: format!("no {what} for {shown}"),
        }),
        Err(e) => {
            warn!(error = %e, "lookup failed");
            Err(Rejected {
                code: ErrorCode::Unavailable as i32,
                field: String::new(),
                message: format!("the {what} could not be read just now"),
            })
        }
    }
}
