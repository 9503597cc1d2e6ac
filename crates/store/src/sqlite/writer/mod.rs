//! The single SQLite writer, with pipelined group commit.
//!
//! One thread owns the only write connection. Callers send it jobs over a
//! channel; it runs each as it arrives (in its own savepoint where it needs
//! one) inside one open transaction, and commits that transaction once for
//! all of them. A job that fails is undone alone; if the commit itself fails,
//! every job of the batch gets the error.
//!
//! Durability is made explicit and pipelined: the connection commits with
//! `synchronous=NORMAL` (the commit reaches the WAL file but is not fsynced),
//! and the batch's callers are handed to a second thread, the syncer, that
//! `fdatasync`s the WAL file and only then answers them. So, as with
//! `synchronous=FULL`, no caller hears "done" before its write is on disk,
//! but the writer does not sit idle through every fsync (measured before
//! the syncer existed: COMMIT, mostly the fsync, was 69% of the writer's
//! time under load).
//!
//! When to commit: while the syncer is busy, the writer keeps running the
//! jobs that arrive in a new open transaction, and commits it when the
//! syncer has nothing left to do, when it holds [`MAX_BATCH`] jobs, or at
//! once when one of its callers is answered at the commit (below). A commit
//! made earlier would not be synced any sooner, since the syncer is busy;
//! what a caller may wait longer is the commit itself, which now follows
//! the previous fsync instead of overlapping it. In exchange one commit and
//! one fsync serve every job that arrived during the previous fsync. Each commit has fixed costs (BEGIN and COMMIT, the
//! team revisions, the last pages of the audit log and of the version
//! history, which every commit writes into the WAL again), so they are
//! shared by more jobs. Measured with upsert-64 on two cores (2 s
//! windows): 17 jobs per commit instead of 10, one commit per fsync instead
//! of 1.8, 6.9 KiB written to disk per upsert instead of 8.7; throughput
//! stayed within the benchmark's noise (see docs/performance.md).
//!
//! What changes: another request may read a committed write in the short
//! window before its fsync completes. A process crash loses nothing (the
//! data is in the OS's page cache); after a power failure such a write, never
//! acknowledged to its writer, can be gone. The one exception to "answered
//! after the fsync": audit events that record no change of their own
//! (runtime reads) are answered at their commit ([`Writer::append_audit`]).
//!
//! Audit: the events of a batch's successful jobs are linked into the
//! writer's chain and inserted just before its commit, in its transaction;
//! if they cannot be, the whole batch fails and nothing of it is written.
//!
//! Remanence: when SQLite restarts the WAL from its beginning it overwrites
//! old frames but leaves those past the end of the new ones, with old page
//! images (and old ciphertexts) in them. While writes keep coming, the writer
//! therefore empties the WAL itself every [`TRUNCATE_EVERY`], between two
//! batches, with a TRUNCATE checkpoint; once writes pause, the checkpointer
//! does it (see `checkpointer.rs`). The WAL is truncated, never removed, so
//! the syncer's file handle stays valid; the checkpoint syncs the WAL and the
//! database file before truncating, so nothing committed depends on the
//! syncer's fsync of frames that are gone. (Truncating at every WAL restart,
//! `journal_size_limit = 0`, was measured: 11% of upsert throughput at 64
//! connections and 23% at one, because every commit then extends the file
//! and each fsync must also write its new size.)
//!
//! A failed commit or fsync (the disk is full) is remembered in [`Health`]
//! until one succeeds, so readiness can report it.
//!
//! Team revisions (what long-polling workloads wait on) move once per batch
//! and team, not once per write: a job that changed a team's secrets marks
//! the team, and just before the commit each marked team's revision is
//! bumped, inside the same transaction.
//!
//! Files: this one, the job protocol (what a caller sends, how it is
//! answered, [`Health`]); `batch.rs`, batching and commit; `append.rs`, the
//! audit append; `syncer.rs`, the syncer.

mod append;
mod batch;
mod syncer;

use batch::*;
use syncer::*;

use super::super::audit::{seq_col, AuditKey, ChainSlot};
use super::super::identity::TEAM_GONE;
use super::super::{StoreError, StoreResult};
use parking_lot::Mutex;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_core::audit::event::AuditEvent;
use tokio::sync::{mpsc, oneshot};

/// Upper bound on jobs per transaction (keeps latency bounded under load,
/// and a slow fsync from holding an ever larger transaction open).
const MAX_BATCH: usize = 512;

/// While writes keep coming, the writer empties the WAL this often.
pub const TRUNCATE_EVERY: Duration = Duration::from_secs(5);

/// How long that TRUNCATE checkpoint may wait for readers of an older
/// snapshot (the writer's queue waits meanwhile); when they take longer it
/// is tried again after [`TRUNCATE_RETRY`].
const TRUNCATE_WAIT: Duration = Duration::from_millis(20);
const TRUNCATE_RETRY: Duration = Duration::from_secs(1);

/// The write connection's usual busy timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Each touched team's revision after a batch.
type Revisions = HashMap<String, i64>;
type Completion = Box<dyn FnOnce(StoreResult<()>, &Revisions) + Send>;
/// The callers of one committed batch, waiting for the WAL to be synced.
type Committed = (Vec<Completion>, Arc<Revisions>);
/// What the jobs of a batch leave for its end: the teams whose secrets they
/// changed, and the audit events of the jobs that succeeded.
#[derive(Default)]
struct Touched {
    teams: Vec<String>,
    events: Vec<AuditEvent>,
}
/// When a caller hears that its job committed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Once the WAL is synced: every change.
    AfterSync,
    /// At the commit, before the sync: only events that record no change of
    /// their own (reads), whose callers must not wait one more fsync (see
    /// [`Writer::append_audit`]).
    AtCommit,
}

/// What reaches the writer: a job, or word that the syncer has finished
/// and holds nothing (so the open batch should commit now).
enum Msg {
    Job(Job),
    SyncerIdle,
}

/// Makes everything committed so far durable (the WAL's `fdatasync`; tests
/// pass one they can hold up).
type SyncFn = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// Runs on the writer (or, given `None`, is skipped); returns how to answer
/// the caller once the batch's fate is known (and when), and the job's own
/// error if it ran and failed.
type Job = Box<
    dyn FnOnce(Option<&Connection>, &mut Touched) -> (Completion, Answer, Option<StoreError>)
        + Send,
>;

/// Whether writes currently fail: the error of the last failed commit or
/// fsync, cleared by the next one that succeeds; a full disk is cleared only
/// by the readiness check, once space has returned (small writes can still
/// succeed on a full disk while larger ones fail).
#[derive(Default)]
pub struct Health {
    failing: Mutex<Option<StoreError>>,
}

impl Health {
    pub fn failing(&self) -> Option<StoreError> {
        self.failing.lock().clone()
    }

    fn set(&self, e: &StoreError) {
        *self.failing.lock() = Some(e.clone());
    }

    /// Forgets a failure: writes succeed again.
    pub fn clear(&self) {
        if self.failing.lock().take().is_some() {
            tracing::info!("SQLite writes succeed again");
        }
    }

    /// A commit succeeded: forgets any failure but a full disk.
    fn committed(&self) {
        let full = matches!(self.failing(), Some(StoreError::StorageFull { .. }));
        if !full {
            self.clear();
        }
    }
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    /// Read by the tests; the same count is exported as a metric.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests only"))]
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer on `conn` (a connection to a WAL-mode database) and
    /// the syncer on `wal` (that database's `-wal` file).
    pub fn start(
        conn: Connection,
        wal: std::fs::File,
        health: Arc<Health>,
        audit: Arc<AuditKey>,
    ) -> std::io::Result<Self> {
        Self::start_with(conn, Box::new(move || wal.sync_data()), health, audit)
    }

    /// [`Writer::start`] with the syncer's way of making commits durable.
    fn start_with(
        conn: Connection,
        sync: SyncFn,
        health: Arc<Health>,
        audit: Arc<AuditKey>,
    ) -> std::io::Result<Self> {
        // Durability comes from the syncer's fdatasync, before any answer.
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::channel::<Msg>(4 * MAX_BATCH);
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<Committed>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let sync_health = health.clone();
        let syncer_idle = Arc::new(AtomicBool::new(true));
        let syncer = Syncer {
            sync,
            idle: syncer_idle.clone(),
            // Weak, so the writer still stops once every `Writer` is gone.
            wake: tx.downgrade(),
            rx: Some(sync_rx),
        };
        std::thread::Builder::new()
            .name("tessera-sqlite-sync".into())
            .spawn(move || sync_loop(syncer, &sync_health))?;
        let ends = BatchEnds {
            sync: sync_tx,
            syncer_idle,
            commits: counter,
            health,
        };
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || run(&conn, rx, &ends, &audit))?;
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
        self.write_audited(f, |_| Vec::new()).await
    }

    /// Like [`Writer::write`]; when `f` succeeds, the events `audit` makes
    /// of its result are appended to the audit log in the same transaction
    /// (if they cannot be, the whole batch fails).
    pub async fn write_audited<R, F, A>(&self, f: F, audit: A) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        A: FnOnce(&R) -> Vec<AuditEvent> + Send + 'static,
    {
        let job = move |conn: &Connection| in_savepoint(conn, f);
        self.submit(None, |_| false, job, audit, Answer::AfterSync)
            .await
            .map(|(r, _)| r)
    }

    /// Appends events that record no change of their own (runtime reads),
    /// answering once their transaction has committed, without waiting for
    /// the WAL's fsync: a process crash cannot lose them (they are in the
    /// OS's page cache); a power failure within the next fsync, a few
    /// milliseconds, can. Measured with fetch-100, waiting for the fsync as
    /// well cost a quarter of the fetches: each read waited for up to two.
    pub async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        let audit = move |_: &()| events;
        self.submit(None, |_| false, |_| Ok(()), audit, Answer::AtCommit)
            .await
            .map(|_| ())
    }

    /// Runs one statement in the next batch, without a savepoint: SQLite
    /// applies a single statement atomically, so a failing one has changed
    /// nothing and there is nothing to roll back (two statements fewer per
    /// job on the hot path). Resolves to how many rows it changed.
    pub async fn execute<P>(&self, sql: &'static str, params: P) -> StoreResult<usize>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.execute_audited(sql, params, |_| Vec::new()).await
    }

    /// Like [`Writer::execute`], with the events `audit` makes of the number
    /// of rows changed appended in the same transaction.
    pub async fn execute_audited<P, A>(
        &self,
        sql: &'static str,
        params: P,
        audit: A,
    ) -> StoreResult<usize>
    where
        P: rusqlite::Params + Send + 'static,
        A: FnOnce(&usize) -> Vec<AuditEvent> + Send + 'static,
    {
        let job = move |c: &Connection| Ok(c.prepare_cached(sql)?.execute(params)?);
        self.submit(None, |_| false, job, audit, Answer::AfterSync)
            .await
            .map(|(n, _)| n)
    }

    /// Runs `f` in the next batch for a change to `team_id`'s secrets, without
    /// a savepoint (as [`Writer::execute`]: `f` modifies the database with at
    /// most one statement, as its last step, or takes a savepoint itself).
    /// A job that changed something returns `Some`: the team's revision moves
    /// in the same transaction, the events `audit` makes of the result are
    /// appended to the audit log in it, and the revision it moved to is
    /// returned with the result. A job that changed nothing returns `None`,
    /// and the revision stays. `NotFound` when another job of the same batch
    /// deleted the team: its row is gone, and with it what this job wrote,
    /// as if the deletion had come first.
    pub async fn write_team_change<R, F, A>(
        &self,
        team_id: String,
        f: F,
        audit: A,
    ) -> StoreResult<Option<(R, i64)>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<Option<R>> + Send + 'static,
        A: FnOnce(&R) -> Vec<AuditEvent> + Send + 'static,
    {
        let audit = move |r: &Option<R>| r.as_ref().map(audit).unwrap_or_default();
        let answer = Answer::AfterSync;
        match self
            .submit(Some(team_id), Option::is_some, f, audit, answer)
            .await?
        {
            (None, _) => Ok(None),
            (Some(r), Some(revision)) => Ok(Some((r, revision))),
            (Some(_), None) => Err(StoreError::NotFound(TEAM_GONE.into())),
        }
    }

    /// Queues `f`; when it succeeds with a result `changed` accepts, `team`
    /// is marked for a revision move; when it succeeds, `audit`'s events
    /// are appended at the batch's end.
    async fn submit<R, F, A>(
        &self,
        team: Option<String>,
        changed: fn(&R) -> bool,
        f: F,
        audit: A,
        answer: Answer,
    ) -> StoreResult<(R, Option<i64>)>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        A: FnOnce(&R) -> Vec<AuditEvent> + Send + 'static,
    {
        metrics::counter!("tessera_store_calls_total", "backend" => "sqlite").increment(1);
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<(R, Option<i64>)>>();
        let job: Job = Box::new(move |conn: Option<&Connection>, touched: &mut Touched| {
            let outcome = conn.map(f);
            if let Some(Ok(r)) = &outcome {
                if let Some(t) = &team {
                    if changed(r) && !touched.teams.contains(t) {
                        touched.teams.push(t.clone());
                    }
                }
                touched.events.extend(audit(r));
            }
            let failure = outcome.as_ref().and_then(|o| o.as_ref().err().cloned());
            let done: Completion =
                Box::new(move |commit: StoreResult<()>, revisions: &Revisions| {
                    let result = match (outcome, commit) {
                        (Some(Ok(r)), Ok(())) => {
                            Ok((r, team.and_then(|t| revisions.get(&t).copied())))
                        }
                        (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                        (None, Ok(())) => Err(StoreError::internal("a skipped write was not run")),
                    };
                    let _ = done_tx.send(result);
                });
            (done, answer, failure)
        });
        self.tx
            .send(Msg::Job(job))
            .await
            .map_err(|_| StoreError::unavailable("the SQLite writer has stopped"))?;
        done_rx
            .await
            .map_err(|_| StoreError::internal("the SQLite writer dropped a job"))?
    }
}

/// Runs `f` in its own savepoint: when it fails, what it did is undone and
/// the rest of the batch is unaffected.
pub(super) fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    let exec = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
    };
    exec("SAVEPOINT job").map_err(StoreError::from)?;
    match f(conn) {
        Ok(r) => {
            exec("RELEASE job").map_err(StoreError::from)?;
            Ok(r)
        }
        Err(e) => {
            // Undo this job only; its neighbours in the batch are unaffected.
            let _ = exec("ROLLBACK TO job").and_then(|()| exec("RELEASE job"));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_on(dir: &tempfile::TempDir) -> (Writer, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL UNIQUE);",
        )
        .unwrap();
        let wal = std::fs::File::open(dir.path().join("w.db-wal")).unwrap();
        let health = Arc::new(Health::default());
        let audit = Arc::new(AuditKey::default());
        (Writer::start(conn, wal, health, audit).unwrap(), path)
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
                        .map_err(StoreError::from)?;
                    if i == 7 {
                        // A later statement of the same job fails: all of job 7 is undone.
                        c.execute("INSERT INTO t (x) VALUES (?1)", [0i64])
                            .map_err(StoreError::from)?;
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

    /// Should the sync thread die, writes fail at once instead of waiting in
    /// a batch that the writer holds for a syncer that will never be idle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_fail_promptly_when_the_sync_thread_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .unwrap();
        let sync: SyncFn = Box::new(|| panic!("the test's fsync fails hard"));
        let health = Arc::new(Health::default());
        let writer = Writer::start_with(conn, sync, health, Arc::new(AuditKey::default())).unwrap();
        for x in 0..3i64 {
            let write = writer.write(move |c| Ok(c.execute("INSERT INTO t (x) VALUES (?1)", [x])?));
            let outcome = tokio::time::timeout(Duration::from_secs(10), write)
                .await
                .unwrap_or_else(|_| panic!("write {x} waited for a sync thread that is gone"));
            assert!(
                outcome.is_err(),
                "write {x} was acknowledged without an fsync"
            );
        }
    }

    /// A syncer whose fsyncs the test lets through one at a time; it says
    /// when one has started.
    fn held_syncer() -> (
        SyncFn,
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Receiver<()>,
    ) {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let sync: SyncFn = Box::new(move || {
            let _ = started_tx.send(());
            // Once the test drops its end, every fsync passes.
            let _ = gate.recv();
            Ok(())
        });
        (sync, release, started)
    }

    fn count_rows(path: &std::path::Path) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn wait_for(started: &std::sync::mpsc::Receiver<()>) {
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("the syncer did not start an fsync");
    }

    /// Jobs that arrive while the syncer is busy run at once but commit
    /// together when it is done, and nobody hears "done" before the fsync
    /// that covers them; a caller answered at the commit does not wait for
    /// the fsync under way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_arriving_during_an_fsync_share_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL UNIQUE);",
        )
        .unwrap();
        let (sync, release, started) = held_syncer();
        let health = Arc::new(Health::default());
        let writer = Writer::start_with(conn, sync, health, Arc::new(AuditKey::default())).unwrap();
        let insert = |w: &Writer, x: i64| {
            let w = w.clone();
            tokio::spawn(async move {
                w.write(move |c| Ok(c.execute("INSERT INTO t (x) VALUES (?1)", [x])?))
                    .await
            })
        };

        // The syncer is idle: the first job commits at once; its fsync is held.
        let first = insert(&writer, 0);
        wait_for(&started);
        assert_eq!(writer.commits(), 1);

        // Ten jobs arrive during that fsync: they run, but stay uncommitted.
        let (ran_tx, ran) = std::sync::mpsc::channel::<()>();
        let mut later = Vec::new();
        for x in 1..=10i64 {
            let (w, ran_tx) = (writer.clone(), ran_tx.clone());
            later.push(tokio::spawn(async move {
                w.write(move |c| {
                    c.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
                    let _ = ran_tx.send(());
                    Ok(())
                })
                .await
            }));
        }
        for _ in 0..10 {
            ran.recv_timeout(Duration::from_secs(10))
                .expect("a job did not run while the fsync was held");
        }
        assert_eq!(
            writer.commits(),
            1,
            "jobs committed while the syncer was busy"
        );
        assert_eq!(count_rows(&path), 1, "only the first job is committed");
        assert!(!first.is_finished(), "answered before its fsync");

        // The fsync completes: the first job is answered, and the ten commit
        // together; they are answered only after their own fsync.
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        wait_for(&started);
        assert_eq!(
            writer.commits(),
            2,
            "the ten jobs took more than one commit"
        );
        assert_eq!(count_rows(&path), 11);
        assert!(
            later.iter().all(|j| !j.is_finished()),
            "answered before their fsync"
        );
        release.send(()).unwrap();
        for j in later {
            j.await.unwrap().unwrap();
        }

        // A caller answered at the commit is not held up by an fsync.
        let held = insert(&writer, 11);
        wait_for(&started);
        tokio::time::timeout(Duration::from_secs(10), writer.append_audit(Vec::new()))
            .await
            .expect("an at-commit caller waited for the fsync under way")
            .unwrap();
        assert_eq!(writer.commits(), 4);
        assert!(!held.is_finished());
        drop(release);
        held.await.unwrap().unwrap();
    }
}
