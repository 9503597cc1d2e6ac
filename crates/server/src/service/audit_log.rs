//! Reading and keeping the audit log: verifying its chains (against the
//! signed checkpoints shipped earlier, when given), exporting it, signing
//! checkpoints of its heads once the log is checked to continue the last
//! ones shipped, pruning old events behind a shipped anchor, and the
//! organization's paged view of its events.

use super::audit::system_event;
use super::{ServiceError, ServiceResult};
use crate::audit::chain::{
    verify_chain, BreakKind, Broken, ChainHead, ChainKey, ChainStart, StoredEvent,
};
use crate::audit::checkpoint::{
    extends, verify_checkpoint, Checkpoint, CheckpointPublicKey, CheckpointSigner, SignedCheckpoint,
};
use crate::domain::access::{authorize_org, OrgAction, Principal};
use crate::domain::audit_action::AuditAction;
use crate::domain::time::Micros;
use crate::store::{AuditFilter, AuditStore};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The audit log's two keys, unwrapped by the master key at start.
pub struct AuditKeys {
    /// Links events into chains (HMAC-SHA256).
    pub chain: Arc<ChainKey>,
    /// Signs checkpoints of the chains' heads (Ed25519).
    pub signer: Arc<CheckpointSigner>,
}

/// Events read and checked at a time.
const VERIFY_PAGE: usize = 10_000;

/// What `tessera audit verify` found.
#[derive(Debug)]
pub enum Verified {
    /// Every chain's every link holds, and the log extends every checkpoint
    /// given that it still holds events for.
    Intact {
        chains: usize,
        events: u64,
        /// Checkpoints proved against the events.
        proved: usize,
        /// Shipped lines of events pruned since, behind the chain's stored
        /// anchor (itself among the shipped lines when lines were given).
        pruned: usize,
    },
    /// The first broken link.
    Broken(Broken),
}

/// The audit log aggregate: reads, verifies, exports, signs and prunes the
/// chains. Holds the store's audit side only, the chain key, the checkpoint
/// signer and the retention; the events themselves are appended by the
/// other aggregates' writes, in their transactions.
pub struct AuditLog {
    store: Arc<dyn AuditStore + Send + Sync>,
    /// The audit chain key (also installed in the store, which links).
    audit_key: Arc<ChainKey>,
    /// Signs checkpoints of the audit chains' heads (exported, and standing
    /// for pruned prefixes).
    audit_signer: Arc<CheckpointSigner>,
    /// How long events are kept before the prune job removes them.
    retention: Option<std::time::Duration>,
}

impl AuditLog {
    pub(crate) fn new(
        store: Arc<dyn AuditStore + Send + Sync>,
        keys: AuditKeys,
        retention: Option<std::time::Duration>,
    ) -> Self {
        Self {
            store,
            audit_key: keys.chain,
            audit_signer: keys.signer,
            retention,
        }
    }

    /// The key that verifies this store's checkpoints.
    pub fn audit_public_key(&self) -> &CheckpointPublicKey {
        self.audit_signer.public_key()
    }

    /// Checks every chain of the audit log, link by link, a page at a time
    /// (constant memory whatever the log's length), starting each pruned
    /// chain from the signed anchor that stands for its pruned prefix.
    ///
    /// With `shipped` (the lines of every checkpoint file shipped, already
    /// verified against `public_key`), it also proves the log against
    /// them: each line's chain must still hold, at its seq, the event with
    /// its MAC, or have pruned it behind an anchor that is itself among the
    /// shipped lines (as is the checkpoint that anchor was checked
    /// against). A pruned prefix is thus proved by what was shipped, never
    /// by the database alone. `public_key` also verifies the anchors.
    pub async fn verify_audit(
        &self,
        public_key: &CheckpointPublicKey,
        shipped: Option<&[Checkpoint]>,
    ) -> ServiceResult<Verified> {
        let mut anchors = BTreeMap::new();
        for (chain, line) in self.store.audit_anchors().await? {
            match anchor_of(public_key, &chain, &line) {
                Ok(anchor) => anchors.insert(chain, anchor),
                Err(kind) => {
                    return Ok(Verified::Broken(Broken {
                        chain,
                        seq: 0,
                        kind,
                    }))
                }
            };
        }
        let mut expected: BTreeMap<&str, Vec<&Checkpoint>> = BTreeMap::new();
        for c in shipped.unwrap_or_default() {
            expected.entry(c.chain.as_str()).or_default().push(c);
        }
        if shipped.is_some() {
            for (chain, anchor) in &anchors {
                let lines = expected.get(chain.as_str()).map_or(&[][..], Vec::as_slice);
                if let Err(kind) = anchor_was_shipped(anchor, lines) {
                    return Ok(Verified::Broken(Broken {
                        chain: chain.clone(),
                        seq: anchor.seq,
                        kind,
                    }));
                }
            }
        }
        let chains: BTreeSet<String> = self
            .store
            .audit_chains()
            .await?
            .into_iter()
            .chain(anchors.keys().cloned())
            .chain(expected.keys().map(|c| c.to_string()))
            .collect();
        let (mut events, mut proved, mut pruned) = (0, 0, 0);
        for chain in &chains {
            let mut pending = expected.remove(chain.as_str()).unwrap_or_default();
            pending.sort_by_key(|c| std::cmp::Reverse(c.seq));
            let anchor = anchors.remove(chain);
            let mut start = match &anchor {
                Some(a) => ChainStart::Checkpoint(a.head()),
                None => ChainStart::genesis(chain.clone()),
            };
            // Lines at or before the pruned prefix's end: the anchor (itself
            // shipped, checked above) stands for them; one at its seq must
            // hold its MAC.
            let anchored = anchor.as_ref().map_or(0, |a| a.seq);
            while let Some(c) = pending.last().filter(|c| c.seq <= anchored) {
                match anchor.as_ref().filter(|a| a.seq == c.seq) {
                    Some(a) if a.mac != c.mac => {
                        return Ok(Verified::Broken(Broken {
                            chain: chain.clone(),
                            seq: c.seq,
                            kind: BreakKind::Rewritten,
                        }))
                    }
                    Some(_) => proved += 1,
                    None if c.seq == 0 => match extends(c, std::iter::empty::<StoredEvent>()) {
                        Ok(()) => proved += 1,
                        Err(broken) => return Ok(Verified::Broken(broken)),
                    },
                    None => pruned += 1,
                }
                pending.pop();
            }
            let mut last = anchored;
            loop {
                let page = self.store.audit_events(chain, last, VERIFY_PAGE).await?;
                let Some(tail) = page.last() else { break };
                last = tail.event.seq;
                events += page.len() as u64;
                match verify_chain(&self.audit_key, start, &page) {
                    Ok(head) => start = ChainStart::Checkpoint(head),
                    Err(broken) => return Ok(Verified::Broken(broken)),
                }
                while let Some(c) = pending.last().filter(|c| c.seq <= last) {
                    if let Err(broken) = extends(c, &page) {
                        return Ok(Verified::Broken(broken));
                    }
                    proved += 1;
                    pending.pop();
                }
            }
            // A pruned chain keeps at least its last event; none after the
            // prefix means the rest was deleted.
            let truncated_at = match (&anchor, last == anchored) {
                (Some(a), true) => Some(a.seq + 1),
                _ => pending.last().map(|c| c.seq),
            };
            if let Some(seq) = truncated_at {
                return Ok(Verified::Broken(Broken {
                    chain: chain.clone(),
                    seq,
                    kind: BreakKind::Truncated { last },
                }));
            }
        }
        Ok(Verified::Intact {
            chains: chains.len(),
            events,
            proved,
            pruned,
        })
    }

    /// Every event at or after `since` (microseconds), chain by chain in
    /// seq order, handed to `out` a page at a time.
    pub async fn export_audit(
        &self,
        since: i64,
        mut out: impl FnMut(&StoredEvent) -> std::io::Result<()>,
    ) -> ServiceResult<u64> {
        let mut n = 0;
        for chain in self.store.audit_chains().await? {
            let mut after = 0;
            loop {
                let page = self.store.audit_events(&chain, after, VERIFY_PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.event.seq;
                for e in page.iter().filter(|e| e.event.time >= since) {
                    out(e).map_err(|e| ServiceError::Internal(e.to_string()))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// A signed checkpoint of every chain's head, at `now`: to be kept
    /// where the server cannot rewrite it, and given to `verify` later.
    pub async fn sign_audit_heads(&self, now: Micros) -> ServiceResult<Vec<SignedCheckpoint>> {
        let heads = self.store.audit_heads().await?;
        Ok(heads
            .iter()
            .map(|head| self.audit_signer.sign(head, now))
            .collect())
    }

    /// Every chain's head now, by chain.
    pub async fn audit_heads(&self) -> ServiceResult<Vec<ChainHead>> {
        Ok(self.store.audit_heads().await?)
    }

    /// A signed checkpoint of `head` at `now`.
    pub fn sign_audit_head(&self, head: &ChainHead, now: Micros) -> SignedCheckpoint {
        self.audit_signer.sign(head, now)
    }

    /// The retention of audit events (`None`: kept for ever).
    pub fn audit_retention(&self) -> Option<std::time::Duration> {
        self.retention
    }

    /// The stored pruning anchor of `chain`, checked against this store's
    /// key; `None` when the chain was never pruned.
    async fn stored_anchor(
        &self,
        chain: &str,
    ) -> ServiceResult<Result<Option<Checkpoint>, Broken>> {
        let stored = self.store.audit_anchors().await?;
        let Some((_, line)) = stored.iter().find(|(c, _)| c == chain) else {
            return Ok(Ok(None));
        };
        Ok(anchor_of(self.audit_public_key(), chain, line)
            .map(Some)
            .map_err(|kind| Broken {
                chain: chain.to_owned(),
                seq: 0,
                kind,
            }))
    }

    /// Whether the log still continues `from`, the head of `to`'s chain this
    /// node last shipped, up to `to`: the event at `from`'s seq still holds
    /// its MAC (or a stored anchor at that seq does), and every link after
    /// it up to `to` verifies. Checked before a checkpoint of `to` is
    /// shipped, so that the lines a node ships for a chain each continue the
    /// one before: a log rewritten or cut since is never vouched for again,
    /// and an anchor that jumps past what this node shipped is not taken on
    /// trust. Reads the events since `from` once.
    pub async fn audit_continues(
        &self,
        from: &ChainHead,
        to: &ChainHead,
    ) -> ServiceResult<Result<(), Broken>> {
        let broken = |seq, kind| {
            Ok(Err(Broken {
                chain: from.chain.clone(),
                seq,
                kind,
            }))
        };
        if to.seq < from.seq {
            return broken(from.seq, BreakKind::Truncated { last: to.seq });
        }
        let anchor = match self.stored_anchor(&from.chain).await? {
            Ok(anchor) => anchor,
            Err(b) => return Ok(Err(b)),
        };
        let mut after = from.seq.saturating_sub(1);
        match &anchor {
            Some(a) if a.seq > from.seq => {
                return broken(from.seq, BreakKind::PrunedPast { through: a.seq })
            }
            Some(a) if a.seq == from.seq && a.mac != from.mac => {
                return broken(from.seq, BreakKind::Rewritten)
            }
            Some(a) if a.seq == from.seq => after = from.seq,
            _ => {}
        }
        if after < from.seq {
            // The event at `from` itself: still the one shipped?
            let found = self.store.audit_events(&from.chain, after, 1).await?;
            if let Err(b) = extends(&plain(from), &found) {
                return Ok(Err(b));
            }
            after = from.seq;
        }
        let mut start = ChainStart::Checkpoint(from.clone());
        while after < to.seq {
            let limit = VERIFY_PAGE.min(usize::try_from(to.seq - after).unwrap_or(VERIFY_PAGE));
            let page = self.store.audit_events(&from.chain, after, limit).await?;
            let Some(last) = page.last().map(|e| e.event.seq) else {
                return broken(after + 1, BreakKind::Truncated { last: after });
            };
            match verify_chain(&self.audit_key, start, &page) {
                Ok(head) => start = ChainStart::Checkpoint(head),
                Err(b) => return Ok(Err(b)),
            }
            after = last;
        }
        match start {
            ChainStart::Checkpoint(head) if head.mac != to.mac => {
                broken(to.seq, BreakKind::Rewritten)
            }
            _ => Ok(Ok(())),
        }
    }

    /// The pruning anchor that would let `through` (a head of its chain
    /// this node shipped, older than the retention) be the chain's new
    /// start, after checking that the log still holds it and `last` (the
    /// chain's head this node shipped last): `Ok(None)` when there is
    /// nothing to prune (already pruned there, or `through` is the chain's
    /// last event, which always stays so that appending continues from
    /// it), `Err` when the log no longer holds what was shipped, or holds a
    /// start this node cannot vouch for (a prefix pruned before
    /// `first_seq`, the first seq this node shipped). The anchor is to be
    /// shipped, and only then committed (`commit_audit_prune`): an anchor
    /// in the database is always one that left the server first.
    pub async fn audit_prune_anchor(
        &self,
        through: &ChainHead,
        last: &ChainHead,
        first_seq: u64,
        now: Micros,
    ) -> ServiceResult<Result<Option<SignedCheckpoint>, Broken>> {
        let chain = &through.chain;
        let broken = |seq, kind| {
            Ok(Err(Broken {
                chain: chain.clone(),
                seq,
                kind,
            }))
        };
        let anchor = match self.stored_anchor(chain).await? {
            Ok(anchor) => anchor,
            Err(b) => return Ok(Err(b)),
        };
        let anchored = anchor.as_ref().map_or(0, |a| a.seq);
        if through.seq <= anchored {
            return Ok(Ok(None));
        }
        if anchor.is_some() && first_seq > anchored {
            // Pruned through `anchored` before this node shipped anything
            // of the chain: it cannot tell an anchor another node shipped
            // from a forged one, so it leaves the chain to that node.
            return broken(anchored, BreakKind::PrunedPast { through: anchored });
        }
        for shipped in [through, last] {
            let found = self
                .store
                .audit_events(chain, shipped.seq.saturating_sub(1), 1)
                .await?;
            if let Err(b) = extends(&plain(shipped), &found) {
                return Ok(Err(b));
            }
        }
        let newer = self.store.audit_events(chain, through.seq, 1).await?;
        if newer.is_empty() {
            return Ok(Ok(None));
        }
        Ok(Ok(Some(self.audit_signer.sign_anchor(through, now, last))))
    }

    /// Deletes the events an anchor (from `audit_prune_anchor`, shipped
    /// since) stands for, and stores it as the chain's start, with an
    /// `audit.prune` event, in one transaction; how many events went.
    pub async fn commit_audit_prune(&self, anchor: &SignedCheckpoint) -> ServiceResult<u64> {
        let line = anchor
            .to_json_line()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let c = &anchor.checkpoint;
        let event = system_event(AuditAction::AuditPrune);
        Ok(self.store.prune_audit(&c.chain, c.seq, line, event).await?)
    }

    /// One page of at most `limit` of the caller's organization's events,
    /// newest first (org admins only).
    pub async fn audit_page(
        &self,
        p: &Principal,
        filter: &AuditFilter,
        limit: usize,
    ) -> ServiceResult<AuditPage> {
        let org = authorize_org(p, OrgAction::ReadAudit)?;
        // One more than asked: whether a next page exists.
        let mut events = self
            .store
            .query_audit(org.org_id(), filter, limit + 1)
            .await?;
        let more = events.len() > limit;
        events.truncate(limit);
        let next = more
            .then(|| events.last())
            .flatten()
            .map(|e| (e.event.time, e.event.chain.clone(), e.event.seq));
        Ok(AuditPage { events, next })
    }
}

/// The anchor of `chain` (the checkpoint standing for its pruned prefix),
/// if `public_key` signed it for that chain.
fn anchor_of(
    public_key: &CheckpointPublicKey,
    chain: &str,
    line: &str,
) -> Result<Checkpoint, BreakKind> {
    let bad = |why: String| BreakKind::BadAnchor(why);
    let signed = SignedCheckpoint::from_json_line(line).map_err(|e| bad(e.to_string()))?;
    let checkpoint = verify_checkpoint(public_key, &signed).map_err(|e| bad(e.to_string()))?;
    if checkpoint.chain != chain {
        return Err(bad(format!("it names chain {}", checkpoint.chain)));
    }
    Ok(checkpoint)
}

/// `head` as an unsigned checkpoint, for `extends`: what a head this node
/// shipped proves about the log is the same whoever signed it.
fn plain(head: &ChainHead) -> Checkpoint {
    Checkpoint {
        chain: head.chain.clone(),
        seq: head.seq,
        mac: head.mac,
        time: 0,
        signer: String::new(),
        prune: None,
    }
}

/// Whether `anchor`, a chain's stored pruning anchor, is among `shipped`
/// (that chain's shipped lines) exactly as stored, as is the checkpoint it
/// names as checked: so that no pruning stands on the database's word.
fn anchor_was_shipped(anchor: &Checkpoint, shipped: &[&Checkpoint]) -> Result<(), BreakKind> {
    let Some(basis) = &anchor.prune else {
        // Signed as a plain checkpoint (by a version that did not ship
        // its anchors): nothing shipped can show it.
        return Err(BreakKind::PrunedUnshipped);
    };
    if !shipped.contains(&anchor) {
        return Err(BreakKind::PrunedUnshipped);
    }
    let named = |c: &&&Checkpoint| {
        !c.is_anchor() && c.seq == basis.checked_seq && c.mac == basis.checked_mac
    };
    if basis.checked_seq < anchor.seq || !shipped.iter().any(|c| named(&c)) {
        return Err(BreakKind::AnchorBasisUnshipped {
            checked: basis.checked_seq,
        });
    }
    Ok(())
}

/// One page of events, and where the next one starts (if there is one).
#[derive(Debug)]
pub struct AuditPage {
    pub events: Vec<StoredEvent>,
    pub next: Option<(Micros, String, u64)>,
}
