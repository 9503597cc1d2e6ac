//! `last_used_at` without a database write per request: uses are collected
//! in memory and written in one batch about once a second.

use crate::domain::time::Micros;
use parking_lot::Mutex;
use std::collections::HashMap;

/// How often pending uses are written.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, Micros>>,
}

impl UsageRecorder {
    pub fn record(&self, prefix: &str, at: Micros) {
        let mut map = self.pending.lock();
        match map.get_mut(prefix) {
            Some(t) => *t = (*t).max(at),
            None => {
                map.insert(prefix.to_owned(), at);
            }
        }
    }

    /// A use not yet written, so listings on this node are current.
    pub fn pending(&self, prefix: &str) -> Option<Micros> {
        self.pending.lock().get(prefix).copied()
    }

    pub(super) fn take(&self) -> Vec<(String, Micros)> {
        self.pending.lock().drain().collect()
    }

    pub(super) fn forget(&self, prefix: &str) {
        self.pending.lock().remove(prefix);
    }
}
