//! The audit aggregate: events appended to MAC-linked chains (see
//! `tessera_core::audit`) in the transaction of the change they record, and read
//! back chain by chain for verification and export.
//!
//! Each engine appends to chains of its own: SQLite's one writer thread to
//! one chain per process; PostgreSQL to a few chain slots per node, each
//! held by one transaction at a time, so no write waits on another node's or
//! on one shared row. A slot's head is advanced only once its transaction
//! has committed; after a failed or uncertain commit it is read again from
//! the table, so the chain never skips or repeats a seq.

use super::row::Row;
use super::{StoreError, StoreResult};
use async_trait::async_trait;
use std::sync::{Arc, OnceLock};
use tessera_core::audit::chain::{ChainHead, ChainKey, Chainer, StoredEvent};
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::audit_action::AuditAction;
use tessera_core::domain::time::Micros;
use tessera_core::domain::types::SecretRecord;

pub(crate) const EVENT_COLUMNS: &str = "chain, seq, time, actor_key, actor_type, actor_user, \
     org_id, team_id, action, target_id, target_name, result, request_id, client, detail, mac";

/// `c(chain)`: every chain's id, found by skipping from one chain to the
/// next through the primary key (a few lookups per chain, where `DISTINCT`
/// would read every event).
const CHAINS: &str = "WITH RECURSIVE c(chain) AS (
        SELECT min(chain) FROM audit_events
        UNION ALL
        SELECT (SELECT min(chain) FROM audit_events WHERE chain > c.chain) FROM c
        WHERE c.chain IS NOT NULL)";

/// Every chain's id, in order (both engines).
pub(crate) fn chains_sql() -> String {
    format!("{CHAINS} SELECT chain FROM c WHERE chain IS NOT NULL ORDER BY chain")
}

/// Every chain's last event as `chain, seq, mac`, by chain (both engines).
pub(crate) fn heads_sql() -> String {
    format!(
        "{CHAINS} SELECT e.chain, e.seq, e.mac FROM c JOIN audit_events e
           ON e.chain = c.chain
          AND e.seq = (SELECT max(seq) FROM audit_events WHERE chain = c.chain)
         ORDER BY e.chain"
    )
}

/// An event as stored ([`EVENT_COLUMNS`]).
pub(crate) fn event_row<R: Row>(r: &R) -> Result<StoredEvent, R::Error> {
    let seq: i64 = r.col(1)?;
    let mac: Vec<u8> = r.col(15)?;
    Ok(StoredEvent {
        event: AuditEvent {
            chain: r.col(0)?,
            // Stored from a u64 that fits (seqs count from 1); a negative
            // one can only be an edit, and fails verification as seq 0.
            seq: u64::try_from(seq).unwrap_or(0),
            time: r.col(2)?,
            actor_key: r.col(3)?,
            actor_type: r.col(4)?,
            actor_user: r.col(5)?,
            org_id: r.col(6)?,
            team_id: r.col(7)?,
            action: r.col(8)?,
            target_id: r.col(9)?,
            target_name: r.col(10)?,
            result: r.col(11)?,
            request_id: r.col(12)?,
            client: r.col(13)?,
            detail: r.col(14)?,
        },
        // A MAC of another length can only be an edit: it fails to verify.
        mac: mac.try_into().unwrap_or([0; 32]),
    })
}

/// A chain's head from `chain, seq, mac`.
pub(crate) fn head_row<R: Row>(r: &R) -> Result<ChainHead, R::Error> {
    let seq: i64 = r.col(1)?;
    let mac: Vec<u8> = r.col(2)?;
    Ok(ChainHead {
        chain: r.col(0)?,
        // As in `event_row`: anything else is an edit, which fails to verify.
        seq: u64::try_from(seq).unwrap_or(0),
        mac: mac.try_into().unwrap_or([0; 32]),
    })
}

/// `e` naming the secret it is about (its id, learnt by the store).
pub(crate) fn about_secret(mut e: AuditEvent, record: &SecretRecord) -> AuditEvent {
    e.target_id = Some(record.id.clone());
    e.target_name = Some(record.name.clone());
    e
}

/// `e`, whatever the change's result.
pub(crate) fn always<R>(e: AuditEvent) -> impl FnOnce(&R) -> Vec<AuditEvent> + Send + 'static {
    move |_| vec![e]
}

/// `e`, when the change happened (`true`, or rows changed).
pub(crate) fn if_changed<R: Changed>(
    e: AuditEvent,
) -> impl FnOnce(&R) -> Vec<AuditEvent> + Send + 'static {
    move |r| if r.changed() { vec![e] } else { Vec::new() }
}

/// Whether a store call's result says it changed something.
pub(crate) trait Changed {
    fn changed(&self) -> bool;
}

impl Changed for bool {
    fn changed(&self) -> bool {
        *self
    }
}

impl Changed for usize {
    fn changed(&self) -> bool {
        *self > 0
    }
}

/// Why a secret's value and versions were removed for good: the `reason`
/// of its `secret.purge` event. Every path that removes a secret without
/// leaving it recoverable among the deleted secrets records one event per
/// secret with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeReason {
    /// Purged by a person (`DELETE .../deleted_secrets/{name}`).
    Requested,
    /// Deleted longer ago than the retention window (the purge job).
    Expired,
    /// Pushed out of the team's full list of deleted secrets by a newer
    /// deletion.
    DeletedListFull,
    /// Deleted with a retention window of 0: never kept.
    NotKept,
    /// Its team was deleted.
    TeamDeleted,
}

impl PurgeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Expired => "expired",
            Self::DeletedListFull => "deleted_list_full",
            Self::NotKept => "not_kept",
            Self::TeamDeleted => "team_deleted",
        }
    }
}

/// A secret that was purged, as the store found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purged {
    pub org_id: String,
    pub team_id: String,
    pub id: String,
    pub name: String,
}

/// The `secret.purge` event of `purged`, from `template` (who acted, and
/// the request), for `reason`.
pub(crate) fn purge_event(
    template: &AuditEvent,
    purged: &Purged,
    reason: PurgeReason,
) -> AuditEvent {
    let mut e = template.clone();
    e.action = AuditAction::SecretPurge.as_str().to_owned();
    e.org_id = Some(purged.org_id.clone());
    e.team_id = Some(purged.team_id.clone());
    e.target_id = Some(purged.id.clone());
    e.target_name = Some(purged.name.clone());
    e.detail = Some(purge_detail(reason));
    e
}

/// The detail of a `secret.purge` event.
pub fn purge_detail(reason: PurgeReason) -> String {
    serde_json::json!({ "reason": reason.as_str() }).to_string()
}

/// One `secret.purge` event per secret in `purged`.
pub(crate) fn purge_events(
    template: &AuditEvent,
    purged: &[Purged],
    reason: PurgeReason,
) -> Vec<AuditEvent> {
    purged
        .iter()
        .map(|p| purge_event(template, p, reason))
        .collect()
}

/// A seq as stored (both engines store 64-bit signed integers).
pub(crate) fn seq_col(seq: u64) -> StoreResult<i64> {
    i64::try_from(seq).map_err(|_| StoreError::internal("an audit chain ran out of seqs"))
}

/// The chain key, installed once the master key has unwrapped it (or the
/// log switched off, for measuring what it costs). Until then every audited
/// write fails: nothing is written unrecorded.
#[derive(Default)]
pub struct AuditKey(OnceLock<Option<Arc<ChainKey>>>);

impl AuditKey {
    pub fn install(&self, key: Option<Arc<ChainKey>>) {
        let _ = self.0.set(key);
    }

    /// The key; `None` when the log is switched off.
    pub fn get(&self) -> StoreResult<Option<&ChainKey>> {
        match self.0.get() {
            Some(key) => Ok(key.as_deref()),
            None => Err(StoreError::unavailable("the audit log is not ready")),
        }
    }
}

/// One chain a writer appends to.
pub(crate) struct ChainSlot {
    id: String,
    /// The last committed link; `None` when it must be read from the table
    /// (at first use, and after a commit that failed or may have failed).
    head: Option<ChainHead>,
}

impl ChainSlot {
    /// A new chain for this process: `engine-<random>-<n>`, never reused,
    /// so no other writer ever appends to it.
    pub(crate) fn new(engine: &str, n: usize) -> Self {
        Self {
            id: format!(
                "{engine}-{}-{n}",
                tessera_core::domain::ids::random_base62(10)
            ),
            head: None,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The head to continue from, when known without a read.
    pub(crate) fn known_head(&self) -> Option<&ChainHead> {
        self.head.as_ref()
    }

    /// Links `events` after `head` (the known head, or the one just read:
    /// `(seq, mac)` of the chain's last stored event, `None` when empty).
    /// Returns the linked events and the head they lead to. From here until
    /// [`ChainSlot::committed`] the slot's head is in doubt, and forgotten:
    /// a caller dropped on its way (a request whose client went away while
    /// its commit was in flight) leaves a slot that reads its head from the
    /// table again, rather than one that hands out the same seq twice.
    pub(crate) fn link(
        &mut self,
        key: &ChainKey,
        head: ChainHead,
        events: Vec<AuditEvent>,
    ) -> StoreResult<(Vec<StoredEvent>, ChainHead)> {
        let mut chainer = Chainer::new(key, head);
        let linked = events
            .into_iter()
            .map(|e| chainer.append(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::internal(e.to_string()))?;
        self.head = None;
        Ok((linked, chainer.head().clone()))
    }

    /// The head read from the table: `(seq, mac)` of the last event.
    pub(crate) fn head_from(&self, last: Option<(i64, Vec<u8>)>) -> StoreResult<ChainHead> {
        Ok(match last {
            None => ChainHead::genesis(&self.id),
            Some((seq, mac)) => ChainHead {
                chain: self.id.clone(),
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::internal("an audit chain's seq is negative"))?,
                mac: mac
                    .try_into()
                    .map_err(|_| StoreError::internal("an audit chain's MAC is malformed"))?,
            },
        })
    }

    /// The transaction that wrote up to `head` committed.
    pub(crate) fn committed(&mut self, head: ChainHead) {
        self.head = Some(head);
    }

    /// The transaction failed, or its outcome is unknown: read the head
    /// again before the next append.
    pub(crate) fn forget(&mut self) {
        self.head = None;
    }
}

#[async_trait]
pub trait AuditStore {
    /// Installs the chain key (after the master key has unwrapped it);
    /// `None` switches the log off.
    fn install_audit_key(&self, key: Option<Arc<ChainKey>>);
    /// Appends events that record no change of their own (runtime reads,
    /// failed authentications), durably, in one transaction.
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()>;
    /// Every chain's id, in order.
    async fn audit_chains(&self) -> StoreResult<Vec<String>>;
    /// Up to `limit` events of `chain` after seq `after`, by seq.
    async fn audit_events(
        &self,
        chain: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// Every chain's last event, as a head, by chain.
    async fn audit_heads(&self) -> StoreResult<Vec<ChainHead>>;
    /// The signed checkpoints (JSON lines) that stand for pruned prefixes:
    /// `(chain, checkpoint)`, by chain.
    async fn audit_anchors(&self) -> StoreResult<Vec<(String, String)>>;
    /// Deletes `chain`'s events up to `seq` and stores `anchor`, the signed
    /// pruning anchor of the event at `seq` (shipped before this call), in
    /// their place (unless a later one
    /// is there already), with `event`, in one transaction; how many events
    /// were deleted.
    async fn prune_audit(
        &self,
        chain: &str,
        seq: u64,
        anchor: String,
        event: AuditEvent,
    ) -> StoreResult<u64>;
    /// Up to `limit` of `org_id`'s events that `filter` selects, newest
    /// first.
    async fn query_audit(
        &self,
        org_id: &str,
        filter: &AuditFilter,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
}

/// Which of an organization's events to read (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// A key prefix or a user id.
    pub actor: Option<String>,
    pub action: Option<String>,
    /// A target's id or name.
    pub target: Option<String>,
    /// At or after (microseconds).
    pub since: Option<Micros>,
    /// Before (microseconds).
    pub until: Option<Micros>,
    /// Only events older than this one, in the listing's order (time,
    /// chain, seq): where the previous page ended.
    pub after: Option<(Micros, String, u64)>,
}

/// Stores a chain's anchor unless a later one is there (the chain, seq and
/// checkpoint as the 1st to 3rd parameters), then deletes the events it
/// stands for: the two statements of [`AuditStore::prune_audit`].
pub(crate) fn prune_sql(param: impl Fn(usize) -> String) -> [String; 2] {
    let (chain, seq, checkpoint) = (param(1), param(2), param(3));
    [
        format!(
            "INSERT INTO audit_anchors (chain, seq, checkpoint) VALUES ({chain}, {seq}, {checkpoint})
             ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint
             WHERE excluded.seq > audit_anchors.seq"
        ),
        format!("DELETE FROM audit_events WHERE chain = {chain} AND seq <= {seq}"),
    ]
}

/// The pruning event: chain `chain` pruned through `seq`.
pub(crate) fn prune_event(mut e: AuditEvent, chain: &str, seq: u64) -> AuditEvent {
    e.target_id = Some(chain.to_owned());
    e.detail = Some(format!("{{\"through_seq\":{seq}}}"));
    e
}

/// The query of [`AuditStore::query_audit`], with `param(n, pg_type)` naming the n-th
/// parameter: org, actor, action, target, since, until, the cursor's time,
/// chain and seq, and the limit.
pub(crate) fn audit_query_sql(param: impl Fn(usize, &str) -> String) -> String {
    let [org, actor, action, target, since, until, at, chain, seq, limit] = [
        (1, "text"),
        (2, "text"),
        (3, "text"),
        (4, "text"),
        (5, "bigint"),
        (6, "bigint"),
        (7, "bigint"),
        (8, "text"),
        (9, "bigint"),
        (10, "bigint"),
    ]
    .map(|(n, ty)| param(n, ty));
    format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events
         WHERE org_id = {org}
           AND ({actor} IS NULL OR actor_key = {actor} OR actor_user = {actor})
           AND ({action} IS NULL OR action = {action})
           AND ({target} IS NULL OR target_id = {target} OR target_name = {target})
           AND ({since} IS NULL OR time >= {since})
           AND ({until} IS NULL OR time < {until})
           AND ({at} IS NULL OR (time, chain, seq) < ({at}, {chain}, {seq}))
         ORDER BY time DESC, chain DESC, seq DESC
         LIMIT {limit}"
    )
}

impl AuditFilter {
    /// The cursor's parts, as bound (`None` when there is no cursor).
    pub(crate) fn cursor_params(
        &self,
    ) -> StoreResult<(Option<Micros>, Option<String>, Option<i64>)> {
        Ok(match &self.after {
            None => (None, None, None),
            Some((time, chain, seq)) => (Some(*time), Some(chain.clone()), Some(seq_col(*seq)?)),
        })
    }
}
