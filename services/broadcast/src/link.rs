//! Signed confirmation addresses.
//!
//! Each recipient gets their own confirmation link in the email, and each
//! call its own key-press address: `<public_url>/v1/broadcast/<kind>?b=<broadcast>&r=<recipient>&s=<signature>`,
//! every value percent-encoded ([`herald_content::url`]), so a broadcast
//! id with `+` or `=` in it comes back whole.
//! The signature is an HMAC-SHA256 (keyed with `broadcast.link_secret`) over
//! the kind, the broadcast and the recipient, cut to 128 bits, so nobody
//! can confirm for someone else by editing the address, and a link for one
//! broadcast confirms nothing in another.

use herald_content::token;

/// What an address is for; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The link in the email.
    Confirm,
    /// The voice provider's key-press callback.
    Key,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Confirm => "/v1/broadcast/confirm",
            Kind::Key => "/v1/broadcast/key",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::Confirm => "confirm",
            Kind::Key => "key",
        }
    }
}

/// What a signed address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub broadcast_id: String,
    pub recipient: usize,
    /// The call a key press came from (unsigned; for the trail only).
    pub job: String,
}

#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
    base: String,
}

impl Signer {
    pub fn new(secret: &str, public_url: &str) -> Signer {
        Signer {
            secret: secret.as_bytes().to_vec(),
            base: public_url.trim_end_matches('/').to_string(),
        }
    }

    /// What a signature covers: the kind, the broadcast and the recipient.
    fn signed(kind: Kind, broadcast_id: &str, recipient: usize) -> String {
        format!("{}\n{broadcast_id}\nr{recipient}", kind.tag())
    }

    pub fn signature(&self, kind: Kind, broadcast_id: &str, recipient: usize) -> String {
        token::sign(&self.secret, &Self::signed(kind, broadcast_id, recipient))
    }

    /// Whether `signature` is right, compared in constant time.
    pub fn verify(
        &self,
        kind: Kind,
        broadcast_id: &str,
        recipient: usize,
        signature: &str,
    ) -> bool {
        token::verify(
            &self.secret,
            &Self::signed(kind, broadcast_id, recipient),
            signature,
        )
    }

    /// The broadcast and recipient the query of an address names (`b`,
    /// `r`, `s` and an optional `job`), if its signature holds for `kind`.
    pub fn read(&self, kind: Kind, query: &str) -> Option<Signed> {
        let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let field = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let broadcast_id = field("b")?;
        let recipient: usize = field("r")?.parse().ok()?;
        let sig = field("s")?;
        self.verify(kind, broadcast_id, recipient, sig)
            .then(|| Signed {
                broadcast_id: broadcast_id.to_string(),
                recipient,
                job: field("job").unwrap_or_default().to_string(),
            })
    }

    /// The public address of a recipient's confirmation link or key press,
    /// with `extra` pairs (e.g. the job) after the signed ones.
    pub fn url(
        &self,
        kind: Kind,
        broadcast_id: &str,
        recipient: usize,
        extra: &[(&str, &str)],
    ) -> String {
        let sig = self.signature(kind, broadcast_id, recipient);
        let r = recipient.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![("b", broadcast_id), ("r", &r), ("s", &sig)];
        pairs.extend_from_slice(extra);
        herald_content::url::with_query(&format!("{}{}", self.base, kind.path()), &pairs)
    }

    /// The public address the provider was given for a request that
    /// arrived at `path_and_query`: what its signature covers.
    pub fn public(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_only_for_its_recipient_broadcast_and_kind() {
        let s = Signer::new("0123456789abcdef0123", "https://h.example/bc/");
        let sig = s.signature(Kind::Confirm, "fire-b", 7);
        assert!(s.verify(Kind::Confirm, "fire-b", 7, &sig));
        assert!(!s.verify(Kind::Confirm, "fire-b", 8, &sig));
        assert!(!s.verify(Kind::Confirm, "fire-c", 7, &sig));
        assert!(!s.verify(Kind::Key, "fire-b", 7, &sig));
        assert!(!s.verify(Kind::Confirm, "fire-b", 7, "nope"));
        assert!(!s.verify(Kind::Confirm, "fire-b", 7, ""));
        let other = Signer::new("another secret entirely", "https://h.example");
        assert!(!other.verify(Kind::Confirm, "fire-b", 7, &sig));
        assert_eq!(
            s.url(Kind::Key, "a+b", 7, &[("job", "j1")]),
            format!(
                "https://h.example/bc/v1/broadcast/key?b=a%2Bb&r=7&s={}&job=j1",
                s.signature(Kind::Key, "a+b", 7)
            )
        );
    }
}
