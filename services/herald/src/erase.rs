//! `herald contacts erase <id> --by <staff>`: the Data Protection Officer
//! removes a person from every stream and Redis key Herald keeps (SOP 003
//! §6.5), as the `dpo` identity, and sees what went, store by store.

use std::time::Duration;

use herald_config::Config;
use herald_proto::{
    Message,
    access::Role,
    subjects,
    v1::{EraseContact, EraseReply, ErasureReport, erase_reply},
};

use crate::Failure;

/// How long the command waits: every service reads each stream it owns
/// message by message, which on a large trail takes minutes.
const WAIT: Duration = Duration::from_secs(15 * 60);

/// Asks intake to erase `id`, done for `by`, and prints the report.
pub async fn run(
    cfg: &Config,
    id: String,
    by: String,
    reason: Option<String>,
) -> Result<(), Failure> {
    let bus = crate::connect_bus(cfg, Role::Dpo).await?;
    let req = EraseContact {
        contact_id: id.clone(),
        by,
        reason: reason.unwrap_or_default(),
    };
    let subject = subjects::from_caller(subjects::INTAKE_ERASE, &bus.identity);
    let msg = tokio::time::timeout(
        WAIT,
        bus.client.request(subject, req.encode_to_vec().into()),
    )
    .await
    .map_err(|_| Failure {
        code: 1,
        message: format!("intake did not answer within {WAIT:?}; ask again (it is safe to)"),
    })?
    .map_err(|e| Failure {
        code: 1,
        message: format!(
            "intake did not answer ({e}); is intake running, and is this the dpo identity?"
        ),
    })?;
    match EraseReply::decode(msg.payload)?.result {
        Some(erase_reply::Result::Erased(report)) => {
            print!("{}", describe(&id, &report));
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(Failure {
                    code: 1,
                    message: "the erasure is incomplete: ask again once those services run".into(),
                })
            }
        }
        Some(erase_reply::Result::Rejected(r)) => Err(crate::send::rejected(&r)),
        None => Err(crate::unexpected()),
    }
}

/// The report as the DPO reads it.
fn describe(id: &str, report: &ErasureReport) -> String {
    let removed: u64 = report.parts.iter().map(|p| p.removed).sum();
    let mut out = if removed == 0 && report.failed.is_empty() {
        format!(
            "nothing of {id} was left to erase ({})\n",
            report.erasure_id
        )
    } else {
        format!(
            "erased {id}: {removed} record(s) removed ({})\n",
            report.erasure_id
        )
    };
    for p in report.parts.iter().filter(|p| p.removed > 0) {
        out.push_str(&format!(
            "  {:<12} {:<28} {}\n",
            p.service, p.store, p.removed
        ));
    }
    for f in &report.failed {
        out.push_str(&format!("  {:<12} NOT DONE: {}\n", f.service, f.error));
    }
    if !report.subject_hash.is_empty() {
        out.push_str(&format!(
            "  trail record's subject hash: {}\n",
            report.subject_hash
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::ErasedPart;

    #[test]
    fn the_report_lists_what_went_and_what_did_not() {
        let part = |service: &str, store: &str, removed, error: &str| ErasedPart {
            service: service.into(),
            store: store.into(),
            removed,
            error: error.into(),
        };
        let report = ErasureReport {
            erasure_id: "era_1".into(),
            subject_hash: String::new(),
            parts: vec![
                part("intake", "HERALD_AUDIT", 4, ""),
                part("sla", "redis:sla", 0, ""),
            ],
            failed: vec![part("delivery", "", 0, "nothing answers")],
        };
        let text = describe("ria", &report);
        assert!(
            text.starts_with("erased ria: 4 record(s) removed (era_1)"),
            "{text}"
        );
        assert!(text.contains("HERALD_AUDIT"), "{text}");
        assert!(!text.contains("redis:sla"), "{text}");
        assert!(
            text.contains("delivery     NOT DONE: nothing answers"),
            "{text}"
        );
        let none = ErasureReport {
            erasure_id: "era_2".into(),
            ..Default::default()
        };
        assert_eq!(
            describe("ria", &none),
            "nothing of ria was left to erase (era_2)\n"
        );
    }
}
