//! Erasing a person (SOP 003 §6.5, "securely destroy"): what names them,
//! and each service removing it from the streams it owns ([`streams`]) and
//! from its own Redis keyspace ([`keys`]), answering intake, which
//! coordinates, on `herald.v1.<service>.erase` ([`serve`]).
//!
//! What names a person is matched on the bytes as stored, not on decoded
//! messages, so one rule covers protobuf in the streams, JSON and plain
//! values in Redis, subjects, headers and key names alike: their email
//! addresses and phone numbers anywhere (case-insensitively; the digits of
//! a number too, as reply indexes keep them), their contact id, name and
//! the ids of their own jobs as a whole word or a whole protobuf field (so
//! `alice` does not match `alice2`).

pub mod keys;
pub mod serve;
pub mod streams;

use herald_proto::v1::ErasePerson;

/// The shortest digits-only form of a number that is matched on its own:
/// shorter runs of digits are too common to mean the person.
const MIN_DIGITS: usize = 7;

/// What names one person, as an erasure matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Matched as whole words or fields: contact id, name, job ids.
    words: Vec<Vec<u8>>,
    /// Matched anywhere, lower-cased: emails, numbers, their digits.
    addresses: Vec<Vec<u8>>,
}

impl Person {
    /// The person a request describes. Empty strings are dropped: they
    /// would match everything.
    pub fn new<'a>(
        words: impl IntoIterator<Item = &'a str>,
        addresses: impl IntoIterator<Item = &'a str>,
    ) -> Person {
        let mut p = Person::default();
        for w in words {
            p.add_word(w);
        }
        for a in addresses {
            p.add_address(a);
        }
        p
    }

    /// The person an `ErasePerson` request names, its related ids as
    /// words.
    pub fn from_request(req: &ErasePerson) -> Person {
        Person::new(
            req.words.iter().chain(&req.related).map(String::as_str),
            req.addresses.iter().map(String::as_str),
        )
    }

    pub fn add_word(&mut self, word: &str) {
        let w = word.trim().as_bytes().to_vec();
        if !w.is_empty() && !self.words.contains(&w) {
            self.words.push(w);
        }
    }

    /// Adds an address (and, for a phone number, its digits alone).
    pub fn add_address(&mut self, address: &str) {
        let a = address.trim().to_ascii_lowercase().into_bytes();
        if a.is_empty() {
            return;
        }
        let digits: Vec<u8> = a.iter().copied().filter(u8::is_ascii_digit).collect();
        let looks_like_number = a
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'(' | b')'));
        if looks_like_number && digits.len() >= MIN_DIGITS && digits != a {
            self.push_address(digits);
        }
        self.push_address(a);
    }

    fn push_address(&mut self, a: Vec<u8>) {
        if !self.addresses.contains(&a) {
            self.addresses.push(a);
        }
    }

    /// Whether nothing would match (an erasure with nothing to look for).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.addresses.is_empty()
    }

    /// Whether `bytes` name the person.
    pub fn named_in(&self, bytes: &[u8]) -> bool {
        if !self.addresses.is_empty() {
            let lower = bytes.to_ascii_lowercase();
            if self.addresses.iter().any(|a| contains(&lower, a)) {
                return true;
            }
        }
        self.words.iter().any(|w| has_word(bytes, w))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Part of a word: letters, digits, `_` and `-` (ids are made of these).
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `word` in `hay` standing alone: between non-word bytes, or as a whole
/// protobuf string field (its length, as a varint, just before it).
fn has_word(hay: &[u8], word: &[u8]) -> bool {
    let n = word.len();
    if n == 0 || hay.len() < n {
        return false;
    }
    let prefix = varint(n as u64);
    (0..=hay.len() - n).any(|i| {
        if &hay[i..i + n] != word {
            return false;
        }
        let before_ok = i == 0 || !word_byte(hay[i - 1]);
        let after_ok = i + n == hay.len() || !word_byte(hay[i + n]);
        (before_ok && after_ok) || (i >= prefix.len() && hay[i - prefix.len()..i] == prefix[..])
    })
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::{Message, v1::AuditRecord};

    fn alice() -> Person {
        Person::new(
            ["alice", "Alice Smith"],
            ["Alice@Example.org", "+44 7700 900123"],
        )
    }

    #[test]
    fn ids_and_names_match_only_as_whole_words() {
        let p = alice();
        assert!(p.named_in(b"window:email:c:alice"));
        assert!(p.named_in(br#"{"client":"alice","x":1}"#));
        assert!(p.named_in(b"Dear Alice Smith, your case"));
        assert!(!p.named_in(b"window:email:c:alice2"));
        assert!(!p.named_in(b"malice"));
        assert!(!p.named_in(b"Dear Alice Smithers"));
    }

    #[test]
    fn a_whole_protobuf_field_matches_whatever_follows_it() {
        let p = alice();
        // Field 10 (contact_id) then field 11, whose tag byte is `Z`.
        let record = AuditRecord {
            contact_id: "alice".into(),
            responsible_staff: "bob".into(),
            ..Default::default()
        };
        assert!(p.named_in(&record.encode_to_vec()));
        let other = AuditRecord {
            contact_id: "alice2".into(),
            ..Default::default()
        };
        assert!(!p.named_in(&other.encode_to_vec()));
    }

    #[test]
    fn addresses_match_anywhere_in_any_case_and_numbers_by_their_digits() {
        let p = alice();
        assert!(p.named_in(b"to: <alice@example.ORG>"));
        assert!(p.named_in(b"reply:sms:447700900123"));
        assert!(p.named_in(b"call +44 7700 900123 now"));
        assert!(!p.named_in(b"bob@example.org 447700900999"));
    }

    #[test]
    fn empty_values_never_match_everything() {
        let p = Person::new(["", "  "], [""]);
        assert!(p.is_empty());
        assert!(!p.named_in(b"anything"));
        // A short number is not matched by its digits alone.
        let short = Person::new([], ["+123"]);
        assert!(!short.named_in(b"seq 123"));
    }
}
