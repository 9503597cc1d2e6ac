//! One audit event and its canonical bytes, the input of the chain's MAC.
//!
//! The canonical encoding is hand-specified rather than taken from a
//! serializer (serde_json, say) because the MAC of every stored event must
//! still verify after any dependency upgrade: a change in how a serializer
//! escapes or orders text would silently break every old log. The format:
//!
//! * fields in the fixed order of the struct below, each present exactly once;
//! * `u64` and `i64` as 8 bytes big-endian (`i64` two's complement);
//! * a string as its byte length (`u64`, big-endian) then its UTF-8 bytes;
//! * an optional string as one byte, `0` for `None` or `1` for `Some`,
//!   followed (only for `Some`) by the string as above.
//!
//! Why unambiguous: reading the bytes back is deterministic (every field's
//! extent is known from its type or its length prefix before its content is
//! read, and the number and order of fields is fixed), so two different
//! events cannot produce the same bytes, and any change to any field, even
//! `None` to `Some("")` or moving a byte from one field to the next, changes
//! them. The encoding carries no version of its own: the chain's
//! domain-separation tag (`chain.rs`) names the version, so a future format
//! gets a new tag.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The chain this event belongs to (e.g. the id of the node that wrote it).
    pub chain: String,
    /// 1-based position in its chain.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub time: i64,
    /// The prefix of the API key that acted (never the key itself).
    pub actor_key: Option<String>,
    pub actor_type: Option<String>,
    pub actor_user: Option<String>,
    pub org_id: Option<String>,
    pub team_id: Option<String>,
    /// What was done: the name of a
    /// [`AuditAction`](crate::domain::audit_action::AuditAction), e.g.
    /// `secret.write`.
    pub action: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    /// `ok`, `denied`, ...
    pub result: String,
    pub request_id: Option<String>,
    pub client: Option<String>,
    /// Small JSON text (e.g. versions), MACed as the exact text: a store
    /// must keep it byte for byte (a text column, not one that normalizes
    /// JSON, such as PostgreSQL's `jsonb`).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The canonical bytes (see the module's documentation).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(|bytes| out.extend_from_slice(bytes));
        out
    }

    /// Feeds the canonical bytes, piece by piece, to `put`; the chain feeds
    /// them straight into the MAC so that linking an event allocates nothing.
    pub fn write_canonical(&self, put: impl FnMut(&[u8])) {
        // Destructured without `..`, so that a field added to the struct
        // does not compile until it is added here too.
        let Self {
            chain,
            seq,
            time,
            actor_key,
            actor_type,
            actor_user,
            org_id,
            team_id,
            action,
            target_id,
            target_name,
            result,
            request_id,
            client,
            detail,
        } = self;
        let mut w = Writer(put);
        w.text(chain);
        w.raw(&seq.to_be_bytes());
        w.raw(&time.to_be_bytes());
        w.optional(actor_key);
        w.optional(actor_type);
        w.optional(actor_user);
        w.optional(org_id);
        w.optional(team_id);
        w.text(action);
        w.optional(target_id);
        w.optional(target_name);
        w.text(result);
        w.optional(request_id);
        w.optional(client);
        w.optional(detail);
    }
}

struct Writer<F>(F);

impl<F: FnMut(&[u8])> Writer<F> {
    fn raw(&mut self, bytes: &[u8]) {
        (self.0)(bytes);
    }

    fn text(&mut self, s: &str) {
        // usize -> u64 is lossless on every platform Rust supports.
        self.raw(&(s.len() as u64).to_be_bytes());
        self.raw(s.as_bytes());
    }

    fn optional(&mut self, s: &Option<String>) {
        match s {
            None => self.raw(&[0]),
            Some(s) => {
                self.raw(&[1]);
                self.text(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testutil::{event, one_byte_edits};
    use sha2::{Digest, Sha256};

    #[test]
    fn every_field_changes_the_bytes() {
        let original = event(5);
        let edits = one_byte_edits();
        assert_eq!(edits.len(), 15, "one edit per field of AuditEvent");
        for (field, edit) in edits {
            let mut edited = original.clone();
            edit(&mut edited);
            assert_ne!(edited, original, "{field}");
            assert_ne!(edited.canonical(), original.canonical(), "{field}");
        }
    }

    #[test]
    fn none_differs_from_empty_and_every_option_is_covered() {
        let full = event(5);
        let setters: [fn(&mut AuditEvent) -> &mut Option<String>; 10] = [
            |e| &mut e.actor_key,
            |e| &mut e.actor_type,
            |e| &mut e.actor_user,
            |e| &mut e.org_id,
            |e| &mut e.team_id,
            |e| &mut e.target_id,
            |e| &mut e.target_name,
            |e| &mut e.request_id,
            |e| &mut e.client,
            |e| &mut e.detail,
        ];
        for field in setters {
            let mut none = full.clone();
            *field(&mut none) = None;
            let mut empty = full.clone();
            *field(&mut empty) = Some(String::new());
            assert_ne!(none.canonical(), empty.canonical());
            assert_ne!(none.canonical(), full.canonical());
        }
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_bytes() {
        let mut a = event(1);
        a.action = "secret.up".to_owned();
        a.result = "sertok".to_owned();
        let mut b = event(1);
        b.action = "secret.upsert".to_owned();
        b.result = "ok".to_owned();
        assert_ne!(a.canonical(), b.canonical());

        // An optional field's text cannot pose as the next field's marker.
        let mut c = event(1);
        c.request_id = Some(String::new());
        c.client = None;
        let mut d = event(1);
        d.request_id = None;
        d.client = Some(String::new());
        assert_ne!(c.canonical(), d.canonical());
    }

    #[test]
    fn canonical_layout_is_as_documented() {
        let mut e = event(2);
        e.chain = "c".to_owned();
        e.actor_key = None;
        let bytes = e.canonical();
        let mut expected = Vec::new();
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.push(b'c');
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&e.time.to_be_bytes());
        expected.push(0); // actor_key: None
        expected.push(1); // actor_type: Some
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(b"api_key");
        assert_eq!(&bytes[..expected.len()], &expected[..]);
    }

    /// Stored MACs must verify forever: this pins the encoding. If it fails,
    /// the encoding changed and needs a new chain tag, not a new constant.
    /// (The value was checked against an independent implementation of the
    /// format documented above, in Python.)
    #[test]
    fn canonical_bytes_are_stable() {
        let digest = hex::encode(Sha256::digest(event(3).canonical()));
        assert_eq!(
            digest,
            "b663e833b6a8822d00543589214115ee43546f0f4b4686e20a88157a875d0f6e"
        );
    }

    #[test]
    fn serde_round_trip() {
        let e = event(4);
        let json = serde_json::to_string(&e).unwrap();
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.canonical(), e.canonical());
    }
}
