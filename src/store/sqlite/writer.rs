//! The single SQLite writer, with group commit.
//!
//! One thread owns the only write connection. Callers send it jobs over a
//! channel; it takes whatever has queued (up to [`MAX_BATCH`]), runs each job
//! inside its own savepoint within one transaction, commits once (an fsync
//! under `synchronous=FULL`), and only then answers each caller. A job that
//! fails is rolled back to its savepoint and fails alone; if the commit itself
//! fails, every job of the batch gets the error. No caller hears "done" before
//! its write is durable.

use super::super::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Upper bound on jobs per transaction (keeps latency bounded under load).
const MAX_BATCH: usize = 512;

type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start(conn: Connection) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Self { tx })
    }

    /// Runs `f` in the next batch; resolves after that batch has committed.
    pub async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn: &Connection| -> Completion {
            let outcome = in_savepoint(conn, f);
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
    conn.execute_batch("SAVEPOINT job")
        .map_err(super::internal)?;
    match f(conn) {
        Ok(r) => {
            conn.execute_batch("RELEASE job").map_err(super::internal)?;
            Ok(r)
        }
        Err(e) => {
            // Undo this job only; its neighbours in the batch are unaffected.
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut completions: Vec<Completion> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("tessera_sqlite_batch_size").record(batch.len() as f64);
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
        if let Err(e) = &commit {
            tracing::error!(error = %e, "SQLite commit failed; failing the whole batch");
        }
        for done in completions.drain(..) {
            done(match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Internal(e.to_string())),
            });
        }
    }
}
