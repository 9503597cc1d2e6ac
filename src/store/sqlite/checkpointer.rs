//! Moves WAL frames into the database file off the commit path.
//!
//! SQLite checkpoints inside the commit that crosses the WAL size threshold
//! (1000 pages), so one unlucky batch of writers waits while the whole WAL is
//! copied. This thread runs a PASSIVE checkpoint every [`INTERVAL`], which
//! never blocks the writer or readers, so by the time the writer's own
//! checkpoint runs there is little left to copy. (The writer's checkpoint is
//! still needed: only a checkpoint that finds nothing appended behind it lets
//! the next commit restart the WAL from the beginning, which keeps the file
//! bounded under continuous load.)

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(250);

pub struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    pub fn start(conn: Connection) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Keep the WAL file from staying huge after a burst of writes.
        let _ = conn.execute_batch("PRAGMA journal_size_limit = 67108864");
        std::thread::Builder::new()
            .name("tessera-sqlite-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                    }
                }
                // A last full pass when the store closes.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            })?;
        Ok(Self { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
