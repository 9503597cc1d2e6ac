//! Reads recorded without a row per request: the audit log gets one
//! `secrets.read` event the first time a key receives a given content (a
//! scope revision, or one secret's version), durable before that content is
//! sent. Receiving the same content again adds nothing but a count, written
//! as one `secrets.read` event with `"repeated": N` at most once per
//! [`SUMMARY_EVERY`] per content (and at shutdown). What folds is what the
//! server knows (key, team, scope revision or secret version), never what
//! the client says (its instance id or address): a client cannot make the
//! store grow with its request rate.

use crate::audit::event::AuditEvent;
use crate::domain::time::now_micros;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The longest a count of repeated reads waits before it is written.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Contents remembered at most; beyond it the oldest are written out and
/// forgotten (a later read of one of them records it afresh).
const MAX_REMEMBERED: usize = 50_000;

/// What a read returned, as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// A key's whole scope, at one scope revision.
    Scope(i64),
    /// One secret (id) at one version.
    One(String, i64),
}

type FoldKey = (String, String, Content);

struct Entry {
    /// Set once the first read's event is durable; readers of the same
    /// content wait on it, so none is sent before its record exists.
    recorded: Arc<OnceCell<()>>,
    /// The first read's event, the template of the summaries.
    first: Option<AuditEvent>,
    /// Reads since the last summary.
    repeats: u64,
    last_summary: Instant,
    last_read: Instant,
}

#[derive(Default)]
pub struct ReadFold {
    entries: Mutex<HashMap<FoldKey, Entry>>,
    /// Summaries a failed write left over, tried again with the next ones.
    unwritten: Mutex<Vec<AuditEvent>>,
}

impl ReadFold {
    /// Notes one read of `content` by `key_prefix` in `team_id`: the cell
    /// to initialise by appending the content's first event (already set
    /// when it was recorded: then call [`Self::repeated`]). Readers
    /// arriving while the first append is under way wait on the same cell,
    /// and one of them appends again should it fail.
    pub fn read(&self, key_prefix: &str, team_id: &str, content: Content) -> Arc<OnceCell<()>> {
        let mut entries = self.entries.lock();
        let key = (key_prefix.to_owned(), team_id.to_owned(), content);
        let now = Instant::now();
        let e = entries.entry(key).or_insert_with(|| Entry {
            recorded: Arc::new(OnceCell::new()),
            first: None,
            repeats: 0,
            last_summary: now,
            last_read: now,
        });
        e.last_read = now;
        e.recorded.clone()
    }

    /// Counts one read of a content whose first event was already durable.
    pub fn repeated(&self, key_prefix: &str, team_id: &str, content: Content) {
        let mut entries = self.entries.lock();
        let key = (key_prefix.to_owned(), team_id.to_owned(), content);
        if let Some(e) = entries.get_mut(&key) {
            e.repeats += 1;
        }
    }

    /// The first event of `content` is durable: it is the summaries' model.
    pub fn recorded(&self, key_prefix: &str, team_id: &str, content: Content, event: AuditEvent) {
        let mut entries = self.entries.lock();
        let key = (key_prefix.to_owned(), team_id.to_owned(), content);
        if let Some(e) = entries.get_mut(&key) {
            if e.first.is_none() {
                e.first = Some(event);
            }
        }
    }

    /// The summaries due now (every count when `all`, at shutdown), and
    /// the contents forgotten: idle for a summary period with nothing left
    /// to write, or the oldest beyond [`MAX_REMEMBERED`].
    pub fn take_summaries(&self, all: bool) -> Vec<AuditEvent> {
        let mut entries = self.entries.lock();
        let now = Instant::now();
        let mut out = std::mem::take(&mut *self.unwritten.lock());
        let over = entries.len().saturating_sub(MAX_REMEMBERED);
        let mut oldest: Vec<(Instant, FoldKey)> = Vec::new();
        if over > 0 {
            oldest = entries
                .iter()
                .map(|(k, e)| (e.last_read, k.clone()))
                .collect();
            oldest.sort_by_key(|(at, _)| *at);
            oldest.truncate(over);
        }
        for (_, k) in &oldest {
            if let Some(mut e) = entries.remove(k) {
                out.extend(summary(&mut e));
            }
        }
        entries.retain(|_, e| {
            let due = all || now.duration_since(e.last_summary) >= SUMMARY_EVERY;
            if due {
                if let Some(s) = summary(e) {
                    out.push(s);
                    e.last_summary = now;
                    return true;
                }
            }
            // Kept while it may still fold reads: a content idle for a whole
            // period is forgotten (an agent reads a revision once).
            e.repeats > 0 || now.duration_since(e.last_read) < SUMMARY_EVERY
        });
        out
    }

    /// Keeps summaries that could not be written for the next attempt (at
    /// most as many as contents are remembered: a bound whatever happens).
    pub fn restore(&self, mut failed: Vec<AuditEvent>) {
        let mut unwritten = self.unwritten.lock();
        failed.truncate(MAX_REMEMBERED.saturating_sub(unwritten.len()));
        unwritten.extend(failed);
    }
}

impl super::Service {
    /// Writes the counts of repeated reads that are due (every count when
    /// `all`, at shutdown); on failure they are kept for the next attempt.
    pub async fn flush_read_summaries(&self, all: bool) -> super::ServiceResult<()> {
        let due = self.read_fold.take_summaries(all);
        if due.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.append_audit(due.clone()).await {
            self.read_fold.restore(due);
            return Err(e.into());
        }
        Ok(())
    }
}

/// The event standing for `e`'s repeated reads since its last summary.
fn summary(e: &mut Entry) -> Option<AuditEvent> {
    if e.repeats == 0 {
        return None;
    }
    // Taken even when there is no first event to stand on (the audit log
    // is off): the count is then dropped, never kept growing.
    let repeats = std::mem::take(&mut e.repeats);
    let first = e.first.as_ref()?;
    let mut event = first.clone();
    event.time = now_micros();
    event.request_id = None;
    event.client = None;
    let mut detail: serde_json::Value = first
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = detail.as_object_mut() {
        // The instance of the first read says nothing about the others.
        map.remove("instance");
        map.insert("repeated".into(), repeats.into());
    }
    event.detail = Some(detail.to_string());
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            chain: String::new(),
            seq: 0,
            time: 1,
            actor_key: Some("k".into()),
            actor_type: None,
            actor_user: None,
            org_id: None,
            team_id: Some("t".into()),
            action: "secrets.read".into(),
            target_id: None,
            target_name: None,
            result: "ok".into(),
            request_id: Some("r".into()),
            client: Some("127.0.0.1".into()),
            detail: Some(r#"{"revision":7,"secrets":2,"instance":"a"}"#.into()),
        }
    }

    #[test]
    fn the_same_content_folds_and_is_summed() {
        let f = ReadFold::default();
        let cell = f.read("k", "t", Content::Scope(7));
        assert!(!cell.initialized(), "the first read appends");
        cell.set(()).unwrap();
        f.recorded("k", "t", Content::Scope(7), event());
        for _ in 0..1000 {
            assert!(f.read("k", "t", Content::Scope(7)).initialized());
            f.repeated("k", "t", Content::Scope(7));
        }
        assert!(!f.read("k", "t", Content::Scope(8)).initialized());
        assert!(!f.read("k2", "t", Content::Scope(7)).initialized());
        let s = f.take_summaries(true);
        assert_eq!(s.len(), 1);
        let detail: serde_json::Value =
            serde_json::from_str(s[0].detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["repeated"], 1000);
        assert_eq!(detail["revision"], 7);
        assert!(detail.get("instance").is_none());
        assert!(f.take_summaries(true).is_empty());
    }
}
