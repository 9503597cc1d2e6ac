//! A pooled connection that a background task keeps between statements.
//!
//! Each time a connection goes back to the pool it is pinged twice (sqlx's
//! check and ours, see `mod.rs`): two round trips, and database CPU, per
//! statement. The tasks that send a statement after another all day (the
//! revision reader, the update batcher) keep theirs instead. It is given
//! back after any error, and after sitting idle as long as the pool would
//! have checked it before handing it out, so that a database restarted
//! meanwhile fails no statement.

use super::CHECK_IDLE_AFTER;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::time::Instant;

pub(super) struct HeldConnection {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    last_used: Instant,
    /// Handed out and not reported done: the statement was abandoned (its
    /// caller timed out or went away), so the connection may be mid-reply.
    in_use: bool,
}

impl HeldConnection {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            conn: None,
            last_used: Instant::now(),
            in_use: false,
        }
    }

    /// The connection, checked out anew when there is none, it sat idle too
    /// long, or its last statement was abandoned.
    pub(super) async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.in_use || self.last_used.elapsed() >= CHECK_IDLE_AFTER {
            self.conn = None;
        }
        self.last_used = Instant::now();
        self.in_use = true;
        let conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.acquire().await?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// After a statement: an error gives the connection back to the pool
    /// (which checks it, or closes it), so it is never reused as it is.
    pub(super) fn done(&mut self, succeeded: bool) {
        self.last_used = Instant::now();
        self.in_use = false;
        if !succeeded {
            self.conn = None;
        }
    }
}
