//! A small pool of read connections. In WAL mode readers never wait for the
//! writer.
//!
//! Reads run on the calling runtime worker. Measured: handing each read to
//! the blocking thread pool cost two context switches per request (a third of
//! the CPU time under load on a 2-core machine), far more than the read itself
//! (microseconds for a point read, a few milliseconds for a 10,000-row list).

use super::super::{StoreError, StoreResult};
use rusqlite::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new(conns: Vec<Connection>) -> Arc<Self> {
        Arc::new(Self {
            conns: conns.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        })
    }

    pub async fn read<R, F>(self: &Arc<Self>, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        metrics::counter!("tessera_store_calls_total", "backend" => "sqlite").increment(1);
        // Prefer an idle connection; otherwise wait for one round-robin (only
        // as many reads run at once as there are worker threads).
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(conn) = self.conns[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.conns[start % n]
            .lock()
            .map_err(|_| StoreError::Internal("a read connection was poisoned".into()))?;
        f(&conn)
    }
}
