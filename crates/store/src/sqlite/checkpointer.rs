//! Moves WAL frames into the database file off the commit path, and empties
//! the WAL file once everything in it has been copied.
//!
//! SQLite checkpoints inside the commit that crosses the WAL size threshold
//! (1000 pages), so one unlucky batch of writers waits while the whole WAL is
//! copied. This thread runs a PASSIVE checkpoint every [`INTERVAL`], which
//! never blocks the writer or readers, so by the time the writer's own
//! checkpoint runs there is little left to copy. (The writer's checkpoint is
//! still needed: only a checkpoint that finds nothing appended behind it lets
//! the next commit restart the WAL from the beginning, which keeps the file
//! bounded under continuous load.)
//!
//! Remanence: the WAL holds old page images, and so old ciphertexts of
//! replaced and deleted values, until its frames are overwritten or the file
//! is truncated. While writes keep coming the writer empties it every few
//! seconds (see `writer.rs`). When a PASSIVE checkpoint here finds that
//! everything has been copied and nothing was appended since the previous
//! tick (writes have paused), this thread runs a TRUNCATE checkpoint, which
//! empties the file. It waits at most [`TRUNCATE_WAIT`] for the writer
//! and for readers still reading an older snapshot; if they do not finish in
//! time it gives up and tries again on a later tick. Readers that start after
//! a complete checkpoint read the database file and never hold it up.

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(250);

/// How long a TRUNCATE checkpoint may wait for the writer's lock and for
/// readers of an older snapshot. The writer waits for it meanwhile, so this
/// stays short.
const TRUNCATE_WAIT: Duration = Duration::from_millis(50);

pub struct Checkpointer {
    stop: Arc<AtomicBool>,
}

/// What `PRAGMA wal_checkpoint` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// The checkpoint could not take a lock it needed.
    busy: bool,
    /// Frames in the WAL.
    frames: i64,
    /// Frames copied into the database file.
    copied: i64,
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Outcome> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Outcome {
            busy: r.get::<_, i64>(0)? != 0,
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}

impl Checkpointer {
    pub fn start(conn: Connection) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        conn.busy_timeout(TRUNCATE_WAIT)
            .map_err(std::io::Error::other)?;
        std::thread::Builder::new()
            .name("tessera-sqlite-checkpoint".into())
            .spawn(move || {
                let mut previous: Option<Outcome> = None;
                let mut failing = false;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    match tick(&conn, previous) {
                        Ok(now) => {
                            previous = Some(now);
                            failing = false;
                        }
                        // Warn once per failing spell, not every tick.
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                        }
                        Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed again"),
                    }
                }
                // A last pass when the store closes.
                let _ = checkpoint(&conn, "TRUNCATE");
            })?;
        Ok(Self { stop })
    }
}

/// One pass: copy what can be copied; if that was everything and the WAL has
/// not grown since the last pass, empty it.
fn tick(conn: &Connection, previous: Option<Outcome>) -> rusqlite::Result<Outcome> {
    let now = checkpoint(conn, "PASSIVE")?;
    let complete = !now.busy && now.frames > 0 && now.copied == now.frames;
    let quiet = previous.is_some_and(|p| p.frames == now.frames);
    if complete && quiet {
        // SQLITE_BUSY here only means "not this time".
        match checkpoint(conn, "TRUNCATE") {
            Ok(after) => return Ok(after),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                return Ok(now)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(now)
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
