//! The rendered report: paired ratios, loud failures, number formatting.

use super::render::{int, render};
use crate::config::Plan;
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
            settle: d,
            load_100k: false,
            client_threads: 2,
        },
        targets: vec!["tessera-sqlite".into(), "openbao".into(), "ceiling".into()],
        skipped: Vec::new(),
        setup: BTreeMap::new(),
        runs: vec![run],
        summary: None,
    };
    results.summarize();
    results
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
