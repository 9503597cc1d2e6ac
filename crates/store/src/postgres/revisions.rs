//! Team revision reads on PostgreSQL, shared by concurrent callers.
//!
//! Every listing and every delivery request reads its team's revision first
//! (one primary-key read), then answers from memory while it is unchanged.
//! Sent one by one, each of those reads cost a pool checkout and three round
//! trips (the statement, then two liveness pings as the connection goes back
//! to the pool); under 64 concurrent listings the database round trips, not
//! the listing, set the pace. Here one task with a connection of its own
//! takes every read that has queued, sends them as one `SELECT … WHERE id =
//! ANY($1)`, and answers each.
//!
//! Never stale: a read is answered only by a statement that started after
//! the read was queued (the task takes the queue, then sends), so a write any
//! node acknowledged before the caller asked is always seen.

use super::held::HeldConnection;
use super::{ask, bounded, Asked};
use crate::StoreResult;
use sqlx::PgPool;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Reads per statement, at most.
const MAX_BATCH: usize = 512;

/// A team's revision, `None` when the team does not exist.
type Outcome = StoreResult<Option<i64>>;
type Queued = Asked<String, Option<i64>>;

#[derive(Clone)]
pub struct RevisionReader {
    tx: mpsc::Sender<Queued>,
}

impl RevisionReader {
    pub fn start(pool: PgPool) -> Self {
        let (tx, mut rx) = mpsc::channel::<Queued>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut conn = HeldConnection::new(pool);
            let mut pending = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
                let batch = std::mem::take(&mut pending);
                let result = read(&mut conn, &batch).await;
                conn.done(result.is_ok());
                for (team_id, done) in batch {
                    let outcome = match &result {
                        Ok(found) => Ok(found.get(&team_id).copied()),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = done.send(outcome);
                }
            }
        });
        Self { tx }
    }

    /// The team's current revision, or `None` when it does not exist.
    pub async fn revision(&self, team_id: &str) -> Outcome {
        ask(&self.tx, team_id.to_owned(), "revision reader").await
    }
}

/// One statement for the whole batch, within the store's call timeout.
async fn read(conn: &mut HeldConnection, batch: &[Queued]) -> StoreResult<HashMap<String, i64>> {
    let mut ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    bounded(async {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT team_id, revision FROM team_counters WHERE team_id = ANY($1)")
                .bind(&ids)
                .fetch_all(conn.get().await?)
                .await?;
        Ok(rows.into_iter().collect())
    })
    .await
}
