//! The rendered report: paired ratios, loud failures, number formatting.

use super::render::{int, render};
use crate::config::Plan;
use crate::delivery::{IdleWaiters, Propagation};
use crate::measure::Sample;
use crate::report::{Environment, Results, Run};
use std::collections::BTreeMap;
use std::time::Duration;

fn sample(rps: f64, errors: u64) -> Sample {
    Sample {
        rps,
        p50_ms: 1.0,
        p99_ms: 2.0,
        ok: 100,
        errors,
        error_kinds: BTreeMap::from([("HTTP 500".to_string(), errors)]),
        first_error: (errors > 0).then(|| "HTTP 500: boom".to_string()),
        server_cores: 1.0,
        server_cpu_us_per_request: 10.0,
        client_cores: 0.5,
        other_cores: 0.0,
        memory: None,
    }
}

fn results(tessera_errors: u64) -> Results {
    let d = Duration::from_secs(1);
    let mut run = Run::default();
    let upserts = run.samples.entry("upsert-64".into()).or_default();
    upserts.insert("tessera-sqlite".into(), sample(6000.0, tessera_errors));
    upserts.insert("openbao".into(), sample(1000.0, 0));
    upserts.insert("ceiling".into(), sample(12000.0, 0));
    let mut results = Results {
        started_at: "now".into(),
        command: Vec::new(),
        environment: Environment::default(),
        plan: Plan {
            quick: true,
            runs: 1,
            warmup: d,
            upsert_64: d,
            upsert_1: d,
            list_100: d,
            list_10k: d,
            fetch_100: d,
            rounds: 5,
            round_settle: d,
            idle_probe: d,
            settle: d,
            load_100k: false,
            client_threads: 2,
            only: Vec::new(),
        },
        targets: vec!["tessera-sqlite".into(), "openbao".into(), "ceiling".into()],
        skipped: Vec::new(),
        setup: BTreeMap::new(),
        runs: vec![run],
        delivery: Vec::new(),
        large_fetch: None,
        many_fetch: None,
        summary: None,
    };
    results.summarize();
    results
}

fn with_cpu(rps: f64, cpu_us: f64) -> Sample {
    Sample {
        server_cpu_us_per_request: cpu_us,
        ..sample(rps, 0)
    }
}

/// fetch-100 and list-100 on Tessera and OpenBao, and the three
/// propagation workloads: one measured, one skipped, one failed.
fn issue_8_results() -> Results {
    let mut results = results(0);
    let run = &mut results.runs[0];
    let fetch = run.samples.entry("fetch-100".into()).or_default();
    fetch.insert("tessera-sqlite".into(), with_cpu(12_000.0, 330.0));
    fetch.insert("openbao".into(), with_cpu(100.0, 9_000.0));
    let list = run.samples.entry("list-100".into()).or_default();
    list.insert("tessera-sqlite".into(), with_cpu(20_000.0, 150.0));
    list.insert("openbao".into(), with_cpu(5_000.0, 200.0));
    list.insert("ceiling".into(), with_cpu(40_000.0, 20.0));
    let mut measured = Propagation::skipped("propagate-1k", "tessera-sqlite", "x");
    measured.skipped = None;
    measured.setup = "1000 waiters".into();
    measured.rounds_planned = 5;
    measured.last_ms = vec![40.0, 50.0, 60.0, 70.0, 120.0];
    measured.median_ms = Some(60.0);
    measured.p99_ms = Some(120.0);
    measured.idle = Some(IdleWaiters {
        waiters: 1000,
        rss_before_kib: 20_000,
        rss_with_waiters_kib: 36_000,
        rss_per_waiter_kib: 16.0,
        idle_seconds: 5.0,
        server_cores: 0.002,
    });
    let mut failed = Propagation::skipped("propagate-pg", "tessera-postgres", "x");
    failed.skipped = None;
    failed.record_error("timeout", || "round 1: 3 of 100 waiters answered".into());
    results.delivery = vec![
        measured,
        failed,
        Propagation::skipped(
            "agent",
            "tessera-sqlite",
            "the tessera binary has no agent subcommand",
        ),
    ];
    results.summarize();
    results
}

#[test]
fn issue_8_figures_and_targets() {
    let results = issue_8_results();
    let text = render(&results);
    // (330 - 150) / 100 = 1.8 µs per secret; 12,000 / 100 = 120x OpenBao.
    assert!(
        text.contains("| tessera-sqlite | 330.0 | 150.0 | 1.80 |"),
        "{text}"
    );
    assert!(text.contains("| fetches/s (median) |"), "{text}");
    assert!(
        text.contains("| ceiling | not run: no equivalent"),
        "{text}"
    );
    assert!(
        text.contains("| tessera-sqlite | fetch-100 server CPU per secret beyond list-100 <= 2 µs | 1.80 µs | yes |"),
        "{text}"
    );
    assert!(text.contains("| 120.00x | yes |"), "{text}");
    assert!(
        text.contains("propagate-1k p99 < 100 ms (upsert sent -> last of 1,000 waiters answered) | 120.00 ms | **NO** |"),
        "{text}"
    );
    assert!(
        text.contains("RSS per idle waiter < 32 KiB | 16.00 KiB | yes |"),
        "{text}"
    );
    assert!(text.contains("< 1% of a core | 0.20% | yes |"), "{text}");
    assert!(
        text.contains(
            "| agent | tessera-sqlite | **skipped: the tessera binary has no agent subcommand** |"
        ),
        "{text}"
    );
    assert!(
        text.contains("| skipped: the tessera binary has no agent subcommand | not measured |"),
        "{text}"
    );
    // The failed propagation is loud and counts as a failure of the run.
    assert_eq!(results.summary.as_ref().unwrap().total_errors, 1);
    assert!(text.contains("!!! 1 REQUESTS FAILED"), "{text}");
    assert!(
        text.contains("- propagate-pg on tessera-postgres: 1 failures"),
        "{text}"
    );
    let json = serde_json::to_value(&results).unwrap();
    assert_eq!(json["delivery"][0]["p99_ms"], 120.0);
    assert_eq!(
        json["summary"]["fetch_cpu_per_secret"][0]["us_per_secret"]["median"],
        1.8
    );
}

#[test]
fn ratios_are_paired_per_run() {
    let text = render(&results(0));
    assert!(text.contains("| tessera-sqlite | 6,000 |"), "{text}");
    assert!(text.contains("| 6.00x | 0.50x |"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}

#[test]
fn failures_are_announced_loudly() {
    let text = render(&results(3));
    assert!(text.contains("!!! 3 REQUESTS FAILED"), "{text}");
    assert!(
        text.contains("run 1: upsert-64 on tessera-sqlite: 3 failed"),
        "{text}"
    );
    assert!(text.contains("HTTP 500: boom"), "{text}");
}

#[test]
fn thousands_separators() {
    assert_eq!(int(1234567.4), "1,234,567");
    assert_eq!(int(999.0), "999");
    assert_eq!(int(0.4), "0");
}

/// Issue 9: the p99 ratio is paired per run (median of the ratios), the
/// goal is < 3x, and failures of the measurement invalidate the run.
#[test]
fn neighbour_ratio_and_goal() {
    use crate::neighbour::Neighbour;
    let p99 = |p99_ms: f64, errors: u64| Sample {
        p99_ms,
        ..sample(500.0, errors)
    };
    let mut results = results(0);
    let one = |idle: f64, loaded: f64, errors: u64| Neighbour {
        idle: p99(idle, 0),
        loaded: p99(loaded, 0),
        big: p99(80.0, errors),
        writes: p99(3.0, 0),
    };
    results.runs = vec![Run::default(), Run::default(), Run::default()];
    // Ratios 2.0, 4.0, 2.5: median 2.5 (the medians of the p99s, 2 and 5,
    // would give another figure).
    let runs = [(1.0, 2.0, 0), (2.0, 8.0, 0), (2.0, 5.0, 2)];
    for (run, (idle, loaded, errors)) in results.runs.iter_mut().zip(runs) {
        run.neighbour
            .insert("tessera-sqlite".into(), one(idle, loaded, errors));
    }
    results.summarize();
    let text = render(&results);
    assert!(
        text.contains(
            "| tessera-sqlite | 1.00 | 2.00 | 1.00 | 5.00 | 2.50x (2.00x–4.00x) | 500.0 | **2** |"
        ),
        "{text}"
    );
    assert!(
        text.contains("| tessera-sqlite | neighbour list-100 p99 under 8 big listings < 3x idle p99 | 2.50x | yes |"),
        "{text}"
    );
    assert!(text.contains("!!! 2 REQUESTS FAILED"), "{text}");
    assert!(
        text.contains("- run 3: neighbour big listings on tessera-sqlite: 2 failed"),
        "{text}"
    );
    let json = serde_json::to_value(&results).unwrap();
    assert_eq!(json["summary"]["neighbour"][0]["p99_ratio"]["median"], 2.5);
    assert_eq!(
        json["runs"][0]["neighbour"]["tessera-sqlite"]["loaded"]["p99_ms"],
        2.0
    );

    results.runs[0].neighbour.clear();
    results.runs[2].neighbour.clear();
    results.summarize();
    let text = render(&results);
    assert!(text.contains("| 4.00x | **NO** |"), "{text}");
}
