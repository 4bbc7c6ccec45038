//! The nats-server configuration's users, generated from the permission
//! table: one nkey user per identity, nothing anonymous.

use super::{Identity, Permissions, Role, permissions};

/// One user of the generated server configuration.
#[derive(Debug, Clone)]
pub struct ServerUser {
    pub identity: Identity,
    /// The identity's public nkey (`U…`).
    pub nkey: String,
    pub permissions: Permissions,
    /// Allowed everything: only for a test harness that plays every
    /// part; `herald setup` never writes one.
    pub unrestricted: bool,
}

impl ServerUser {
    pub fn new(identity: Identity, nkey: impl Into<String>) -> ServerUser {
        let permissions = permissions(&identity);
        ServerUser {
            identity,
            nkey: nkey.into(),
            permissions,
            unrestricted: false,
        }
    }

    /// A user allowed every subject (see [`ServerUser::unrestricted`]).
    pub fn unrestricted(name: impl Into<String>, nkey: impl Into<String>) -> ServerUser {
        ServerUser {
            identity: Identity::new(name, Role::Service),
            nkey: nkey.into(),
            permissions: Permissions::default(),
            unrestricted: true,
        }
    }
}

/// The `authorization` block of a nats-server configuration: one nkey
/// user per identity with exactly its permissions, and no other way in
/// (no default user, no anonymous access).
pub fn server_users(users: &[ServerUser]) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("authorization {\n  users = [\n");
    for u in users {
        if u.unrestricted {
            out.push_str(&format!(
                "    # {} (unrestricted)\n    {{ nkey: \"{}\" }}\n",
                u.identity.name, u.nkey
            ));
            continue;
        }
        let p = &u.permissions;
        out.push_str(&format!(
            "    # {} ({})\n    {{\n      nkey: \"{}\"\n      permissions: {{\n        publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n",
            u.identity.name,
            u.identity.role.name(),
            u.nkey,
            list(&p.publish),
            list(&p.subscribe),
        ));
        if p.responds {
            out.push_str("        allow_responses: true\n");
        }
        out.push_str("      }\n    }\n");
    }
    out.push_str("  ]\n}\n");
    out
}
