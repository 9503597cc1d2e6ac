//! The syncer: the thread that makes committed batches durable (the WAL's
//! `fdatasync`) and only then answers their callers.

use super::*;

/// The syncer's side: how it makes commits durable, and how it tells the
/// writer that it is idle.
pub(super) struct Syncer {
    pub(super) sync: SyncFn,
    pub(super) idle: Arc<AtomicBool>,
    pub(super) wake: mpsc::WeakSender<Msg>,
    /// Committed batches to sync; `None` only while the syncer is dropped.
    pub(super) rx: Option<std::sync::mpsc::Receiver<Committed>>,
}

impl Syncer {
    /// Tells the writer that nothing is being synced: flag first, then
    /// wake (the writer reads the flag after every message; when its queue
    /// is full the wake is dropped, and it reads the flag soon anyway).
    pub(super) fn idle(&self) {
        say_idle(&self.idle, &self.wake);
    }
}

/// [`Syncer::idle`] on the fields alone, for the loop that borrows the
/// syncer's queue meanwhile.
pub(super) fn say_idle(idle: &AtomicBool, wake: &mpsc::WeakSender<Msg>) {
    idle.store(true, Ordering::Release);
    if let Some(writer) = wake.upgrade() {
        let _ = writer.try_send(Msg::SyncerIdle);
    }
}

impl Drop for Syncer {
    /// Should the syncer ever stop (it panicked), the writer must not hold
    /// its open batch waiting for it: it commits, and its callers hear that
    /// the sync thread has stopped.
    fn drop(&mut self) {
        // The queue closes first: a batch the writer hands over from now on
        // fails at its send (and the writer marks the syncer idle itself),
        // and the callers of batches still queued hear that their write
        // failed when their completions drop with it. Only then "idle", so
        // that it cannot be overtaken by a send nobody will ever answer.
        drop(self.rx.take());
        self.idle();
    }
}

/// Makes committed batches durable, then answers their callers. Each fsync
/// covers every batch that was committed before it started; with nothing
/// left to sync it tells the writer, which then commits what it holds.
pub(super) fn sync_loop(mut syncer: Syncer, health: &Health) {
    let Some(rx) = syncer.rx.take() else {
        return;
    };
    // Back into the syncer, which closes it before saying "idle" when it
    // drops (also when a sync panics); borrowed from there meanwhile.
    let rx = &*syncer.rx.insert(rx);
    let mut next = rx.recv().ok();
    while let Some(first) = next.take() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let started = std::time::Instant::now();
        let synced = (syncer.sync)();
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
                let err = if e.kind() == std::io::ErrorKind::StorageFull {
                    StoreError::with_source(StoreError::full_from, e)
                } else {
                    StoreError::internal("the write could not be made durable")
                };
                health.set(&err);
                for (completions, _) in waiting {
                    fail_all(completions, &err);
                }
            }
        }
        next = match rx.try_recv() {
            Ok(more) => Some(more),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                say_idle(&syncer.idle, &syncer.wake);
                rx.recv().ok()
            }
        };
    }
}
