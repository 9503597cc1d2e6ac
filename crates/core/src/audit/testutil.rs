//! Events and chains shared by the audit module's tests.

use super::chain::{ChainHead, ChainKey, Chainer, StoredEvent};
use super::event::AuditEvent;

pub const CHAIN: &str = "node-a";

pub fn key() -> ChainKey {
    ChainKey::from_bytes([7; 32])
}

/// An event with every optional field set, so that each can be edited.
pub fn event(n: u64) -> AuditEvent {
    AuditEvent {
        chain: CHAIN.to_owned(),
        seq: n,
        time: 1_700_000_000_000_000 + n as i64,
        actor_key: Some(format!("tk_{n:04}")),
        actor_type: Some("api_key".to_owned()),
        actor_user: Some(format!("user-{n}")),
        org_id: Some("org-1".to_owned()),
        team_id: Some("team-1".to_owned()),
        action: "secret.upsert".to_owned(),
        target_id: Some(format!("sec-{n}")),
        target_name: Some(format!("DB_PASSWORD_{n}")),
        result: "ok".to_owned(),
        request_id: Some(format!("req-{n}")),
        client: Some("tessera-cli/1.0".to_owned()),
        detail: Some(format!(r#"{{"version":{n}}}"#)),
    }
}

/// Events 1..=n of chain `CHAIN`, linked under `key`.
pub fn chain_of(key: &ChainKey, n: u64) -> Vec<StoredEvent> {
    chain_with(key, n, event)
}

/// Events 1..=n of chain `CHAIN` built by `make`, linked under `key`.
pub fn chain_with(key: &ChainKey, n: u64, make: impl Fn(u64) -> AuditEvent) -> Vec<StoredEvent> {
    let mut chainer = Chainer::new(key, ChainHead::genesis(CHAIN));
    (1..=n).map(|i| chainer.append(make(i)).unwrap()).collect()
}

/// Changes an event in place.
pub type Edit = fn(&mut AuditEvent);

/// One edit per field of `AuditEvent`, each flipping one bit of one byte
/// of that field.
pub fn one_byte_edits() -> Vec<(&'static str, Edit)> {
    fn flip(s: &mut String) {
        // The last byte of these ASCII fields, kept ASCII.
        let mut bytes = std::mem::take(s).into_bytes();
        let last = bytes.last_mut().unwrap();
        *last ^= 0x01;
        *s = String::from_utf8(bytes).unwrap();
    }
    fn flip_opt(s: &mut Option<String>) {
        flip(s.as_mut().unwrap());
    }
    vec![
        ("chain", |e| flip(&mut e.chain)),
        ("seq", |e| e.seq ^= 1),
        ("time", |e| e.time ^= 1),
        ("actor_key", |e| flip_opt(&mut e.actor_key)),
        ("actor_type", |e| flip_opt(&mut e.actor_type)),
        ("actor_user", |e| flip_opt(&mut e.actor_user)),
        ("org_id", |e| flip_opt(&mut e.org_id)),
        ("team_id", |e| flip_opt(&mut e.team_id)),
        ("action", |e| flip(&mut e.action)),
        ("target_id", |e| flip_opt(&mut e.target_id)),
        ("target_name", |e| flip_opt(&mut e.target_name)),
        ("result", |e| flip(&mut e.result)),
        ("request_id", |e| flip_opt(&mut e.request_id)),
        ("client", |e| flip_opt(&mut e.client)),
        ("detail", |e| flip_opt(&mut e.detail)),
    ]
}
