//! Writing an [`Alert`] as a CAP 1.2 document, its elements in the order
//! the OASIS schema's sequences give them, every text escaped.

use quick_xml::escape::escape;

use crate::{Alert, Info, NAMESPACE};

/// The document for `alert`. Empty optional elements are left out; an
/// empty required one is written empty, which a schema check then refuses
/// (the caller fills them all).
pub fn write(alert: &Alert) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!("<alert xmlns=\"{NAMESPACE}\">\n"));
    leaf(&mut out, 1, "identifier", &alert.identifier);
    leaf(&mut out, 1, "sender", &alert.sender);
    leaf(&mut out, 1, "sent", &alert.sent);
    leaf(&mut out, 1, "status", &alert.status);
    leaf(&mut out, 1, "msgType", &alert.msg_type);
    leaf(&mut out, 1, "scope", &alert.scope);
    optional(&mut out, 1, "note", &alert.note);
    if !alert.references.is_empty() {
        let refs: Vec<String> = alert
            .references
            .iter()
            .map(|r| format!("{},{},{}", r.sender, r.identifier, r.sent))
            .collect();
        leaf(&mut out, 1, "references", &refs.join(" "));
    }
    for info in &alert.info {
        write_info(&mut out, info);
    }
    out.push_str("</alert>\n");
    out
}

fn write_info(out: &mut String, info: &Info) {
    out.push_str("  <info>\n");
    optional(out, 2, "language", &info.language);
    for c in &info.categories {
        leaf(out, 2, "category", c);
    }
    leaf(out, 2, "event", &info.event);
    leaf(out, 2, "urgency", &info.urgency);
    leaf(out, 2, "severity", &info.severity);
    leaf(out, 2, "certainty", &info.certainty);
    optional(out, 2, "senderName", &info.sender_name);
    optional(out, 2, "headline", &info.headline);
    optional(out, 2, "description", &info.description);
    optional(out, 2, "instruction", &info.instruction);
    optional(out, 2, "web", &info.web);
    optional(out, 2, "contact", &info.contact);
    for area in &info.areas {
        out.push_str("    <area>\n");
        leaf(out, 3, "areaDesc", area);
        out.push_str("    </area>\n");
    }
    out.push_str("  </info>\n");
}

fn leaf(out: &mut String, depth: usize, name: &str, text: &str) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    out.push_str(&format!("<{name}>{}</{name}>\n", escape(text)));
}

fn optional(out: &mut String, depth: usize, name: &str, text: &str) {
    if !text.is_empty() {
        leaf(out, depth, name, text);
    }
}
