//! What the soak records: per-minute latency of the good clients, outcomes
//! of every kind of client, and the server's RSS over time.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

pub struct Minute {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency_us: Histogram<u64>,
    /// Largest RSS sampled during the minute, KiB.
    pub rss_kib: u64,
}

impl Minute {
    fn new() -> Self {
        Minute {
            ok: 0,
            errors: BTreeMap::new(),
            latency_us: crate::client::new_histogram(),
            rss_kib: 0,
        }
    }
}

pub struct Stats {
    start: Instant,
    pub minutes: Mutex<Vec<Minute>>,
    /// Outcome counts of the hostile clients, by client kind then outcome.
    pub hostile: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// How long the server kept slow and idle sockets open, in ms.
    pub held_ms: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
    /// The first unexpected outcome, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn new(start: Instant, minutes: usize) -> Self {
        Stats {
            start,
            minutes: Mutex::new((0..minutes.max(1)).map(|_| Minute::new()).collect()),
            hostile: Mutex::new(BTreeMap::new()),
            held_ms: Mutex::new(BTreeMap::new()),
            first_error: Mutex::new(None),
        }
    }

    fn minute_index(&self, at: Instant, len: usize) -> usize {
        ((at - self.start).as_secs() / 60).min(len as u64 - 1) as usize
    }

    pub fn good(&self, at: Instant, latency: Duration, outcome: Result<(), String>) {
        let mut minutes = self.minutes.lock();
        let len = minutes.len();
        let m = &mut minutes[self.minute_index(at, len)];
        match outcome {
            Ok(()) => {
                m.ok += 1;
                let _ = m.latency_us.record((latency.as_micros() as u64).max(1));
            }
            Err(detail) => {
                let kind = detail.split(':').next().unwrap_or_default().to_owned();
                self.note_error(|| format!("good client: {detail}"));
                *m.errors.entry(kind).or_default() += 1;
            }
        }
    }

    pub fn rss(&self, at: Instant, kib: u64) {
        let mut minutes = self.minutes.lock();
        let len = minutes.len();
        let m = &mut minutes[self.minute_index(at, len)];
        m.rss_kib = m.rss_kib.max(kib);
    }

    /// `expected` false marks an outcome that fails the soak.
    pub fn hostile(&self, kind: &'static str, outcome: String, expected: bool) {
        if !expected {
            self.note_error(|| format!("{kind}: {outcome}"));
        }
        let label = if expected {
            outcome
        } else {
            format!("UNEXPECTED {outcome}")
        };
        *self
            .hostile
            .lock()
            .entry(kind)
            .or_default()
            .entry(label)
            .or_default() += 1;
    }

    pub fn held(&self, kind: &'static str, held: Duration) {
        let _ = self
            .held_ms
            .lock()
            .entry(kind)
            .or_insert_with(crate::client::new_histogram)
            .record((held.as_millis() as u64).max(1));
    }

    fn note_error(&self, detail: impl FnOnce() -> String) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(detail());
        }
    }

    pub fn unexpected(&self) -> u64 {
        let good: u64 = self
            .minutes
            .lock()
            .iter()
            .map(|m| m.errors.values().sum::<u64>())
            .sum();
        let hostile: u64 = self
            .hostile
            .lock()
            .values()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| k.starts_with("UNEXPECTED"))
            .map(|(_, n)| n)
            .sum();
        good + hostile
    }
}
