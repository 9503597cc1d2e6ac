//! `last_used_at` without a database write per request: uses are collected
//! in memory and written in one batch about once a second.

use crate::domain::time::Micros;
use std::collections::HashMap;
use std::sync::Mutex;

/// How often pending uses are written.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, Micros>>,
}

impl UsageRecorder {
    pub fn record(&self, prefix: &str, at: Micros) {
        if let Ok(mut map) = self.pending.lock() {
            match map.get_mut(prefix) {
                Some(t) => *t = (*t).max(at),
                None => {
                    map.insert(prefix.to_owned(), at);
                }
            }
        }
    }

    /// A use not yet written, so listings on this node are current.
    pub fn pending(&self, prefix: &str) -> Option<Micros> {
        self.pending.lock().ok()?.get(prefix).copied()
    }

    pub(super) fn take(&self) -> Vec<(String, Micros)> {
        self.pending
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    pub(super) fn forget(&self, prefix: &str) {
        if let Ok(mut m) = self.pending.lock() {
            m.remove(prefix);
        }
    }
}
