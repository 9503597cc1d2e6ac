//! `last_used_at` without a database write per request: uses are collected
//! in memory and written in one batch about once a second.

use super::{Service, ServiceResult};
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

    fn take(&self) -> Vec<(String, Micros)> {
        self.pending
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    fn forget(&self, prefix: &str) {
        if let Ok(mut m) = self.pending.lock() {
            m.remove(prefix);
        }
    }
}

impl Service {
    /// Writes pending uses; on failure they are kept for the next attempt.
    pub async fn flush_usage(&self) -> ServiceResult<()> {
        let uses = self.usage.take();
        if uses.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.touch_api_keys(uses.clone()).await {
            for (prefix, at) in uses {
                self.usage.record(&prefix, at);
            }
            return Err(e.into());
        }
        Ok(())
    }

    pub(crate) fn forget_usage(&self, prefix: &str) {
        self.usage.forget(prefix);
    }
}
