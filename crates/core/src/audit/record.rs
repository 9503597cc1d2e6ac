//! A node's memory of the checkpoints it shipped, chain by chain: read back
//! from its checkpoint file at start and kept up as it ships more.
//!
//! It answers three questions. Has a chain moved since the last line
//! shipped (if not, nothing is written)? What must the log still extend
//! (the last line: the next one is shipped only once the log is checked to
//! continue it)? And where may the chain be pruned: only through a head
//! this node shipped, older than the retention, so that every pruning
//! anchor stands on a checkpoint that left the server before it.
//!
//! Memory stays bounded whatever the interval: of the heads that could
//! become pruning points, a new one replaces the newest kept while it is
//! within `step` of the one before that, so at most about two are kept per
//! `step`, and those at or before a pruning are dropped.

use super::chain::ChainHead;
use super::checkpoint::Checkpoint;
use std::collections::{HashMap, VecDeque};

/// One shipped head that may become a pruning point.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shipped {
    head: ChainHead,
    /// When it was signed (microseconds): every event up to it is older.
    time: i64,
}

#[derive(Debug, Default)]
struct ChainRecord {
    /// The shipped line with the highest seq (a checkpoint or an anchor).
    last: Option<ChainHead>,
    /// The lowest seq shipped: this node has followed the chain from there.
    first_seq: Option<u64>,
    /// Plain checkpoints shipped, by seq, thinned to `step`.
    history: VecDeque<Shipped>,
}

/// What this node shipped, by chain.
#[derive(Debug)]
pub struct ShippedRecord {
    chains: HashMap<String, ChainRecord>,
    /// Microseconds: pruning points are kept about two per `step`.
    step: i64,
}

impl ShippedRecord {
    /// An empty record keeping pruning points at least `step` microseconds
    /// apart.
    pub fn new(step: i64) -> Self {
        Self {
            chains: HashMap::new(),
            step: step.max(0),
        }
    }

    /// Notes a line shipped (or read back from the file), in the order
    /// they were shipped.
    pub fn note(&mut self, c: &Checkpoint) {
        let step = self.step;
        let record = self.chains.entry(c.chain.clone()).or_default();
        let head = c.head();
        if record.last.as_ref().is_none_or(|last| head.seq >= last.seq) {
            record.last = Some(head.clone());
        }
        record.first_seq = Some(record.first_seq.map_or(c.seq, |f| f.min(c.seq)));
        if c.is_anchor() {
            return;
        }
        let history = &mut record.history;
        if history.back().is_some_and(|b| b.head.seq >= c.seq) {
            return;
        }
        let shipped = Shipped { head, time: c.time };
        // The one before the newest is within `step`: the newest can go.
        let crowded = history.len() >= 2
            && history
                .get(history.len() - 2)
                .is_some_and(|before| c.time.saturating_sub(before.time) < step);
        if crowded {
            history.pop_back();
        }
        history.push_back(shipped);
    }

    /// The head last shipped for `chain`.
    pub fn last(&self, chain: &str) -> Option<&ChainHead> {
        self.chains.get(chain).and_then(|r| r.last.as_ref())
    }

    /// The lowest seq shipped for `chain`: the node has followed the chain
    /// from there on.
    pub fn first_seq(&self, chain: &str) -> Option<u64> {
        self.chains.get(chain).and_then(|r| r.first_seq)
    }

    /// Every chain the record holds.
    pub fn chains(&self) -> impl Iterator<Item = &str> {
        self.chains.keys().map(String::as_str)
    }

    /// The latest shipped checkpoint of `chain` signed at or before
    /// `before`, with a seq below `below`: where the chain may be pruned
    /// through.
    pub fn prune_point(&self, chain: &str, before: i64, below: u64) -> Option<&ChainHead> {
        let record = self.chains.get(chain)?;
        record
            .history
            .iter()
            .rev()
            .find(|s| s.time <= before && s.head.seq < below)
            .map(|s| &s.head)
    }

    /// Forgets the pruning points of `chain` up to `seq` (pruned).
    pub fn pruned_through(&mut self, chain: &str, seq: u64) {
        if let Some(record) = self.chains.get_mut(chain) {
            while record.history.front().is_some_and(|s| s.head.seq <= seq) {
                record.history.pop_front();
            }
        }
    }

    /// How many pruning points are kept, all chains together.
    pub fn kept(&self) -> usize {
        self.chains.values().map(|r| r.history.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::CheckpointSigner;

    fn head(seq: u64) -> ChainHead {
        ChainHead {
            chain: "c".into(),
            seq,
            mac: [seq as u8; 32],
        }
    }

    /// A checkpoint as the record sees it (signatures are checked before
    /// lines reach it, so none is made here).
    fn line(seq: u64, time: i64) -> Checkpoint {
        let h = head(seq);
        Checkpoint {
            chain: h.chain,
            seq,
            mac: h.mac,
            time,
            signer: String::new(),
            prune: None,
        }
    }

    #[test]
    fn last_first_and_prune_points() {
        let mut r = ShippedRecord::new(0);
        assert_eq!(r.last("c"), None);
        for (seq, time) in [(3, 10), (5, 20), (9, 30)] {
            r.note(&line(seq, time));
        }
        assert_eq!(r.last("c"), Some(&head(9)));
        assert_eq!(r.first_seq("c"), Some(3));
        assert_eq!(r.prune_point("c", 9, 10), None);
        assert_eq!(r.prune_point("c", 20, 10), Some(&head(5)));
        assert_eq!(r.prune_point("c", 100, 10), Some(&head(9)));
        // Never the chain's last event.
        assert_eq!(r.prune_point("c", 100, 9), Some(&head(5)));
        r.pruned_through("c", 5);
        assert_eq!(r.prune_point("c", 25, 10), None);
        assert_eq!(r.prune_point("c", 30, 10), Some(&head(9)));
        // The first seq followed does not move with pruning.
        assert_eq!(r.first_seq("c"), Some(3));
    }

    #[test]
    fn anchors_count_as_shipped_but_are_not_prune_points() {
        let mut r = ShippedRecord::new(0);
        r.note(&line(5, 10));
        let signer = CheckpointSigner::from_seed(&[1; 32]);
        let anchor = signer.sign_anchor(&head(4), 20, &head(5)).checkpoint;
        r.note(&anchor);
        // Lower than the last line: the last stays.
        assert_eq!(r.last("c"), Some(&head(5)));
        assert_eq!(r.first_seq("c"), Some(4));
        assert_eq!(r.prune_point("c", 100, 6), Some(&head(5)));
    }

    #[test]
    fn pruning_points_are_thinned_to_the_step() {
        // One line a second for a day, a step of a minute.
        let mut r = ShippedRecord::new(60);
        for i in 1..=86_400u64 {
            r.note(&line(i, i as i64));
        }
        assert!(r.kept() <= 2 * 86_400 / 60 + 2, "{}", r.kept());
        assert!(r.kept() >= 86_400 / 120, "{}", r.kept());
        // The newest is always a point, and points are near every moment.
        assert_eq!(r.prune_point("c", 86_400, u64::MAX), Some(&head(86_400)));
        let p = r.prune_point("c", 50_000, u64::MAX).unwrap();
        assert!(p.seq <= 50_000 && p.seq > 50_000 - 120, "{}", p.seq);
    }
}
