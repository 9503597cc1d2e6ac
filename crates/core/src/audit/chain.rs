//! The HMAC-SHA256 chain that makes a log of audit events tamper-evident.
//!
//! Each event's MAC is `HMAC-SHA256(key, LINK_TAG || previous MAC ||
//! canonical(event))`, the first event's previous MAC being 32 zero bytes.
//! Since every MAC covers its predecessor, editing, forging, deleting,
//! reordering or inserting any event breaks the chain at that event for
//! anyone holding the key, and the verifier names the first broken link.
//!
//! What the chain alone cannot catch: whoever holds the MAC key can rewrite
//! the whole log, and dropping the newest events leaves a shorter chain that
//! still verifies. Signed checkpoints (`checkpoint.rs`) close both gaps.
//!
//! Verification streams: it holds the previous MAC and at most one event of
//! lookahead, so it runs in constant memory over a log of any length. Per
//! event it computes one HMAC over a few hundred bytes (about ten SHA-256
//! block compressions) and allocates nothing, which should put it well over
//! the target of 100,000 events a second on one core. That is an estimate;
//! to measure it (release build, by hand, never part of the test run):
//! `cargo test --release --lib audit::chain::tests::verify_throughput -- --ignored --nocapture`.

use super::event::AuditEvent;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::borrow::Borrow;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const MAC_LEN: usize = 32;
pub type ChainMac = [u8; MAC_LEN];

/// The previous MAC of a chain's first event.
pub const GENESIS_MAC: ChainMac = [0; MAC_LEN];

/// Separates these MACs from any other use of the same key, and names the
/// version of the event encoding (`event.rs`): a new encoding gets a new tag.
const LINK_TAG: &[u8] = b"tessera/audit/chain-link/v1\0";

/// The 256-bit key of the chain's MACs; wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = Self([0; 32]);
        rand::rngs::OsRng.fill_bytes(&mut key.0);
        key
    }

    /// The raw key, for storing it (wrapped) by whoever keeps it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HMAC-SHA256 with the key absorbed, cloned once per event. (The `hmac`
    /// crate does not wipe this state, which is as secret as the key; it
    /// lives only as long as one chainer or one verification.)
    fn keyed(&self) -> Hmac<Sha256> {
        crate::crypto::keyring::hmac_sha256(&self.0)
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

/// The MAC that links `event` to its predecessor's MAC `prev_mac`.
pub fn link(key: &ChainKey, prev_mac: &ChainMac, event: &AuditEvent) -> ChainMac {
    link_keyed(&key.keyed(), prev_mac, event)
}

fn link_keyed(keyed: &Hmac<Sha256>, prev_mac: &ChainMac, event: &AuditEvent) -> ChainMac {
    let mut mac = keyed.clone();
    mac.update(LINK_TAG);
    mac.update(prev_mac);
    event.write_canonical(|bytes| mac.update(bytes));
    mac.finalize().into_bytes().into()
}

/// An event as stored, with the MAC that links it into its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: AuditEvent,
    pub mac: ChainMac,
}

/// The last link of a chain: the next event gets `seq + 1` and is linked to
/// `mac`. Seq 0 with the genesis MAC is an empty chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub chain: String,
    pub seq: u64,
    pub mac: ChainMac,
}

impl ChainHead {
    pub fn genesis(chain: impl Into<String>) -> Self {
        Self {
            chain: chain.into(),
            seq: 0,
            mac: GENESIS_MAC,
        }
    }
}

/// A chain's 2^64 seqs are used up (at one event per microsecond, after
/// 584,000 years); no event can be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain {0} has no seq left")]
pub struct ChainFull(pub String);

/// Appends events to one chain, one at a time: the writer's side.
pub struct Chainer {
    keyed: Hmac<Sha256>,
    head: ChainHead,
}

impl Chainer {
    /// Continues the chain whose last link is `head` (`ChainHead::genesis`
    /// for a new chain; the stored head after a restart).
    pub fn new(key: &ChainKey, head: ChainHead) -> Self {
        Self {
            keyed: key.keyed(),
            head,
        }
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    /// Links `event` as the chain's next event. Its `chain` and `seq` are
    /// set here (whatever the caller put there), so the writer cannot get
    /// them wrong; every other field is MACed as given.
    pub fn append(&mut self, mut event: AuditEvent) -> Result<StoredEvent, ChainFull> {
        let seq = self
            .head
            .seq
            .checked_add(1)
            .ok_or_else(|| ChainFull(self.head.chain.clone()))?;
        event.chain.clone_from(&self.head.chain);
        event.seq = seq;
        let mac = link_keyed(&self.keyed, &self.head.mac, &event);
        self.head.seq = seq;
        self.head.mac = mac;
        Ok(StoredEvent { event, mac })
    }
}

impl fmt::Debug for Chainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chainer")
            .field("head", &self.head)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Where verification starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStart {
    /// At the chain's first event (seq 1, linked to the genesis MAC).
    Genesis { chain: String },
    /// After the head a verified checkpoint vouches for
    /// (`Checkpoint::head`): the events up to its seq may have been pruned,
    /// and the first event given must be the one at its seq + 1.
    Checkpoint(ChainHead),
}

impl ChainStart {
    pub fn genesis(chain: impl Into<String>) -> Self {
        Self::Genesis {
            chain: chain.into(),
        }
    }

    fn into_head(self) -> ChainHead {
        match self {
            Self::Genesis { chain } => ChainHead::genesis(chain),
            Self::Checkpoint(head) => head,
        }
    }
}

/// The first broken link of a chain: in chain `chain`, the event that
/// should be at `seq` is not the one the chain (or checkpoint) vouches for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain {chain} is broken at seq {seq}: {kind}")]
pub struct Broken {
    pub chain: String,
    pub seq: u64,
    pub kind: BreakKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakKind {
    #[error("its MAC does not match its content and predecessor (edited, forged, or written with another key)")]
    MacMismatch,
    #[error("the next event stored is seq {found}; the events before it are missing (deleted)")]
    Gap { found: u64 },
    #[error("seq {found} is stored in its place, and an earlier seq after that (reordered)")]
    Reordered { found: u64 },
    #[error("seq {found} comes next, at or before a seq already verified (repeated, reordered or inserted)")]
    OutOfOrder { found: u64 },
    #[error("the event there belongs to chain {found} (moved from another chain)")]
    WrongChain { found: String },
    #[error("the log ends at seq {last}, before the checkpoint's seq (truncated)")]
    Truncated { last: u64 },
    #[error("its MAC is not the one the signed checkpoint holds (the log was rewritten)")]
    Rewritten,
    #[error("the signed checkpoint that stands for its pruned events does not hold: {0}")]
    BadAnchor(String),
    #[error("its events up to here were pruned, and no shipped checkpoint file holds the pruning anchor that stands for them")]
    PrunedUnshipped,
    #[error("its pruning anchor names the checkpoint at seq {checked} it was checked against, and no shipped checkpoint file holds that checkpoint")]
    AnchorBasisUnshipped { checked: u64 },
    #[error("its events after the checkpoint shipped here were pruned through seq {through}, by another node or a forger")]
    PrunedPast { through: u64 },
}

/// Verifies `events`, in ascending seq order, from `start`, and returns the
/// head of the verified chain. It proves that every event is unchanged and
/// in place relative to `start`; that no event is missing at the tail is
/// shown only by `checkpoint::extends` against a signed checkpoint.
pub fn verify_chain<I>(key: &ChainKey, start: ChainStart, events: I) -> Result<ChainHead, Broken>
where
    I: IntoIterator,
    I::Item: Borrow<StoredEvent>,
{
    let keyed = key.keyed();
    let mut head = start.into_head();
    let mut events = events.into_iter().peekable();
    while let Some(item) = events.next() {
        let stored: &StoredEvent = item.borrow();
        let found = stored.event.seq;
        let broken = |seq, kind| Broken {
            chain: head.chain.clone(),
            seq,
            kind,
        };
        // The head at u64::MAX has no successor: anything after it is out
        // of order.
        let Some(expected) = head.seq.checked_add(1) else {
            return Err(broken(head.seq, BreakKind::OutOfOrder { found }));
        };
        if stored.event.chain != head.chain {
            let found = stored.event.chain.clone();
            return Err(broken(expected, BreakKind::WrongChain { found }));
        }
        if found < expected {
            return Err(broken(expected, BreakKind::OutOfOrder { found }));
        }
        if found > expected {
            // One event of lookahead tells a deletion from a reordering: in
            // the latter, the skipped seqs come after.
            let reordered = events
                .peek()
                .is_some_and(|next| next.borrow().event.seq < found);
            let kind = if reordered {
                BreakKind::Reordered { found }
            } else {
                BreakKind::Gap { found }
            };
            return Err(broken(expected, kind));
        }
        let mac = link_keyed(&keyed, &head.mac, &stored.event);
        if !bool::from(mac.ct_eq(&stored.mac)) {
            return Err(broken(expected, BreakKind::MacMismatch));
        }
        head.seq = expected;
        head.mac = mac;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testutil::{chain_of, chain_with, event, key, one_byte_edits, CHAIN};

    fn genesis() -> ChainStart {
        ChainStart::genesis(CHAIN)
    }

    fn broken(seq: u64, kind: BreakKind) -> Result<ChainHead, Broken> {
        Err(Broken {
            chain: CHAIN.to_owned(),
            seq,
            kind,
        })
    }

    #[test]
    fn untouched_chain_verifies() {
        let events = chain_of(&key(), 10);
        let head = verify_chain(&key(), genesis(), &events).unwrap();
        assert_eq!(
            head,
            ChainHead {
                chain: CHAIN.to_owned(),
                seq: 10,
                mac: events[9].mac,
            }
        );
        // Owned events too (a store's cursor yields them).
        assert_eq!(verify_chain(&key(), genesis(), events).unwrap(), head);
    }

    #[test]
    fn empty_chain_verifies_to_genesis() {
        let none: Vec<StoredEvent> = Vec::new();
        let head = verify_chain(&key(), genesis(), &none).unwrap();
        assert_eq!(head, ChainHead::genesis(CHAIN));
    }

    #[test]
    fn chainer_links_with_link() {
        let events = chain_of(&key(), 3);
        assert_eq!(events[0].mac, link(&key(), &GENESIS_MAC, &events[0].event));
        assert_eq!(
            events[2].mac,
            link(&key(), &events[1].mac, &events[2].event)
        );
        assert_ne!(events[0].mac, events[1].mac);
    }

    /// Pins the tag and the MAC construction (the event bytes are pinned in
    /// `event.rs`): stored logs must keep verifying. (Checked against
    /// Python's `hmac` over the documented layout.)
    #[test]
    fn link_is_stable() {
        let mac = link(&key(), &GENESIS_MAC, &event(1));
        assert_eq!(
            hex::encode(mac),
            "25656ed7e79ed2b17b76d7c6f1be5dd38b2f5ad88fe16785fdecd295ab4c0cb7"
        );
    }

    #[test]
    fn chainer_sets_chain_and_seq() {
        let mut chainer = Chainer::new(&key(), ChainHead::genesis(CHAIN));
        let mut e = event(1);
        e.chain = "whatever".to_owned();
        e.seq = 99;
        let first = chainer.append(e.clone()).unwrap();
        let second = chainer.append(e).unwrap();
        assert_eq!((first.event.chain.as_str(), first.event.seq), (CHAIN, 1));
        assert_eq!(second.event.seq, 2);
        assert_eq!(chainer.head().seq, 2);
        assert_eq!(chainer.head().mac, second.mac);
    }

    #[test]
    fn chainer_continues_from_a_stored_head() {
        let whole = chain_of(&key(), 10);
        let mut chainer = Chainer::new(&key(), ChainHead::genesis(CHAIN));
        let mut events: Vec<_> = (1..=5).map(|i| chainer.append(event(i)).unwrap()).collect();
        // As after a restart: only the head is kept.
        let mut chainer = Chainer::new(&key(), chainer.head().clone());
        events.extend((6..=10).map(|i| chainer.append(event(i)).unwrap()));
        assert_eq!(events, whole);
        assert!(verify_chain(&key(), genesis(), &events).is_ok());
    }

    #[test]
    fn a_full_chain_takes_no_more_events() {
        let head = ChainHead {
            seq: u64::MAX,
            ..ChainHead::genesis(CHAIN)
        };
        let mut chainer = Chainer::new(&key(), head);
        assert_eq!(chainer.append(event(1)), Err(ChainFull(CHAIN.to_owned())));
    }

    #[test]
    fn one_changed_byte_in_any_field_names_its_seq() {
        for (field, edit) in one_byte_edits() {
            let mut events = chain_of(&key(), 10);
            edit(&mut events[4].event);
            let expected = match field {
                "chain" => BreakKind::WrongChain {
                    found: events[4].event.chain.clone(),
                },
                // seq 5 ^ 1 = 4: a seq already verified.
                "seq" => BreakKind::OutOfOrder { found: 4 },
                _ => BreakKind::MacMismatch,
            };
            assert_eq!(
                verify_chain(&key(), genesis(), &events),
                broken(5, expected),
                "{field}"
            );
        }
    }

    #[test]
    fn one_changed_byte_in_a_stored_mac_names_its_seq() {
        for seq in [1, 5, 10] {
            let mut events = chain_of(&key(), 10);
            events[seq - 1].mac[31] ^= 0x80;
            assert_eq!(
                verify_chain(&key(), genesis(), &events),
                broken(seq as u64, BreakKind::MacMismatch)
            );
        }
    }

    #[test]
    fn an_edit_with_its_mac_recomputed_breaks_the_next_link() {
        // Without the key an attacker cannot recompute the MAC; with only
        // that one MAC recomputed, the next event's link breaks.
        let mut events = chain_of(&key(), 10);
        events[4].event.result = "denied".to_owned();
        events[4].mac = link(&key(), &events[3].mac, &events[4].event);
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(6, BreakKind::MacMismatch)
        );
    }

    #[test]
    fn a_deleted_event_names_the_gap() {
        for seq in [1u64, 5] {
            let mut events = chain_of(&key(), 10);
            events.remove(seq as usize - 1);
            assert_eq!(
                verify_chain(&key(), genesis(), &events),
                broken(seq, BreakKind::Gap { found: seq + 1 })
            );
        }
        let mut events = chain_of(&key(), 10);
        events.drain(3..6);
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(4, BreakKind::Gap { found: 7 })
        );
    }

    #[test]
    fn swapped_events_name_the_place() {
        let mut events = chain_of(&key(), 10);
        events.swap(3, 4);
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(4, BreakKind::Reordered { found: 5 })
        );

        let mut events = chain_of(&key(), 10);
        events.swap(3, 7);
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(4, BreakKind::Reordered { found: 8 })
        );

        // Swapped with their seqs renumbered to fit: the content is out of
        // place, so the MAC at the first of them fails.
        let mut events = chain_of(&key(), 10);
        events.swap(3, 4);
        events[3].event.seq = 4;
        events[4].event.seq = 5;
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(4, BreakKind::MacMismatch)
        );
    }

    #[test]
    fn a_repeated_event_is_out_of_order() {
        let mut events = chain_of(&key(), 10);
        let copy = events[4].clone();
        events.insert(5, copy);
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(6, BreakKind::OutOfOrder { found: 5 })
        );
    }

    #[test]
    fn an_inserted_forged_event_fails() {
        let wrong = ChainKey::from_bytes([8; 32]);
        let mut events = chain_of(&key(), 10);
        let mut forged = event(6);
        forged.action = "secret.delete".to_owned();
        let mac = link(&wrong, &events[4].mac, &forged);
        let forged = StoredEvent { event: forged, mac };

        // In place of seq 6, the later events renumbered after it.
        let mut renumbered = events.clone();
        renumbered.insert(5, forged.clone());
        for e in &mut renumbered[6..] {
            e.event.seq += 1;
        }
        assert_eq!(
            verify_chain(&key(), genesis(), &renumbered),
            broken(6, BreakKind::MacMismatch)
        );

        // Appended at the tail.
        let mac = link(&wrong, &events[9].mac, &event(11));
        events.push(StoredEvent {
            event: event(11),
            mac,
        });
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(11, BreakKind::MacMismatch)
        );
    }

    #[test]
    fn a_whole_chain_under_another_key_fails_at_its_first_event() {
        let events = chain_of(&ChainKey::from_bytes([8; 32]), 10);
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(1, BreakKind::MacMismatch)
        );
    }

    #[test]
    fn an_event_of_another_chain_is_named() {
        let mut events = chain_of(&key(), 10);
        let mut chainer = Chainer::new(&key(), ChainHead::genesis("node-b"));
        let others: Vec<_> = (1..=5).map(|i| chainer.append(event(i)).unwrap()).collect();
        events[4] = others[4].clone();
        assert_eq!(
            verify_chain(&key(), genesis(), &events),
            broken(
                5,
                BreakKind::WrongChain {
                    found: "node-b".to_owned()
                }
            )
        );
    }

    #[test]
    fn a_truncated_tail_still_verifies() {
        // The chain alone cannot tell; `checkpoint::extends` can.
        let mut events = chain_of(&key(), 10);
        events.truncate(7);
        let head = verify_chain(&key(), genesis(), &events).unwrap();
        assert_eq!(head.seq, 7);
    }

    #[test]
    fn verification_starts_after_a_pruned_prefix() {
        let events = chain_of(&key(), 10);
        let at_4 = ChainHead {
            chain: CHAIN.to_owned(),
            seq: 4,
            mac: events[3].mac,
        };
        let start = || ChainStart::Checkpoint(at_4.clone());
        let head = verify_chain(&key(), start(), &events[4..]).unwrap();
        assert_eq!((head.seq, head.mac), (10, events[9].mac));

        // The first event after the prefix deleted too.
        assert_eq!(
            verify_chain(&key(), start(), &events[5..]),
            broken(5, BreakKind::Gap { found: 6 })
        );
        // The prefix not pruned: its events are not after the start.
        assert_eq!(
            verify_chain(&key(), start(), &events[3..]),
            broken(5, BreakKind::OutOfOrder { found: 4 })
        );
        // A start the events do not extend.
        let elsewhere = ChainHead {
            mac: events[2].mac,
            ..at_4
        };
        assert_eq!(
            verify_chain(&key(), ChainStart::Checkpoint(elsewhere), &events[4..]),
            broken(5, BreakKind::MacMismatch)
        );
    }

    #[test]
    fn events_with_fields_absent_chain_and_verify() {
        let sparse = |n| AuditEvent {
            actor_key: None,
            actor_type: None,
            actor_user: None,
            org_id: None,
            team_id: None,
            target_id: None,
            target_name: None,
            request_id: None,
            client: None,
            detail: None,
            ..event(n)
        };
        let events = chain_with(&key(), 5, sparse);
        assert!(verify_chain(&key(), genesis(), &events).is_ok());
        assert_ne!(events, chain_of(&key(), 5));
    }

    #[test]
    fn broken_says_where_and_why() {
        let b = Broken {
            chain: CHAIN.to_owned(),
            seq: 5,
            kind: BreakKind::Gap { found: 7 },
        };
        assert_eq!(
            b.to_string(),
            "audit chain node-a is broken at seq 5: the next event stored is seq 7; \
             the events before it are missing (deleted)"
        );
    }

    #[test]
    fn keys_are_redacted_in_debug() {
        let k = ChainKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{k:?}"), "ChainKey([redacted])");
        let chainer = format!("{:?}", Chainer::new(&k, ChainHead::genesis(CHAIN)));
        assert!(chainer.contains("[redacted]"), "{chainer}");
        assert!(!chainer.contains("171"), "{chainer}"); // 0xab
        assert_ne!(
            ChainKey::generate().as_bytes(),
            ChainKey::generate().as_bytes()
        );
    }

    /// Not a test of speed (no timing assertions): prints events per second.
    /// Run on an otherwise idle machine, in a release build:
    /// `cargo test --release --lib audit::chain::tests::verify_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test; run by hand in release"]
    fn verify_throughput() {
        const N: u64 = 500_000;
        let events = chain_of(&key(), N);
        let started = std::time::Instant::now();
        let head = verify_chain(&key(), genesis(), &events).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(head.seq, N);
        println!(
            "verified {N} events in {elapsed:?}: {:.0} events/s",
            N as f64 / elapsed.as_secs_f64()
        );
    }
}
