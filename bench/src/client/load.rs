//! A load phase: N connections over one request set, for a duration or for
//! a number of requests, merged into one result.

use super::conn::{drive, Schedule};
use super::request::RequestSet;
use super::result::LoadResult;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Spec {
    pub connections: usize,
    /// Traffic before counting starts (connection setup happens in it too).
    pub warmup: Duration,
    /// Measure for this long after the warm-up...
    pub duration: Option<Duration>,
    /// ...or send exactly this many requests (each item of the set once when
    /// equal to its length: that is how data sets are loaded).
    pub limit: Option<usize>,
    /// Client threads (each with its own event loop) sharing the connections.
    pub threads: usize,
}

/// Longest a phase may run when it has no duration (loading data).
const LOAD_CAP: Duration = Duration::from_secs(600);
/// How long past its end a timed phase waits for in-flight requests.
const GRACE: Duration = Duration::from_secs(10);

pub async fn run(addr: SocketAddr, set: Arc<RequestSet>, spec: Spec) -> LoadResult {
    let start = Instant::now();
    let record_from = start + spec.warmup;
    let end = spec.duration.map(|d| record_from + d);
    let schedule = Arc::new(Schedule {
        record_from,
        end,
        limit: spec.limit,
        hard_stop: end.map_or(start + LOAD_CAP, |end| end + GRACE),
    });
    let counter = Arc::new(AtomicUsize::new(0));
    // wrk's design: each client thread runs its own single-threaded event
    // loop over its share of the connections. A work-stealing runtime here
    // costs twice the CPU per request (cross-thread wake-ups), CPU that the
    // server under test then lacks on a 2-core machine.
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let share = spec.connections / threads + usize::from(t < spec.connections % threads);
        let (set, counter, schedule) = (set.clone(), counter.clone(), schedule.clone());
        handles.push(std::thread::spawn(move || {
            client_thread(addr, share, &set, &counter, &schedule)
        }));
    }
    // Joining blocks, so it happens off the async orchestrator's threads.
    let joined = tokio::task::spawn_blocking(move || {
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    })
    .await;
    let mut total = LoadResult::empty();
    for result in joined.into_iter().flatten() {
        match result {
            Ok(result) => total.merge(result),
            Err(_) => total.record_error("client".into(), || "a client thread panicked".into()),
        }
    }
    total.window = match end {
        Some(end) => end - record_from,
        None => start.elapsed(),
    };
    total
}

/// One client thread: a single-threaded runtime with one task per connection.
fn client_thread(
    addr: SocketAddr,
    connections: usize,
    set: &Arc<RequestSet>,
    counter: &Arc<AtomicUsize>,
    schedule: &Arc<Schedule>,
) -> LoadResult {
    let mut total = LoadResult::empty();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            total.record_error("client".into(), || format!("client runtime: {e}"));
            return total;
        }
    };
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let (set, counter, schedule) = (set.clone(), counter.clone(), schedule.clone());
            tasks.spawn(async move { drive(addr, &set, &counter, &schedule).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => total.merge(result),
                Err(e) => {
                    total.record_error("client".into(), || format!("client task failed: {e}"))
                }
            }
        }
    });
    total
}
