//! Reading and keeping the audit log: verifying its chains (against the
//! signed checkpoints exported earlier, when given), exporting it, signing
//! checkpoints of its heads, pruning old events behind a signed checkpoint,
//! and the organization's paged view of its events.

use super::audit::system_event;
use super::{Service, ServiceError, ServiceResult};
use crate::audit::chain::{verify_chain, BreakKind, Broken, ChainKey, ChainStart, StoredEvent};
use crate::audit::checkpoint::{
    extends, verify_checkpoint, Checkpoint, CheckpointPublicKey, CheckpointSigner, SignedCheckpoint,
};
use crate::domain::access::{authorize_org, OrgAction, Principal};
use crate::domain::audit_action::AuditAction;
use crate::domain::time::Micros;
use crate::store::AuditFilter;
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
        /// Checkpoints of events pruned since (the log's own signed
        /// checkpoint stands for them; nothing is left to compare).
        pruned: usize,
    },
    /// The first broken link.
    Broken(Broken),
}

impl Service {
    /// The key that verifies this store's checkpoints.
    pub fn audit_public_key(&self) -> &CheckpointPublicKey {
        self.audit_signer.public_key()
    }

    /// Checks every chain of the audit log, link by link, a page at a time
    /// (constant memory whatever the log's length), starting each pruned
    /// chain from the signed checkpoint that stands for its pruned prefix.
    /// Each of `checkpoints` (already verified against `public_key`) must
    /// still be extended by the log: its chain must hold, at its seq, the
    /// event with its MAC (or have pruned it, behind a checkpoint of its
    /// own). `public_key` also verifies those prefix checkpoints.
    pub async fn verify_audit(
        &self,
        public_key: &CheckpointPublicKey,
        checkpoints: &[Checkpoint],
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
        for c in checkpoints {
            expected.entry(c.chain.as_str()).or_default().push(c);
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
            // Checkpoints at or before the pruned prefix's end: only its own
            // one can still be compared.
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

    /// Prunes every chain's events older than the retention (none when the
    /// log is kept for ever): the last pruned event's head is signed and
    /// stored as the chain's new start, so the rest still verifies. A
    /// chain's last event always stays. How many events were pruned.
    pub async fn prune_audit(&self, now: Micros) -> ServiceResult<u64> {
        let Some(retention) = self.limits.audit_retention else {
            return Ok(0);
        };
        let before = now.saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
        let mut pruned = 0;
        for chain in self.store.audit_chains().await? {
            let Some(head) = self.store.audit_prune_point(&chain, before).await? else {
                continue;
            };
            let anchor = self
                .audit_signer
                .sign(&head, now)
                .to_json_line()
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let event = system_event(AuditAction::AuditPrune);
            pruned += self
                .store
                .prune_audit(&chain, head.seq, anchor, event)
                .await?;
        }
        Ok(pruned)
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

/// One page of events, and where the next one starts (if there is one).
#[derive(Debug)]
pub struct AuditPage {
    pub events: Vec<StoredEvent>,
    pub next: Option<(Micros, String, u64)>,
}
