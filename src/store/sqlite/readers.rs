//! A small pool of read connections. In WAL mode readers never wait for the
//! writer; each read runs on the blocking thread pool so a long listing does
//! not stall the async runtime.

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
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            // Prefer an idle connection; otherwise queue on one round-robin.
            let n = this.conns.len();
            let start = this.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                if let Ok(conn) = this.conns[(start + i) % n].try_lock() {
                    return f(&conn);
                }
            }
            let conn = this.conns[start % n]
                .lock()
                .map_err(|_| StoreError::Internal("a read connection was poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}
