//! Request metrics. Labels are the route template (never the concrete path,
//! which holds secret names), the method and the status code.

use axum::http::{Method, StatusCode};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The process-wide Prometheus recorder (installed once, shared by every app
/// instance in the process, e.g. in tests).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // The only error is an empty bucket list; were it ever empty,
            // durations would be summaries instead of histograms.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); then
            // ours still renders whatever was recorded through it.
            let _ = metrics::set_global_recorder(recorder);
            start_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often recorded histogram samples are folded into their buckets.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The recorder keeps every histogram sample (about 16 bytes each: one per
/// request, per SQLite batch, per fsync) until it is drained, which a scrape of
/// `/metrics` does and nothing else: without a scraper the process grew by
/// megabytes a minute under load (seen as RSS climbing run after run in the
/// benchmark). A thread of its own drains them, independent of any runtime
/// (tests start and stop many).
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("tessera-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread; histogram samples are drained only by scrapes");
    }
}

/// The handles of one route and method, made once: building a labelled
/// handle (label strings, registry lookup) costs more than recording.
struct RouteMetrics {
    duration: Histogram,
    by_status: Mutex<Vec<(u16, Counter)>>,
}

type Routes = RwLock<HashMap<String, Vec<(Method, Arc<RouteMetrics>)>>>;

fn route_metrics(method: &Method, route: &str) -> Arc<RouteMetrics> {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    let find = |map: &HashMap<String, Vec<(Method, Arc<RouteMetrics>)>>| {
        map.get(route)
            .and_then(|methods| methods.iter().find(|(m, _)| m == method))
            .map(|(_, r)| r.clone())
    };
    if let Some(found) = find(&routes.read()) {
        return found;
    }
    let made = Arc::new(RouteMetrics {
        duration: metrics::histogram!("tessera_http_request_duration_seconds",
            "method" => method.as_str().to_owned(), "route" => route.to_owned()),
        by_status: Mutex::default(),
    });
    let mut map = routes.write();
    if let Some(found) = find(&map) {
        return found;
    }
    let methods = map.entry(route.to_owned()).or_default();
    methods.push((method.clone(), made.clone()));
    made
}

/// Counts a request answered by a route and records how long it took.
pub fn record(method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
    let metrics = route_metrics(method, route);
    metrics.duration.record(elapsed.as_secs_f64());
    let status = status.as_u16();
    let mut by_status = metrics.by_status.lock();
    let counter = match by_status.iter().find(|(s, _)| *s == status) {
        Some((_, c)) => c.clone(),
        None => {
            let c = metrics::counter!("tessera_http_requests_total",
                "method" => method.as_str().to_owned(), "route" => route.to_owned(),
                "status" => status.to_string());
            by_status.push((status, c.clone()));
            c
        }
    };
    drop(by_status);
    counter.increment(1);
}

pub fn record_unmatched(status: u16) {
    metrics::counter!("tessera_http_requests_total", "method" => "any", "route" => "unmatched", "status" => status.to_string())
        .increment(1);
}
