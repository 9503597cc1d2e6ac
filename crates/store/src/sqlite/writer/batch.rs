//! Batching and commit: the writer's loop, the open transaction and what
//! ends it (the team revisions, the commit, the WAL truncation).

use super::append::{append_events, audit_failed, Audit};
use super::*;

/// Where a batch goes once its transaction ends, and what is counted.
pub(super) struct BatchEnds {
    pub(super) sync: std::sync::mpsc::Sender<Committed>,
    /// Set by the syncer when it has nothing to do; cleared here when a
    /// commit is handed to it.
    pub(super) syncer_idle: Arc<AtomicBool>,
    pub(super) commits: Arc<AtomicU64>,
    pub(super) health: Arc<Health>,
}

/// The writer's transaction while it is open: the jobs run in it so far.
pub(super) struct OpenBatch {
    pub(super) completions: Vec<(Completion, Answer)>,
    pub(super) touched: Touched,
    /// A job of this batch failed for lack of space.
    pub(super) out_of_space: Option<StoreError>,
    /// Set when the transaction could not begin, or SQLite rolled it back
    /// by itself (a full disk, an I/O error): the jobs still to come are
    /// skipped (outside a transaction each would commit on its own) and the
    /// batch fails with this error.
    pub(super) aborted: Option<StoreError>,
    /// A caller of this batch is answered at the commit: commit at once.
    pub(super) prompt: bool,
}

impl OpenBatch {
    pub(super) fn begin(conn: &Connection) -> Self {
        Self {
            completions: Vec::new(),
            touched: Touched::default(),
            out_of_space: None,
            aborted: conn
                .execute_batch("BEGIN IMMEDIATE")
                .err()
                .map(StoreError::from),
            prompt: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.completions.len()
    }

    /// Runs `job` in the open transaction (or skips it, once aborted).
    pub(super) fn run(&mut self, conn: &Connection, job: Job) {
        if self.aborted.is_some() {
            let (done, answer, _) = job(None, &mut self.touched);
            self.completions.push((done, answer));
            return;
        }
        let (done, answer, failure) = job(Some(conn), &mut self.touched);
        self.prompt |= answer == Answer::AtCommit;
        self.completions.push((done, answer));
        if let Some(e @ StoreError::StorageFull { .. }) = &failure {
            self.out_of_space = Some(e.clone());
        }
        if conn.is_autocommit() {
            self.aborted =
                Some(failure.unwrap_or_else(|| {
                    StoreError::internal("the transaction ended during a write")
                }));
        }
    }

    /// Whether to commit now rather than take more jobs.
    pub(super) fn ready(&self, syncer_idle: bool) -> bool {
        syncer_idle || self.prompt || self.aborted.is_some() || self.len() >= MAX_BATCH
    }
}

/// The writer's loop: jobs run as they arrive, and the open batch commits
/// when it is [`OpenBatch::ready`] (see "When to commit" above).
pub(super) fn run(
    conn: &Connection,
    mut rx: mpsc::Receiver<Msg>,
    ends: &BatchEnds,
    audit: &AuditKey,
) {
    let mut chain = ChainSlot::new("sqlite", 0);
    let mut open: Option<OpenBatch> = None;
    let mut next_truncate = Instant::now() + TRUNCATE_EVERY;
    while let Some(first) = rx.blocking_recv() {
        // Everything queued now, up to a full batch.
        let mut next = Some(first);
        while let Some(msg) = next {
            if let Msg::Job(job) = msg {
                open.get_or_insert_with(|| OpenBatch::begin(conn))
                    .run(conn, job);
            }
            let full = open.as_ref().is_some_and(|b| b.len() >= MAX_BATCH);
            next = if full { None } else { rx.try_recv().ok() };
        }
        let idle = ends.syncer_idle.load(Ordering::Acquire);
        if let Some(batch) = open.take_if(|b| b.ready(idle)) {
            end_batch(conn, batch, ends, &mut chain, audit);
            if Instant::now() >= next_truncate {
                let wait = if truncate_wal(conn) {
                    TRUNCATE_EVERY
                } else {
                    TRUNCATE_RETRY
                };
                next_truncate = Instant::now() + wait;
            }
        }
    }
    if let Some(batch) = open.take() {
        end_batch(conn, batch, ends, &mut chain, audit);
    }
}

/// Commits the open batch and hands its callers to the syncer (or answers
/// them now: those answered at the commit, or all of them when it failed).
pub(super) fn end_batch(
    conn: &Connection,
    mut batch: OpenBatch,
    ends: &BatchEnds,
    chain: &mut ChainSlot,
    key: &AuditKey,
) {
    metrics::histogram!("tessera_sqlite_batch_size").record(batch.len() as f64);
    let commit = match batch.aborted.take() {
        Some(e) => Err(e),
        None => commit(conn, &mut batch.touched, Audit { key, chain }),
    };
    match commit {
        Ok(revisions) => {
            // A write of this batch that failed for lack of space means
            // writes still fail, even though the others committed.
            match &batch.out_of_space {
                Some(e) => ends.health.set(e),
                None => ends.health.committed(),
            }
            ends.commits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("tessera_sqlite_commits_total").increment(1);
            let revisions = Arc::new(revisions);
            let mut after_sync = Vec::with_capacity(batch.len());
            for (done, answer) in batch.completions {
                match answer {
                    Answer::AtCommit => done(Ok(()), &revisions),
                    Answer::AfterSync => after_sync.push(done),
                }
            }
            // Busy before it can receive, so that its "idle" always comes
            // after this.
            ends.syncer_idle.store(false, Ordering::Release);
            if let Err(std::sync::mpsc::SendError(lost)) = ends.sync.send((after_sync, revisions)) {
                // Gone: nothing will ever be synced; later batches fail here too.
                ends.syncer_idle.store(true, Ordering::Release);
                let e = StoreError::internal("the SQLite sync thread has stopped");
                fail_all(lost.0, &e);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SQLite commit failed; failing the whole batch");
            ends.health.set(&e);
            fail_all(
                batch
                    .completions
                    .into_iter()
                    .map(|(done, _)| done)
                    .collect(),
                &e,
            );
        }
    }
}

/// Empties the WAL with a TRUNCATE checkpoint, waiting at most
/// [`TRUNCATE_WAIT`] for readers of an older snapshot. Whether it did.
pub(super) fn truncate_wal(conn: &Connection) -> bool {
    if conn.busy_timeout(TRUNCATE_WAIT).is_err() {
        return false;
    }
    let done = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok_and(|busy| busy == 0);
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    done
}

/// Ends the open transaction: appends the events of its successful jobs,
/// moves the revisions of the teams they changed, and commits; on any
/// failure rolls it all back.
pub(super) fn commit(
    conn: &Connection,
    touched: &mut Touched,
    audit: Audit<'_>,
) -> StoreResult<Revisions> {
    let Audit { key, chain } = audit;
    let events = std::mem::take(&mut touched.events);
    let appended = if events.is_empty() {
        Ok(None)
    } else {
        append_events(conn, key, chain, events).map_err(audit_failed)
    };
    appended
        .and_then(|head| bump_revisions(conn, &touched.teams).map(|r| (r, head)))
        .and_then(|(revisions, head)| {
            conn.execute_batch("COMMIT")
                .map(|()| (revisions, head))
                .map_err(StoreError::from)
        })
        .map(|(revisions, head)| {
            if let Some(head) = head {
                chain.committed(head);
            }
            revisions
        })
        .inspect_err(|_| {
            chain.forget();
            let _ = conn.execute_batch("ROLLBACK");
        })
}

/// Moves each touched team's revision by one, inside the batch's transaction.
pub(super) fn bump_revisions(conn: &Connection, touched: &[String]) -> StoreResult<Revisions> {
    let mut revisions = Revisions::with_capacity(touched.len());
    if touched.is_empty() {
        return Ok(revisions);
    }
    let mut st = conn
        .prepare_cached("UPDATE teams SET revision = revision + 1 WHERE id = ?1 RETURNING revision")
        .map_err(StoreError::from)?;
    for team in touched {
        // A team deleted by an earlier job of this batch has no row left;
        // its writers failed on the missing team already.
        let moved = st
            .query_row([team], |r| r.get::<_, i64>(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(StoreError::from)?;
        if let Some(rev) = moved {
            revisions.insert(team.clone(), rev);
        }
    }
    Ok(revisions)
}

pub(super) fn fail_all(completions: Vec<Completion>, e: &StoreError) {
    let none = Revisions::new();
    for done in completions {
        done(Err(e.clone()), &none);
    }
}
