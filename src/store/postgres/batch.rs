//! Group commit for PostgreSQL's upsert fast path.
//!
//! An upsert of a secret whose id and version this node knows is a
//! conditional update (see `PostgresStore::upsert_secret`). Sent one by one,
//! each costs a round trip, a pool checkout with sqlx's release ping, and two
//! thread wake-ups; under load the scheduler, not the database, was the
//! bottleneck (30% of Tessera's CPU in context switches). Here concurrent
//! updates queue to a few tasks, each of which sends whatever has queued as
//! one `UPDATE … FROM unnest(…)` statement: one round trip and one commit
//! (durable when it returns, `synchronous_commit` on) for the whole batch.
//!
//! Every row stays conditional on the version it was sealed for; rows that no
//! longer match (changed, deleted or re-created elsewhere) and whole batches
//! that fail (a deadlock with another node, a timeout) report `false`, and
//! their callers take the locking path. A batch never holds two updates of
//! the same secret: both were sealed for the same version, so at most one
//! could apply, and the second goes straight to the locking path.
//!
//! The same statement moves the revision of every team it changed, once per
//! team, and notifies the other nodes on commit.

use super::{bounded, EVENTS_CHANNEL};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use tokio::sync::{mpsc, oneshot};

/// Updates per statement, at most.
const MAX_BATCH: usize = 256;
/// Statements in flight at once (each on its own pooled connection).
const WORKERS: usize = 2;

/// One sealed update waiting for its batch.
pub struct FastUpdate {
    pub team_id: String,
    pub canonical_name: String,
    pub id: String,
    pub old_version: i64,
    pub updated_at: i64,
    pub kek_id: String,
    pub ciphertext: Vec<u8>,
}

/// An update and where to say whether it applied (and committed): the
/// team's new revision, or `None` when it did not apply.
type Queued = (FastUpdate, oneshot::Sender<Option<i64>>);

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Queued>,
}

impl Batcher {
    pub fn start(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::channel::<Queued>(4 * MAX_BATCH);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WORKERS {
            let (pool, rx) = (pool.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut rx = rx.lock().await;
                        match next_batch(&mut rx).await {
                            Some(b) => b,
                            None => break,
                        }
                    };
                    run(&pool, batch).await;
                }
            });
        }
        Self { tx }
    }

    /// Queues an update; the team's new revision, or `None` when it did not
    /// apply (take the slow path).
    pub async fn update(&self, u: FastUpdate) -> Option<i64> {
        let (done, answer) = oneshot::channel();
        if self.tx.send((u, done)).await.is_err() {
            return None;
        }
        answer.await.unwrap_or(None)
    }
}

/// Waits for one update, then takes whatever else has queued. A second
/// update of the same secret is answered `false` at once.
async fn next_batch(rx: &mut mpsc::Receiver<Queued>) -> Option<Vec<Queued>> {
    let mut batch = vec![rx.recv().await?];
    let mut seen = HashSet::new();
    seen.insert(key(&batch[0].0));
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(q) if seen.insert(key(&q.0)) => batch.push(q),
            Ok((_, done)) => {
                let _ = done.send(None);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

fn key(u: &FastUpdate) -> (String, String) {
    (u.team_id.clone(), u.canonical_name.clone())
}

async fn run(pool: &PgPool, mut batch: Vec<Queued>) {
    // A stable order keeps two batches from locking rows in opposite orders.
    batch.sort_by(|(a, _), (b, _)| {
        (&a.team_id, &a.canonical_name).cmp(&(&b.team_id, &b.canonical_name))
    });
    metrics::histogram!("tessera_postgres_batch_size").record(batch.len() as f64);
    let mut cols = Columns::with_capacity(batch.len());
    for (u, _) in &batch {
        cols.push(u);
    }
    let result = bounded(
        sqlx::query_as::<_, (String, String, i64, i64)>(
            "WITH w AS (
                UPDATE secrets AS s
                SET version = u.old_version + 1, updated_at = u.updated_at,
                    kek_id = u.kek_id, ciphertext = u.ciphertext
                FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::bytea[])
                     AS u(team_id, canonical_name, id, old_version, updated_at, kek_id, ciphertext)
                WHERE s.team_id = u.team_id AND s.canonical_name = u.canonical_name
                  AND s.id = u.id AND s.version = u.old_version
                RETURNING s.team_id, s.canonical_name
             ), t AS (
                UPDATE teams SET revision = revision + 1
                WHERE id IN (SELECT team_id FROM w) RETURNING id, revision
             ), n AS (
                SELECT pg_notify($8, 'r ' || t.id || ' ' || t.revision) FROM t
             )
             SELECT w.team_id, w.canonical_name, t.revision, (SELECT COUNT(*) FROM n)
             FROM w JOIN t ON t.id = w.team_id",
        )
        .bind(cols.team_id)
        .bind(cols.canonical_name)
        .bind(cols.id)
        .bind(cols.old_version)
        .bind(cols.updated_at)
        .bind(cols.kek_id)
        .bind(cols.ciphertext)
        .bind(EVENTS_CHANNEL)
        .fetch_all(pool),
    )
    .await;
    let applied: HashMap<(String, String), i64> = match result {
        Ok(rows) => rows
            .into_iter()
            .map(|(team, name, revision, _)| ((team, name), revision))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "batched update failed; its rows take the locking path");
            HashMap::new()
        }
    };
    for (u, done) in batch {
        let _ = done.send(applied.get(&(u.team_id, u.canonical_name)).copied());
    }
}

/// The batch as one array per column.
struct Columns {
    team_id: Vec<String>,
    canonical_name: Vec<String>,
    id: Vec<String>,
    old_version: Vec<i64>,
    updated_at: Vec<i64>,
    kek_id: Vec<String>,
    ciphertext: Vec<Vec<u8>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            team_id: Vec::with_capacity(n),
            canonical_name: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            old_version: Vec::with_capacity(n),
            updated_at: Vec::with_capacity(n),
            kek_id: Vec::with_capacity(n),
            ciphertext: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, u: &FastUpdate) {
        self.team_id.push(u.team_id.clone());
        self.canonical_name.push(u.canonical_name.clone());
        self.id.push(u.id.clone());
        self.old_version.push(u.old_version);
        self.updated_at.push(u.updated_at);
        self.kek_id.push(u.kek_id.clone());
        self.ciphertext.push(u.ciphertext.clone());
    }
}
