//! Template versions approved at run time: the request subjects editors
//! and approvers ask intake on, the stream that carries each approved
//! version to the services that render and check with it, and the trail
//! id a template's records are filed under.

/// Request/reply (`herald.v1.TemplateRequest` in, `herald.v1.TemplateReply`
/// out): editors list, read and propose template versions.
pub const INTAKE_TEMPLATES: &str = "herald.v1.intake.templates";
/// Request/reply (the same messages): approvers list, read, approve and
/// reject them.
pub const INTAKE_TEMPLATE_DECISIONS: &str = "herald.v1.intake.template_decisions";

/// Approved template versions (`ApprovedTemplate`), one subject per
/// version: limits retention, one message per subject, read from the start
/// by every intake and router at start-up and followed from then on.
pub const STREAM_TEMPLATES: &str = "HERALD_TEMPLATES";
const TEMPLATE_PREFIX: &str = "herald.v1.template";

/// Subject of one approved version. `id` is a template id (lower-case
/// letters, digits, `_`, `-`), so one token.
pub fn template_version(id: &str, version: u32) -> String {
    format!("{TEMPLATE_PREFIX}.{id}.v{version}")
}

/// Every approved version's subject, for the stream.
pub fn templates_all() -> &'static str {
    "herald.v1.template.>"
}

/// The id a template's trail is filed under (as a notification's id would
/// be): `herald trail template:<id>` reads it.
pub fn template_trail_id(id: &str) -> String {
    format!("template:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_has_its_own_subject_under_the_streams_filter() {
        let s = template_version("escalation_alert", 3);
        assert_eq!(s, "herald.v1.template.escalation_alert.v3");
        assert!(s.starts_with(templates_all().trim_end_matches('>')));
        assert_ne!(s, template_version("escalation_alert", 30));
        assert!(super::super::is_subject_token(&template_trail_id(
            "escalation_alert"
        )));
        // Neither request subject is another's caller form.
        assert!(!INTAKE_TEMPLATE_DECISIONS.starts_with(&format!("{INTAKE_TEMPLATES}.")));
    }
}
