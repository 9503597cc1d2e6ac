//! A small pool of read connections. In WAL mode readers never wait for the
//! writer.
//!
//! Small reads run on the calling runtime worker. Measured: handing each read
//! to the blocking thread pool cost two context switches per request (a third
//! of the CPU time under load on a 2-core machine), far more than the read
//! itself (microseconds for a point read, a few milliseconds for a 10,000-row
//! list). Reads of more than [`INLINE_ROWS`] rows run on the blocking pool,
//! on bulk connections of their own (see [`Readers::read_sized`]). `all`,
//! `one` and `optional` run one statement and map its rows.

use super::super::{StoreError, StoreResult};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Params, Row};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    /// Connections for reads too large to run on a runtime worker.
    bulk: Mutex<Vec<Connection>>,
    bulk_permits: Semaphore,
}

use super::super::INLINE_ROWS;

impl Readers {
    pub fn new(conns: Vec<Connection>, bulk: Vec<Connection>) -> Arc<Self> {
        Arc::new(Self {
            conns: conns.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            bulk_permits: Semaphore::new(bulk.len()),
            bulk: Mutex::new(bulk),
        })
    }

    /// A read of up to `rows` rows: inline when small ([`INLINE_ROWS`]),
    /// otherwise on the blocking pool with one of the bulk connections, at
    /// most as many at once as there are bulk connections, so that however
    /// many large listings clients ask for, the runtime's workers keep
    /// serving everyone else.
    pub async fn read_sized<R, F>(self: &Arc<Self>, rows: usize, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        if rows <= INLINE_ROWS {
            return self.read(f).await;
        }
        metrics::counter!("tessera_store_calls_total", "backend" => "sqlite").increment(1);
        let _permit = self
            .bulk_permits
            .acquire()
            .await
            .map_err(|_| StoreError::unavailable("the store is closing"))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this
                .bulk
                .lock()
                .pop()
                .ok_or_else(|| StoreError::internal("no bulk connection free"))?;
            let result = f(&conn);
            this.bulk.lock().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::with_source(StoreError::internal_from, e))?
    }

    /// A small read, on the calling worker (no hand-off: the closure may
    /// borrow the caller's arguments).
    pub async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> StoreResult<R>,
    {
        metrics::counter!("tessera_store_calls_total", "backend" => "sqlite").increment(1);
        // Prefer an idle connection; otherwise wait for one round-robin (only
        // as many reads run at once as there are worker threads).
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Some(conn) = self.conns[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.conns[start % n].lock();
        f(&conn)
    }

    /// Every row `sql` returns, each read by `f` (a small read).
    pub async fn all<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        self.read(|c| {
            Ok(c.prepare_cached(sql)?
                .query_map(params, f)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Like [`Readers::all`] for a read of up to `rows` rows, which may be
    /// large (see [`Readers::read_sized`]).
    pub async fn all_sized<T, P, F>(
        self: &Arc<Self>,
        rows: usize,
        sql: &'static str,
        params: P,
        f: F,
    ) -> StoreResult<Vec<T>>
    where
        T: Send + 'static,
        P: Params + Send + 'static,
        F: FnMut(&Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.read_sized(rows, move |c| {
            Ok(c.prepare_cached(sql)?
                .query_map(params, f)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The one row `sql` returns, read by `f`; an error when there is none.
    pub async fn one<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        self.read(|c| Ok(c.prepare_cached(sql)?.query_row(params, f)?))
            .await
    }

    /// The row `sql` returns, if any, read by `f`.
    pub async fn optional<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        self.read(|c| Ok(c.prepare_cached(sql)?.query_row(params, f).optional()?))
            .await
    }
}
