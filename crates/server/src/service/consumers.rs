//! Who holds what, without a database write per delivery: what the delivery
//! routes hand out is collected in memory and written in one batch about
//! once a second (with the API key uses), like `usage.rs`.

use super::{Service, ServiceResult};
use crate::domain::consumer_kind::ConsumerKind;
use crate::domain::time::Micros;
use crate::store::{ConsumerCap, ConsumerSeen};
use parking_lot::Mutex;
use std::collections::HashMap;

/// Consumers waiting to be written, at most; beyond it new ones are
/// dropped until the next write (a bound on memory whatever clients send).
const MAX_PENDING: usize = 10_000;

/// Consumers whose last delivered revision is remembered, at most (the
/// memory is cleared when full: it only saves work).
const MAX_REMEMBERED: usize = 100_000;

/// Consumers remembered per key, at most: the store keeps the most recently
/// seen this many of each key (evicting the least recently seen), and a
/// key's new consumers beyond it within one flush are dropped, so that
/// instance ids chosen by a client grow neither the store nor the memory.
pub const MAX_CONSUMERS_PER_KEY: usize = 1_000;

/// ...and the versions those consumers are remembered holding (one row per
/// consumer and secret), at most: a key whose scope is large keeps fewer
/// consumers (with 100 secrets, the 20 most recently seen). About 250
/// bytes a row on SQLite, so at most about half a megabyte per key.
pub const MAX_CONSUMER_VERSIONS_PER_KEY: usize = 2_048;

/// What the store keeps of each key's consumers.
pub const CONSUMER_CAP: ConsumerCap = ConsumerCap {
    consumers: MAX_CONSUMERS_PER_KEY,
    versions: MAX_CONSUMER_VERSIONS_PER_KEY,
};

// The headers a consumer names itself with, and what an instance id may
// be: the wire's, shared with the workload client.
pub use tessera_wire::runtime::{valid_instance, INSTANCE_HEADER, KIND_HEADER, MAX_INSTANCE_CHARS};

type ConsumerKey = (String, String);

#[derive(Default)]
struct Pending {
    team_id: String,
    kind: ConsumerKind,
    client: Option<String>,
    seen_at: Micros,
    /// Secret id -> (version, received at).
    received: HashMap<String, (i64, Micros)>,
}

#[derive(Default)]
struct State {
    pending: HashMap<ConsumerKey, Pending>,
    /// Pending consumers, and the versions they received, per key prefix.
    pending_per_key: HashMap<String, (usize, usize)>,
    /// The team revision each consumer last received in full: the same
    /// revision again holds the same versions, so only "seen" is new.
    revisions: HashMap<ConsumerKey, i64>,
}

/// What one delivery handed to one consumer.
pub struct Received<'a> {
    pub key_prefix: &'a str,
    pub instance: &'a str,
    pub team_id: &'a str,
    pub client: Option<&'a str>,
    pub kind: ConsumerKind,
    pub at: Micros,
    /// The team revision of a full delivery (`None` for one secret).
    pub revision: Option<i64>,
}

#[derive(Default)]
pub struct ConsumerRecorder {
    state: Mutex<State>,
}

impl ConsumerRecorder {
    /// Records a delivery of `versions` (secret id, version).
    pub fn received<'v>(&self, r: &Received<'_>, versions: impl Iterator<Item = (&'v str, i64)>) {
        let mut state = self.state.lock();
        let key = (r.key_prefix.to_owned(), r.instance.to_owned());
        let known = r.revision.is_some() && state.revisions.get(&key) == r.revision.as_ref();
        if !known {
            if let Some(revision) = r.revision {
                if state.revisions.len() >= MAX_REMEMBERED {
                    state.revisions.clear();
                }
                state.revisions.insert(key.clone(), revision);
            }
        }
        let Some(pending) = pending_for(&mut state, key, r) else {
            return;
        };
        if !known {
            let before = pending.received.len();
            for (id, version) in versions {
                pending.received.insert(id.to_owned(), (version, r.at));
            }
            let added = pending.received.len() - before;
            if let Some(counts) = state.pending_per_key.get_mut(r.key_prefix) {
                counts.1 += added;
            }
        }
    }

    /// Whether `r`'s consumer was last recorded holding `r`'s revision in
    /// full (then there is nothing new to record but the sighting).
    pub fn holds_revision(&self, r: &Received<'_>) -> bool {
        let state = self.state.lock();
        let key = (r.key_prefix.to_owned(), r.instance.to_owned());
        r.revision.is_some() && state.revisions.get(&key) == r.revision.as_ref()
    }

    /// Records that a consumer asked (a long poll that found no change).
    pub fn seen(&self, r: &Received<'_>) {
        let mut state = self.state.lock();
        let key = (r.key_prefix.to_owned(), r.instance.to_owned());
        pending_for(&mut state, key, r);
    }

    fn take(&self) -> Vec<ConsumerSeen> {
        let mut state = self.state.lock();
        state.pending_per_key.clear();
        std::mem::take(&mut state.pending)
            .into_iter()
            .map(|((key_prefix, instance), p)| ConsumerSeen {
                key_prefix,
                instance,
                team_id: p.team_id,
                kind: p.kind,
                client: p.client,
                seen_at: p.seen_at,
                received: p
                    .received
                    .into_iter()
                    .map(|(id, (version, at))| (id, version, at))
                    .collect(),
            })
            .collect()
    }

    /// Puts back what could not be written (newer entries win).
    fn restore(&self, seen: Vec<ConsumerSeen>) {
        for s in seen {
            let r = Received {
                key_prefix: &s.key_prefix,
                instance: &s.instance,
                team_id: &s.team_id,
                client: s.client.as_deref(),
                kind: s.kind,
                at: s.seen_at,
                revision: None,
            };
            let mut state = self.state.lock();
            let key = (s.key_prefix.clone(), s.instance.clone());
            if let Some(pending) = pending_for(&mut state, key, &r) {
                for (id, version, at) in s.received {
                    pending.received.entry(id).or_insert((version, at));
                }
            }
        }
    }
}

/// The pending entry of a consumer, refreshed with this sighting; `None`
/// when the pending map, or the key's share of it, is full.
fn pending_for<'p>(
    state: &'p mut State,
    key: ConsumerKey,
    r: &Received<'_>,
) -> Option<&'p mut Pending> {
    if !state.pending.contains_key(&key) {
        let (consumers, versions) = state.pending_per_key.get(&key.0).copied().unwrap_or((0, 0));
        if state.pending.len() >= MAX_PENDING
            || consumers >= MAX_CONSUMERS_PER_KEY
            || versions >= MAX_CONSUMER_VERSIONS_PER_KEY
        {
            metrics::counter!("tessera_consumers_dropped_total").increment(1);
            return None;
        }
        state.pending_per_key.entry(key.0.clone()).or_default().0 += 1;
    }
    let entry = state.pending.entry(key).or_default();
    entry.team_id = r.team_id.to_owned();
    entry.kind = r.kind;
    if r.client.is_some() {
        entry.client = r.client.map(str::to_owned);
    }
    entry.seen_at = entry.seen_at.max(r.at);
    Some(entry)
}

impl Service {
    /// Writes what the delivery routes saw; on failure it is kept for the
    /// next attempt.
    pub async fn flush_consumers(&self) -> ServiceResult<()> {
        let seen = self.consumers.take();
        if seen.is_empty() {
            return Ok(());
        }
        if let Err(e) = self
            .store
            .record_consumers(seen.clone(), CONSUMER_CAP)
            .await
        {
            self.consumers.restore(seen);
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at: Micros, revision: Option<i64>) -> Received<'static> {
        Received {
            key_prefix: "k1",
            instance: "host-a",
            team_id: "t1",
            client: Some("127.0.0.1"),
            kind: ConsumerKind::Agent,
            at,
            revision,
        }
    }

    #[test]
    fn a_repeated_revision_records_only_the_sighting() {
        let r = ConsumerRecorder::default();
        r.received(&at(1, Some(7)), [("s1", 3), ("s2", 1)].into_iter());
        let first = r.take();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].received.len(), 2);
        r.received(&at(2, Some(7)), [("s1", 3), ("s2", 1)].into_iter());
        let second = r.take();
        assert_eq!(second[0].seen_at, 2);
        assert!(second[0].received.is_empty());
        r.received(&at(3, Some(8)), [("s1", 4)].into_iter());
        assert_eq!(r.take()[0].received, vec![("s1".to_owned(), 4, 3)]);
    }

    #[test]
    fn one_key_cannot_take_every_pending_slot() {
        let r = ConsumerRecorder::default();
        for i in 0..MAX_CONSUMERS_PER_KEY + 50 {
            let instance = format!("i{i}");
            r.seen(&Received {
                instance: &instance,
                ..at(1, None)
            });
        }
        let other = Received {
            key_prefix: "k2",
            ..at(1, None)
        };
        r.seen(&other);
        let taken = r.take();
        assert_eq!(taken.len(), MAX_CONSUMERS_PER_KEY + 1);
        assert!(taken.iter().any(|s| s.key_prefix == "k2"));
    }

    #[test]
    fn instance_ids_are_short_and_plain() {
        assert!(valid_instance("web-1.prod_a"));
        assert!(valid_instance(&"x".repeat(128)));
        for bad in ["", "a b", "a\tb", &"x".repeat(129), "é"] {
            assert!(!valid_instance(bad), "{bad:?}");
        }
    }
}
