//! Memory that must not grow with traffic. A test binary of its own because
//! it counts every allocation of the process (a global allocator that
//! tracks live bytes), which the other tests would disturb.

use cap::Cap;
use std::alloc::System;
use std::time::{Duration, Instant};
use tessera::api::metrics;

#[global_allocator]
static ALLOCATED: Cap<System> = Cap::new(System, usize::MAX);

const SAMPLES: usize = 1_000_000;

fn requests(n: usize) {
    let (method, status) = (axum::http::Method::POST, axum::http::StatusCode::OK);
    for _ in 0..n {
        metrics::record(&method, "/v1/secrets", status, Duration::from_micros(250));
    }
}

/// Live bytes once they are below `limit`, or after `within`, while
/// requests keep coming at a slow pace (their own samples are drained too,
/// and the memory of drained ones is reclaimed as recording goes on).
fn live_bytes_below(limit: usize, within: Duration) -> usize {
    let until = Instant::now() + within;
    loop {
        let now = ALLOCATED.allocated();
        if now < limit || Instant::now() >= until {
            return now;
        }
        requests(100);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A million requests' duration samples (about 16 MB) are released without
/// anyone scraping `/metrics`: the recorder used to keep them all until a
/// scrape, so a server nobody scraped grew with every request.
#[test]
fn request_metrics_do_not_grow_without_a_scrape() {
    let _handle = metrics::handle();
    // The route's handles and the recorder's first blocks exist from here on.
    requests(1_000);
    // sleep: the recorder's upkeep runs on a timer; two of its periods
    // bring the baseline to its steady state.
    std::thread::sleep(2 * metrics::UPKEEP_EVERY);
    let baseline = ALLOCATED.allocated();
    requests(SAMPLES);
    let recorded = ALLOCATED.allocated().saturating_sub(baseline);
    let slack = 1 << 20;
    let within = 5 * metrics::UPKEEP_EVERY;
    let after = live_bytes_below(baseline + slack, within);
    let kept = after.saturating_sub(baseline);
    assert!(
        kept < slack,
        "{SAMPLES} requests' metrics still hold {kept} bytes after {within:?} \
         ({recorded} bytes right after recording)"
    );
}
