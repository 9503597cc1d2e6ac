//! The single SQLite writer, with pipelined group commit.
//!
//! One thread owns the only write connection. Callers send it jobs over a
//! channel; it takes whatever has queued (up to [`MAX_BATCH`]), runs each job
//! (in its own savepoint where it needs one) within one transaction and
//! commits once. A job that fails is undone alone; if the commit itself fails,
//! every job of the batch gets the error.
//!
//! Durability is made explicit and pipelined: the connection commits with
//! `synchronous=NORMAL` (the commit reaches the WAL file but is not fsynced),
//! and the batch's callers are handed to a second thread that `fdatasync`s
//! the WAL file and only then answers them. Meanwhile the writer already runs
//! the next batch. So, as with `synchronous=FULL`, no caller hears "done"
//! before its write is on disk, but the writer no longer sits idle through
//! every fsync: measured here, COMMIT (mostly the fsync) was 69% of the
//! writer's time under load. One fsync covers every batch committed before
//! it started, so under load several batches share one.
//!
//! What changes: another request may read a committed write in the short
//! window before its fsync completes. A process crash loses nothing (the
//! data is in the OS's page cache); after a power failure such a write, never
//! acknowledged to its writer, can be gone.

use super::super::{StoreError, StoreResult};
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Upper bound on jobs per transaction (keeps latency bounded under load).
const MAX_BATCH: usize = 512;

type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// The callers of one committed batch, waiting for the WAL to be synced.
type Committed = Vec<Completion>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// Read by the tests; the same count is exported as a metric.
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer on `conn` (a connection to a WAL-mode database) and
    /// the syncer on `wal` (that database's `-wal` file).
    pub fn start(conn: Connection, wal: std::fs::File) -> std::io::Result<Self> {
        // Durability comes from the syncer's fdatasync, before any answer.
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<Committed>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("tessera-sqlite-sync".into())
            .spawn(move || sync_loop(&wal, &sync_rx))?;
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || run(conn, rx, &sync_tx, &counter))?;
        Ok(Self { tx, commits })
    }

    /// Transactions committed so far (each one fsync).
    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` in the next batch, inside its own savepoint; resolves after
    /// that batch has committed.
    pub async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.submit(move |conn| in_savepoint(conn, f)).await
    }

    /// Like [`Writer::write`] without the savepoint, for a job that modifies
    /// the database with at most one statement, as its last step: SQLite
    /// applies a single statement atomically, so a failing job has changed
    /// nothing and there is nothing to roll back. Saves two statements per
    /// job on the hot path.
    pub async fn write_single_statement<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.submit(f).await
    }

    async fn submit<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn: &Connection| -> Completion {
            let outcome = f(conn);
            Box::new(move |commit: StoreResult<()>| {
                let result = match (outcome, commit) {
                    (Ok(r), Ok(())) => Ok(r),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(e),
                };
                let _ = done_tx.send(result);
            })
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        done_rx
            .await
            .map_err(|_| StoreError::Internal("the SQLite writer dropped a job".into()))?
    }
}

fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    let exec = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
    };
    exec("SAVEPOINT job").map_err(super::internal)?;
    match f(conn) {
        Ok(r) => {
            exec("RELEASE job").map_err(super::internal)?;
            Ok(r)
        }
        Err(e) => {
            // Undo this job only; its neighbours in the batch are unaffected.
            let _ = exec("ROLLBACK TO job").and_then(|()| exec("RELEASE job"));
            Err(e)
        }
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    sync: &std::sync::mpsc::Sender<Committed>,
    commits: &AtomicU64,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("tessera_sqlite_batch_size").record(batch.len() as f64);
        let mut completions: Committed = Vec::with_capacity(batch.len());
        let commit = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                for job in batch.drain(..) {
                    completions.push(job(&conn));
                }
                conn.execute_batch("COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    super::internal(e)
                })
            }
            Err(e) => {
                batch.clear();
                Err(super::internal(e))
            }
        };
        match commit {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tessera_sqlite_commits_total").increment(1);
                if let Err(std::sync::mpsc::SendError(lost)) = sync.send(completions) {
                    fail_all(lost, "the SQLite sync thread has stopped");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SQLite commit failed; failing the whole batch");
                fail_all(completions, &e.to_string());
            }
        }
    }
}

fn fail_all(completions: Committed, why: &str) {
    for done in completions {
        done(Err(StoreError::Internal(why.to_owned())));
    }
}

/// Makes committed batches durable, then answers their callers. Each fsync
/// covers every batch that was committed before it started.
fn sync_loop(wal: &std::fs::File, rx: &std::sync::mpsc::Receiver<Committed>) {
    while let Ok(mut waiting) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            waiting.extend(more);
        }
        let started = std::time::Instant::now();
        let synced = wal.sync_data();
        metrics::histogram!("tessera_sqlite_fsync_seconds").record(started.elapsed().as_secs_f64());
        match synced {
            Ok(()) => {
                for done in waiting {
                    done(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "fsync of the SQLite WAL failed; failing the writes it covered");
                fail_all(waiting, "the write could not be made durable");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn writer_on(dir: &tempfile::TempDir) -> (Writer, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL UNIQUE);",
        )
        .unwrap();
        let wal = std::fs::File::open(dir.path().join("w.db-wal")).unwrap();
        (Writer::start(conn, wal).unwrap(), path)
    }

    /// Jobs that queue while the writer is busy share one commit, and a job
    /// that fails (after doing some work) is undone alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer_on(&dir);
        // Occupy the writer so the next jobs queue up behind it.
        let busy = writer.clone();
        let blocker = tokio::spawn(async move {
            busy.write(|_| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = writer.commits();
        let mut jobs = Vec::new();
        for i in 0..20i64 {
            let w = writer.clone();
            jobs.push(tokio::spawn(async move {
                w.write(move |c| {
                    c.execute("INSERT INTO t (x) VALUES (?1)", [i])
                        .map_err(super::super::internal)?;
                    if i == 7 {
                        // A later statement of the same job fails: all of job 7 is undone.
                        c.execute("INSERT INTO t (x) VALUES (?1)", [0i64])
                            .map_err(super::super::internal)?;
                    }
                    Ok(i)
                })
                .await
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        blocker.await.unwrap().unwrap();
        let mut ok = 0;
        for (i, j) in jobs.into_iter().enumerate() {
            match j.await.unwrap() {
                Ok(v) => {
                    assert_eq!(v, i as i64);
                    ok += 1
                }
                Err(StoreError::Conflict(_)) => assert_eq!(i, 7),
                Err(e) => panic!("job {i}: {e}"),
            }
        }
        assert_eq!(ok, 19);
        let batches = writer.commits() - before;
        assert!(batches <= 2, "20 queued jobs took {batches} commits");
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<i64> = (0..20).filter(|i| *i != 7).collect();
        assert_eq!(rows, want, "job 7's first insert was rolled back with it");
    }
}
