//! What one load phase measured: successes, failures by kind, latencies.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies are recorded in microseconds, from 1 µs to 60 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub struct LoadResult {
    /// Responses with status 200, the only ones counted as successes (for
    /// a set with a unit of several requests: units whose every request
    /// answered 200).
    pub ok: u64,
    /// For a unit of several requests: the single 200 answers within the
    /// window (see [`LoadResult::rps`]).
    pub ok_requests: u64,
    /// Requests per unit (1 but for sets built `with_unit`).
    pub unit: usize,
    /// Every completed request, warm-up included (for CPU per request).
    pub completed: u64,
    /// Everything else, by kind ("HTTP 503", "transport", "timeout").
    pub errors: BTreeMap<String, u64>,
    /// The first failure seen, for the report (status line and body start).
    pub first_error: Option<String>,
    /// Latency of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// The time over which `ok` was counted.
    pub window: Duration,
}

impl LoadResult {
    pub fn empty() -> Self {
        LoadResult {
            ok: 0,
            ok_requests: 0,
            unit: 1,
            completed: 0,
            errors: BTreeMap::new(),
            first_error: None,
            latency_us: new_histogram(),
            window: Duration::ZERO,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn record_error(&mut self, kind: String, detail: impl FnOnce() -> String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(detail());
        }
    }

    pub fn merge(&mut self, other: LoadResult) {
        self.ok += other.ok;
        self.ok_requests += other.ok_requests;
        self.unit = self.unit.max(other.unit);
        self.completed += other.completed;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Successes per second. For units of several requests, the 200
    /// answers in the window divided by the unit: the same rate in a steady
    /// state, without the quantization of counting whole units (with 64
    /// connections started together, 100-request units finish in waves, a
    /// few per window).
    pub fn rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 && self.unit > 1 {
            self.ok_requests as f64 / self.unit as f64 / secs
        } else if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return f64::NAN;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}
