//! Group commit for updates of existing secrets on PostgreSQL.
//!
//! An update of a secret the service found (so it sealed the value for that
//! secret's id) needs no transaction of its own: concurrent ones queue to a
//! few tasks, each of which sends whatever has queued as one `UPDATE … FROM
//! unnest(…)` statement: one round trip and one commit (durable when it
//! returns, `synchronous_commit` on) for the whole batch, and one move of
//! each touched team's revision, with a notification to the other nodes on
//! commit. Sent one by one, each update cost a round trip, a pool checkout
//! and two thread wake-ups; under load the scheduler, not the database, had
//! been the bottleneck.
//!
//! Each row applies only where the secret still has the id its value was
//! sealed for; a row that no longer matches (deleted or re-created
//! elsewhere) reports that, and the caller reads the secret again. A
//! statement updates a row once, so a second update of the same secret
//! waits for the next batch.

use super::audit::{commit, AuditChains, EventColumns};
use super::error::is_contention;
use super::held::HeldConnection;
use super::{ask, bounded, Asked, EVENTS_CHANNEL};
use crate::audit::EVENT_COLUMNS;
use crate::{StoreError, StoreResult, WriteHistory};
use sqlx::Connection;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tessera_core::audit::event::AuditEvent;
use tokio::sync::mpsc;

/// Updates per statement, at most.
const MAX_BATCH: usize = 256;
/// Statements in flight at once (each on its own pooled connection).
const WORKERS: usize = 2;
/// Times a batch the database aborted for contention is sent again.
const RETRIES: usize = 3;

/// One sealed update waiting for its batch.
pub struct Update {
    pub team_id: String,
    pub canonical_name: String,
    pub id: String,
    pub updated_at: i64,
    pub version_id: String,
    pub kek_id: String,
    pub ciphertext: Vec<u8>,
    pub history: WriteHistory,
    /// Recorded, in the batch's transaction, when the update applies.
    pub audit: AuditEvent,
    /// The team's quota on the bytes of its current values.
    pub max_team_bytes: i64,
}

/// What an applied update left: the stored name, `created_at`, the new
/// version and the team's new revision.
#[derive(Debug, Clone)]
pub struct Applied {
    pub name: String,
    pub created_at: i64,
    pub version: i64,
    pub revision: i64,
}

type Outcome = StoreResult<Option<Applied>>;
type Queued = Asked<Update, Option<Applied>>;

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Queued>,
}

impl Batcher {
    pub fn start(pool: PgPool, audit: Arc<AuditChains>) -> Self {
        let (tx, rx) = mpsc::channel::<Queued>(4 * MAX_BATCH);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WORKERS {
            let (pool, rx, audit) = (pool.clone(), rx.clone(), audit.clone());
            tokio::spawn(async move {
                let mut conn = HeldConnection::new(pool);
                let mut carried = Vec::new();
                loop {
                    // Updates carried over go out at once: waiting for the
                    // queue could wait for the next request to arrive.
                    let pending = if carried.is_empty() {
                        // One update, or whatever else has queued with it.
                        let mut pending = Vec::new();
                        if rx.lock().await.recv_many(&mut pending, MAX_BATCH).await == 0 {
                            break;
                        }
                        pending
                    } else {
                        std::mem::take(&mut carried)
                    };
                    run(&mut conn, &audit, one_per_secret(pending, &mut carried)).await;
                }
            });
        }
        Self { tx }
    }

    /// Queues an update; `None` when the secret no longer has that id, or
    /// when its longer value would take its team past the quota on value
    /// bytes (the caller tells them apart).
    pub async fn update(&self, u: Update) -> Outcome {
        ask(&self.tx, u, "update batcher").await
    }
}

/// The batch: the first update of each secret. A second update of one
/// secret is carried over to the next batch (a statement updates a row once).
fn one_per_secret(pending: Vec<Queued>, carried: &mut Vec<Queued>) -> Vec<Queued> {
    let mut seen = HashSet::new();
    let mut batch = Vec::with_capacity(pending.len());
    for q in pending {
        if seen.insert((q.0.team_id.clone(), q.0.canonical_name.clone())) {
            batch.push(q);
        } else {
            carried.push(q);
        }
    }
    batch
}

async fn run(conn: &mut HeldConnection, audit: &AuditChains, mut batch: Vec<Queued>) {
    // A stable order keeps two batches from locking rows in opposite orders.
    batch.sort_by(|(a, _), (b, _)| {
        (&a.team_id, &a.canonical_name).cmp(&(&b.team_id, &b.canonical_name))
    });
    metrics::histogram!("tessera_postgres_batch_size").record(batch.len() as f64);
    let cols = Columns::of(&batch);
    let mut attempt = 0;
    let result = loop {
        let sent = send(conn, audit, &batch, &cols).await;
        conn.done(matches!(sent, Ok(Ok(_))));
        match sent {
            Err(Retry(e)) if attempt < RETRIES => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "a batch of updates hit contention; sending it again");
            }
            other => break other.map_err(|Retry(e)| StoreError::from(e)),
        }
    };
    let result = match result {
        Ok(Ok(applied)) => Ok(applied),
        Ok(Err(e)) | Err(e) => Err(e),
    };
    for (u, done) in batch {
        let outcome = match &result {
            Ok(applied) => Ok(applied.get(&(u.team_id, u.canonical_name)).cloned()),
            Err(e) => Err(e.clone()),
        };
        let _ = done.send(outcome);
    }
}

/// A database error worth sending the batch again for.
struct Retry(sqlx::Error);

type Rows = HashMap<(String, String), Applied>;

/// The update of every secret in a batch, and of their teams' revisions,
/// with a notification to the other nodes. Returns each applied update's
/// `team_id, canonical_name, name, created_at, version, revision`.
///
/// An update whose value is longer than the one it replaces applies only
/// while its team's current values stay within the update's quota on their
/// bytes (`$13`), counting the growth of the batch's earlier updates of the
/// same team (`g`); the team's total is the one committed before the
/// statement (migration 0010's trigger then adds what applied).
const UPDATE: &str = concat!("WITH g AS (
        SELECT u.team_id, u.canonical_name,
               SUM(GREATEST(octet_length(u.ciphertext) - octet_length(o.ciphertext), 0))
                   OVER (PARTITION BY u.team_id ORDER BY u.canonical_name) AS grown
        FROM unnest($1::text[], $2::text[], $3::text[], $7::bytea[])
             AS u(team_id, canonical_name, id, ciphertext)
        JOIN secrets o
          ON o.team_id = u.team_id AND o.canonical_name = u.canonical_name AND o.id = u.id
     ), w AS (
        UPDATE secrets AS s
        SET version = s.version + 1, updated_at = u.updated_at, version_id = u.version_id,
            kek_id = u.kek_id, ciphertext = u.ciphertext, actor_key = u.actor_key,
            actor_user = u.actor_user, keep_versions = u.keep_versions,
            destroy_previous = u.destroy_previous
        FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bytea[],
                    $9::text[], $10::text[], $11::bigint[], $12::boolean[], $13::bigint[])
             AS u(team_id, canonical_name, id, updated_at, version_id, kek_id, ciphertext,
                  actor_key, actor_user, keep_versions, destroy_previous, max_bytes)
        JOIN team_counters c ON c.team_id = u.team_id
        LEFT JOIN g ON g.team_id = u.team_id AND g.canonical_name = u.canonical_name
        WHERE s.team_id = u.team_id AND s.canonical_name = u.canonical_name AND s.id = u.id
          AND (octet_length(u.ciphertext) <= octet_length(s.ciphertext)
               OR c.value_bytes + COALESCE(g.grown, 0) <= u.max_bytes)
        RETURNING s.team_id, s.canonical_name, s.name, s.created_at, s.version
     ), t AS (
        UPDATE team_counters SET revision = revision + 1
        WHERE team_id IN (SELECT team_id FROM w) RETURNING team_id, revision
     ), n AS (
        SELECT pg_notify($8 || ", super::channel_suffix!(), ", 'r ' || t.team_id || ' ' || t.revision) FROM t
     )");

/// Binds the update's 13 parameters.
fn bind_update<'q>(query: super::Query<'q>, cols: &'q Columns) -> super::Query<'q> {
    query
        .bind(&cols.team_id)
        .bind(&cols.canonical_name)
        .bind(&cols.id)
        .bind(&cols.updated_at)
        .bind(&cols.version_id)
        .bind(&cols.kek_id)
        .bind(&cols.ciphertext)
        .bind(EVENTS_CHANNEL)
        .bind(&cols.actor_key)
        .bind(&cols.actor_user)
        .bind(&cols.keep_versions)
        .bind(&cols.destroy_previous)
        .bind(&cols.max_bytes)
}

/// The applied updates, by (team, canonical name).
fn applied(updated: Vec<sqlx::postgres::PgRow>) -> Result<Rows, sqlx::Error> {
    use sqlx::Row as _;
    updated
        .iter()
        .map(|r| {
            let applied = Applied {
                name: r.try_get(2)?,
                created_at: r.try_get(3)?,
                version: r.try_get(4)?,
                revision: r.try_get(5)?,
            };
            Ok(((r.try_get(0)?, r.try_get(1)?), applied))
        })
        .collect()
}

/// PostgreSQL's division by zero: what the one-statement path raises when
/// not every update applied.
fn not_all_applied(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "22012")
}

/// Sends the batch. Almost always every update applies, so the audit
/// events of all of them are linked in advance and written by the same
/// statement as the updates: one round trip, one commit. That statement
/// fails, changing nothing, when some update did not apply (its secret was
/// deleted or re-created meanwhile); the batch then goes again in a
/// transaction that records only the updates that applied.
async fn send(
    conn: &mut HeldConnection,
    audit: &AuditChains,
    batch: &[Queued],
    cols: &Columns,
) -> Result<StoreResult<Rows>, Retry> {
    let sent = bounded(async {
        let c = conn.get().await?;
        let mut slot = audit.slot().await;
        let all: Vec<AuditEvent> = batch.iter().map(|(u, _)| u.audit.clone()).collect();
        let Some((linked, head)) = audit.link(c, &mut slot, all).await? else {
            // The audit log is off: the update alone.
            let sql = format!(
                "{UPDATE} SELECT w.team_id, w.canonical_name, w.name, w.created_at, w.version,
                        t.revision + 0 * (SELECT COUNT(*) FROM n)
                 FROM w JOIN t ON t.team_id = w.team_id"
            );
            let updated = bind_update(sqlx::query(&sql), cols).fetch_all(c).await;
            return Ok(updated.and_then(applied));
        };
        let events = EventColumns::of(&linked)?;
        let sql = format!(
            "{UPDATE}, ok AS (
                SELECT COUNT(*) = $14 AS everything FROM w
             ), ev AS (
                INSERT INTO audit_events ({EVENT_COLUMNS}) {}
                WHERE (SELECT everything FROM ok) RETURNING 1
             )
             SELECT w.team_id, w.canonical_name, w.name, w.created_at, w.version,
                    t.revision + 0 * (SELECT COUNT(*) FROM n) + 0 * (SELECT COUNT(*) FROM ev)
                    + 0 * (1 / (SELECT CASE WHEN everything THEN 1 ELSE 0 END FROM ok))
             FROM w JOIN t ON t.team_id = w.team_id",
            events.select(15)
        );
        let query = bind_update(sqlx::query(&sql), cols).bind(batch.len() as i64);
        match events.bind(query).fetch_all(&mut *c).await {
            Ok(updated) if updated.len() == batch.len() => {
                slot.committed(head);
                Ok(applied(updated))
            }
            // None applied: nothing was written, the events included.
            Ok(updated) => Ok(applied(updated)),
            // The database refused the statement, so nothing of it was
            // written: some update did not apply, or another error that the
            // transaction below tells apart (an audit write that fails is
            // then refused as such).
            Err(e) if e.as_database_error().is_some() => {
                if !not_all_applied(&e) {
                    tracing::debug!(error = %e, "a batch's one statement failed; sending it in a transaction");
                }
                in_transaction(c, audit, &mut slot, batch, cols).await
            }
            Err(e) => {
                // The statement may or may not have committed.
                slot.forget();
                Ok(Err(e))
            }
        }
    })
    .await;
    match sent {
        Ok(Ok(rows)) => Ok(Ok(rows)),
        Ok(Err(e)) if is_contention(&e) => Err(Retry(e)),
        Ok(Err(e)) => Ok(Err(e.into())),
        Err(e) => Ok(Err(e)),
    }
}

/// The batch in a transaction: the update, then the events of the updates
/// that applied.
async fn in_transaction(
    c: &mut sqlx::PgConnection,
    audit: &AuditChains,
    slot: &mut super::super::audit::ChainSlot,
    batch: &[Queued],
    cols: &Columns,
) -> StoreResult<Result<Rows, sqlx::Error>> {
    let mut tx = c.begin().await?;
    let sql = format!(
        "{UPDATE} SELECT w.team_id, w.canonical_name, w.name, w.created_at, w.version,
                t.revision + 0 * (SELECT COUNT(*) FROM n)
         FROM w JOIN t ON t.team_id = w.team_id"
    );
    let rows = match bind_update(sqlx::query(&sql), cols)
        .fetch_all(&mut *tx)
        .await
        .and_then(applied)
    {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(e)),
    };
    // In the batch's order: the order the chain records them in.
    let events = batch
        .iter()
        .filter(|(u, _)| rows.contains_key(&(u.team_id.clone(), u.canonical_name.clone())))
        .map(|(u, _)| u.audit.clone())
        .collect();
    let head = audit.append(&mut tx, slot, events).await?;
    commit(tx, slot, head).await?;
    Ok(Ok(rows))
}

/// The batch as one array per column.
struct Columns {
    team_id: Vec<String>,
    canonical_name: Vec<String>,
    id: Vec<String>,
    updated_at: Vec<i64>,
    version_id: Vec<String>,
    kek_id: Vec<String>,
    ciphertext: Vec<Vec<u8>>,
    actor_key: Vec<Option<String>>,
    actor_user: Vec<Option<String>>,
    keep_versions: Vec<i64>,
    destroy_previous: Vec<bool>,
    max_bytes: Vec<i64>,
}

impl Columns {
    fn of(batch: &[Queued]) -> Self {
        fn col<T>(batch: &[Queued], f: impl Fn(&Update) -> T) -> Vec<T> {
            batch.iter().map(|(u, _)| f(u)).collect()
        }
        Self {
            team_id: col(batch, |u| u.team_id.clone()),
            canonical_name: col(batch, |u| u.canonical_name.clone()),
            id: col(batch, |u| u.id.clone()),
            updated_at: col(batch, |u| u.updated_at),
            version_id: col(batch, |u| u.version_id.clone()),
            kek_id: col(batch, |u| u.kek_id.clone()),
            ciphertext: col(batch, |u| u.ciphertext.clone()),
            actor_key: col(batch, |u| u.history.actor.key_prefix.clone()),
            actor_user: col(batch, |u| u.history.actor.user_id.clone()),
            keep_versions: col(batch, |u| u.history.keep_versions),
            destroy_previous: col(batch, |u| u.history.destroy_previous),
            max_bytes: col(batch, |u| u.max_team_bytes),
        }
    }
}
