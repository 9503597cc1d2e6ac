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
//!
//! Team revisions (what long-polling workloads wait on) move once per batch
//! and team, not once per write: a job that changed a team's secrets marks
//! the team, and just before the commit each marked team's revision is
//! bumped, inside the same transaction.

use super::super::{StoreError, StoreResult};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Upper bound on jobs per transaction (keeps latency bounded under load).
const MAX_BATCH: usize = 512;

/// Each touched team's revision after a batch.
type Revisions = HashMap<String, i64>;
type Completion = Box<dyn FnOnce(StoreResult<()>, &Revisions) + Send>;
/// The callers of one committed batch, waiting for the WAL to be synced.
type Committed = (Vec<Completion>, Arc<Revisions>);
/// Teams whose secrets the jobs of a batch changed.
type Touched = Vec<String>;
type Job = Box<dyn FnOnce(&Connection, &mut Touched) -> Completion + Send>;

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
        self.submit(None, move |conn| in_savepoint(conn, f))
            .await
            .map(|(r, _)| r)
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
        self.submit(None, f).await.map(|(r, _)| r)
    }

    /// Like [`Writer::write_single_statement`] for a change to `team_id`'s
    /// secrets: when the job succeeds the team's revision moves in the same
    /// transaction, and the revision it moved to is returned with the result.
    pub async fn write_team_change<R, F>(&self, team_id: String, f: F) -> StoreResult<(R, i64)>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (r, revision) = self.submit(Some(team_id), f).await?;
        let revision = revision.ok_or_else(|| {
            StoreError::Internal("a team change committed without its revision".into())
        })?;
        Ok((r, revision))
    }

    async fn submit<R, F>(&self, team: Option<String>, f: F) -> StoreResult<(R, Option<i64>)>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        metrics::counter!("tessera_store_calls_total", "backend" => "sqlite").increment(1);
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<(R, Option<i64>)>>();
        let job: Job = Box::new(
            move |conn: &Connection, touched: &mut Touched| -> Completion {
                let outcome = f(conn);
                if let (Ok(_), Some(t)) = (&outcome, &team) {
                    if !touched.contains(t) {
                        touched.push(t.clone());
                    }
                }
                Box::new(move |commit: StoreResult<()>, revisions: &Revisions| {
                    let result = match (outcome, commit) {
                        (Ok(r), Ok(())) => Ok((r, team.and_then(|t| revisions.get(&t).copied()))),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(e),
                    };
                    let _ = done_tx.send(result);
                })
            },
        );
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
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut touched = Touched::new();
        let commit = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                for job in batch.drain(..) {
                    completions.push(job(&conn, &mut touched));
                }
                bump_revisions(&conn, &touched)
                    .and_then(|revisions| {
                        conn.execute_batch("COMMIT")
                            .map(|()| revisions)
                            .map_err(super::internal)
                    })
                    .inspect_err(|_| {
                        let _ = conn.execute_batch("ROLLBACK");
                    })
            }
            Err(e) => {
                batch.clear();
                Err(super::internal(e))
            }
        };
        match commit {
            Ok(revisions) => {
                commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tessera_sqlite_commits_total").increment(1);
                if let Err(std::sync::mpsc::SendError(lost)) =
                    sync.send((completions, Arc::new(revisions)))
                {
                    fail_all(lost.0, "the SQLite sync thread has stopped");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SQLite commit failed; failing the whole batch");
                fail_all(completions, &e.to_string());
            }
        }
    }
}

/// Moves each touched team's revision by one, inside the batch's transaction.
fn bump_revisions(conn: &Connection, touched: &Touched) -> StoreResult<Revisions> {
    let mut revisions = Revisions::with_capacity(touched.len());
    if touched.is_empty() {
        return Ok(revisions);
    }
    let mut st = conn
        .prepare_cached("UPDATE teams SET revision = revision + 1 WHERE id = ?1 RETURNING revision")
        .map_err(super::internal)?;
    for team in touched {
        // A team deleted by an earlier job of this batch has no row left;
        // its writers failed on the missing team already.
        if let Some(rev) = st
            .query_row([team], |r| r.get::<_, i64>(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(super::internal)?
        {
            revisions.insert(team.clone(), rev);
        }
    }
    Ok(revisions)
}

fn fail_all(completions: Vec<Completion>, why: &str) {
    let none = Revisions::new();
    for done in completions {
        done(Err(StoreError::Internal(why.to_owned())), &none);
    }
}

/// Makes committed batches durable, then answers their callers. Each fsync
/// covers every batch that was committed before it started.
fn sync_loop(wal: &std::fs::File, rx: &std::sync::mpsc::Receiver<Committed>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let started = std::time::Instant::now();
        let synced = wal.sync_data();
        metrics::histogram!("tessera_sqlite_fsync_seconds").record(started.elapsed().as_secs_f64());
        match synced {
            Ok(()) => {
                for (completions, revisions) in waiting {
                    for done in completions {
                        done(Ok(()), &revisions);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "fsync of the SQLite WAL failed; failing the writes it covered");
                for (completions, _) in waiting {
                    fail_all(completions, "the write could not be made durable");
                }
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
