//! The permission table as the README shows it.

use super::{Identity, Permissions, Role, permissions};
use crate::subjects::STREAMS;

/// The permission table as Markdown, for the README: what each service
/// and role may publish and subscribe (inboxes left out) and what it may
/// do with which streams.
pub fn table_markdown() -> String {
    let mut rows = vec![
        "| identity | may publish | may subscribe | streams |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut who: Vec<Identity> = Identity::services();
    who.extend(
        Role::ALL[1..]
            .iter()
            .map(|r| Identity::new(format!("<{}>", r.name()), *r)),
    );
    for id in who {
        let p = permissions(&id);
        let code = |v: &mut dyn Iterator<Item = &String>| {
            let shown: Vec<String> = v.map(|s| format!("`{s}`")).collect();
            if shown.is_empty() {
                "—".to_string()
            } else {
                shown.join(" ")
            }
        };
        let publish = code(&mut p.publish.iter().filter(|s| !s.starts_with('$')));
        let mut subscribe = code(&mut p.subscribe.iter().filter(|s| !s.starts_with("_INBOX_")));
        if p.responds {
            subscribe.push_str(" (answers requests)");
        }
        let name = if id.role == Role::Service {
            id.name.clone()
        } else {
            format!("{} ({})", id.role.name(), id.role.purpose())
        };
        rows.push(format!(
            "| {name} | {publish} | {subscribe} | {} |",
            streams_summary(&p)
        ));
    }
    rows.join("\n") + "\n"
}

/// What an identity does with each stream it may reach, in words.
fn streams_summary(p: &Permissions) -> String {
    let has = |s: String| p.publish.contains(&s);
    let mut parts = Vec::new();
    for s in STREAMS {
        let name = s.stream;
        let what = if has(format!("$JS.API.STREAM.CREATE.{name}")) {
            "declares"
        } else if has(format!("$JS.API.CONSUMER.DELETE.{name}.>")) {
            "browses"
        } else if has(format!("$JS.API.CONSUMER.CREATE.{name}")) {
            "consumes"
        } else if has(format!("$JS.API.STREAM.INFO.{name}")) {
            "watches"
        } else {
            continue;
        };
        parts.push(format!("{what} {name}"));
    }
    if parts.is_empty() {
        "—".to_string()
    } else {
        parts.join(", ")
    }
}
