//! Batching of the audit events that record no change of their own
//! (runtime reads, failed authentications), for both engines.
//!
//! Every workload read waits for its event's commit before any value is
//! sent. Appended one by one, each read cost a transaction and two
//! cross-thread wake-ups (measured with fetch-100 on SQLite: 1.7 events per
//! commit, the log costing 25-30% of the fetches). Here the events of reads
//! arriving together share one append: a task takes whatever has queued,
//! first letting the request handlers that are ready to run add theirs (one
//! yield to the scheduler, no timer: an idle server adds no delay), appends
//! it in one transaction, and answers every caller with its outcome. While
//! an append is in flight the next batch gathers.

use super::{StoreError, StoreResult};
use std::future::Future;
use std::sync::Arc;
use tessera_core::audit::event::AuditEvent;
use tokio::sync::{mpsc, oneshot, Mutex};

type Queued = (Vec<AuditEvent>, oneshot::Sender<StoreResult<()>>);

/// Events per append, at most.
const MAX_EVENTS: usize = 1024;

#[derive(Clone)]
pub(crate) struct EventBatcher {
    tx: mpsc::Sender<Queued>,
}

impl EventBatcher {
    /// `tasks` tasks, each appending one batch at a time with `append`.
    pub(crate) fn start<F, Fut>(tasks: usize, append: F) -> Self
    where
        F: Fn(Vec<AuditEvent>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = StoreResult<()>> + Send,
    {
        let (tx, rx) = mpsc::channel::<Queued>(4 * MAX_EVENTS);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..tasks {
            let (rx, append) = (rx.clone(), append.clone());
            tokio::spawn(async move {
                loop {
                    let mut pending = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut pending, MAX_EVENTS).await == 0 {
                            break;
                        }
                        tokio::task::yield_now().await;
                        while pending.len() < MAX_EVENTS {
                            match rx.try_recv() {
                                Ok(more) => pending.push(more),
                                Err(_) => break,
                            }
                        }
                    }
                    let mut events = Vec::with_capacity(pending.len());
                    let mut callers = Vec::with_capacity(pending.len());
                    for (e, done) in pending {
                        events.extend(e);
                        callers.push(done);
                    }
                    metrics::histogram!("tessera_audit_read_batch_events")
                        .record(events.len() as f64);
                    let result = append(events).await;
                    for done in callers {
                        let _ = done.send(result.clone());
                    }
                }
            });
        }
        Self { tx }
    }

    /// Appends `events` with the next batch; resolves once it committed.
    pub(crate) async fn append(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((events, done))
            .await
            .map_err(|_| StoreError::unavailable("the audit appender has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::internal("the audit appender dropped events"))?
    }
}
