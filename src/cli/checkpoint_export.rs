//! The server's export of signed audit checkpoints: at every interval, one
//! JSON line per chain whose head moved since the last export, appended to
//! a file (synced before the next) and/or written to standard output.

use crate::config::CheckpointArgs;
use crate::service::Service;
use anyhow::Context;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

pub struct CheckpointExport {
    file: Option<PathBuf>,
    stdout: bool,
    /// The seq of each chain's last exported head.
    exported: HashMap<String, u64>,
}

impl CheckpointExport {
    /// `None` when checkpoints go nowhere.
    pub fn new(args: &CheckpointArgs) -> Option<Self> {
        (args.audit_checkpoint_file.is_some() || args.audit_checkpoint_stdout).then(|| Self {
            file: args.audit_checkpoint_file.clone(),
            stdout: args.audit_checkpoint_stdout,
            exported: HashMap::new(),
        })
    }

    /// Signs and writes a checkpoint of every chain whose head moved; how
    /// many were written.
    pub async fn export(&mut self, service: &Service) -> anyhow::Result<usize> {
        let now = crate::domain::time::now_micros();
        let mut lines = String::new();
        let mut heads = Vec::new();
        for signed in service.sign_audit_heads(now).await? {
            let c = &signed.checkpoint;
            if self.exported.get(&c.chain) == Some(&c.seq) {
                continue;
            }
            lines.push_str(&signed.to_json_line()?);
            lines.push('\n');
            heads.push((c.chain.clone(), c.seq));
        }
        if heads.is_empty() {
            return Ok(0);
        }
        if let Some(path) = self.file.clone() {
            // Off the async workers: the append waits for its fsync.
            let text = lines.clone();
            tokio::task::spawn_blocking(move || append_synced(&path, &text)).await??;
        }
        if self.stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(lines.as_bytes()).and_then(|()| out.flush())?;
        }
        let n = heads.len();
        self.exported.extend(heads);
        Ok(n)
    }
}

/// Appends `text` to `path` and waits until it is on disk.
fn append_synced(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("writing {}", path.display()))
}

/// Exports every `interval` until `stop` is cancelled, then once more (so
/// that the last events before a shutdown are covered).
pub async fn run(
    mut export: CheckpointExport,
    service: std::sync::Weak<crate::api::AppState>,
    interval: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = stop.cancelled() => true,
        };
        let Some(state) = service.upgrade() else {
            break;
        };
        if let Err(e) = export.export(&state.service).await {
            tracing::warn!(error = %e, "could not export audit checkpoints; will retry");
        }
        if stopping {
            break;
        }
    }
}
