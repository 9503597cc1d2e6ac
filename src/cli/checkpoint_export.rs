//! The server's export of signed audit checkpoints, and the audit log's
//! pruning, which stands on them.
//!
//! At every interval: one JSON line per chain whose head moved since the
//! last line this node shipped, appended to a file (synced) and/or written
//! to standard output, each only once the log is checked to continue the
//! chain's previous line. Then, when a retention is set, each chain whose
//! events are old enough is pruned through a head this node shipped: the
//! pruning anchor is signed, appended and synced first, and only then are
//! the events deleted, so the database never holds an anchor that was not
//! shipped (a crash in between leaves a shipped anchor whose events are
//! still there, which `verify` accepts as an ordinary checkpoint).
//!
//! The file is also the node's memory: at start it is read back, so that
//! chains that did not move get no new line, and so that what is pruned
//! stands on what this node shipped before, not on what the database says.

use crate::audit::chain::{BreakKind, Broken};
use crate::audit::checkpoint::{verify_checkpoint, SignedCheckpoint};
use crate::audit::record::ShippedRecord;
use crate::config::CheckpointArgs;
use crate::domain::time::Micros;
use crate::service::Service;
use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};

/// A chain is pruned within retention / `POINTS` of its due time (the
/// record keeps about two pruning points per such step and chain).
const POINTS: u128 = 1024;

pub struct CheckpointExport {
    file: Option<PathBuf>,
    stdout: bool,
    record: ShippedRecord,
    /// Chains whose log no longer continues what this node shipped, and
    /// why: neither shipped nor pruned again by this process (said once;
    /// a restart checks again).
    stuck: HashMap<String, Broken>,
    /// Chains pruned by another node before this one shipped anything of
    /// them: shipped, never pruned here (said once).
    not_followed: HashSet<String>,
}

impl CheckpointExport {
    /// The export `args` ask for (`None`: checkpoints go nowhere), with
    /// what its file already holds read back.
    pub fn open(args: &CheckpointArgs, service: &Service) -> anyhow::Result<Option<Self>> {
        if args.audit_checkpoint_file.is_none() && !args.audit_checkpoint_stdout {
            return Ok(None);
        }
        let step = service.audit_log().audit_retention().map_or(i64::MAX, |r| {
            i64::try_from(r.as_micros() / POINTS).unwrap_or(i64::MAX)
        });
        let mut export = Self {
            file: args.audit_checkpoint_file.clone(),
            stdout: args.audit_checkpoint_stdout,
            record: ShippedRecord::new(step),
            stuck: HashMap::new(),
            not_followed: HashSet::new(),
        };
        if let Some(path) = &export.file {
            read_back(path, service, &mut export.record)?;
        }
        Ok(Some(export))
    }

    /// Signs and ships a checkpoint of every chain whose head moved since
    /// this node last shipped one, once the log is checked to continue
    /// that one; how many were shipped.
    pub async fn export(&mut self, service: &Service, now: Micros) -> anyhow::Result<usize> {
        let mut lines = Vec::new();
        for head in service.audit_log().audit_heads().await? {
            let last = self.record.last(&head.chain).cloned();
            if last.as_ref() == Some(&head) || self.stuck.contains_key(&head.chain) {
                continue;
            }
            if let Some(from) = &last {
                if let Err(broken) = service.audit_log().audit_continues(from, &head).await? {
                    self.stuck_at(broken);
                    continue;
                }
            }
            lines.push(service.audit_log().sign_audit_head(&head, now));
        }
        self.ship(&lines).await?;
        Ok(lines.len())
    }

    /// Prunes every chain whose events are older than the retention as of
    /// `now`, through the latest head this node shipped that old: ships
    /// the anchor, then deletes. How many events went.
    pub async fn prune(&mut self, service: &Service, now: Micros) -> anyhow::Result<u64> {
        let Some(retention) = service.audit_log().audit_retention() else {
            return Ok(0);
        };
        let before = now.saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
        let chains: Vec<String> = self.record.chains().map(str::to_owned).collect();
        let mut pruned = 0;
        for chain in chains {
            if self.stuck.contains_key(&chain) || self.not_followed.contains(&chain) {
                continue;
            }
            let (Some(last), Some(first)) = (
                self.record.last(&chain).cloned(),
                self.record.first_seq(&chain),
            ) else {
                continue;
            };
            // Below the last line: a chain's last event always stays.
            let Some(through) = self.record.prune_point(&chain, before, last.seq).cloned() else {
                continue;
            };
            match service
                .audit_log()
                .audit_prune_anchor(&through, &last, first, now)
                .await?
            {
                Ok(None) => {}
                Ok(Some(anchor)) => {
                    self.ship(std::slice::from_ref(&anchor)).await?;
                    pruned += service.audit_log().commit_audit_prune(&anchor).await?;
                    self.record.pruned_through(&chain, through.seq);
                }
                Err(broken) if matches!(broken.kind, BreakKind::PrunedPast { .. }) => {
                    tracing::warn!(
                        chain,
                        seq = broken.seq,
                        "this node does not prune this audit chain: another node pruned it before \
                         this node shipped a checkpoint of it (that node's file shows the pruning)"
                    );
                    self.not_followed.insert(chain);
                }
                Err(broken) => self.stuck_at(broken),
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "pruned audit events older than the retention");
        }
        Ok(pruned)
    }

    /// Appends `lines` to the file and waits until they are on disk, writes
    /// them to standard output, then notes them as shipped.
    async fn ship(&mut self, lines: &[SignedCheckpoint]) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.to_json_line()?);
            text.push('\n');
        }
        if let Some(path) = self.file.clone() {
            // Off the async workers: the append waits for its fsync.
            let text = text.clone();
            tokio::task::spawn_blocking(move || append_synced(&path, &text)).await??;
        }
        if self.stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())?;
        }
        for line in lines {
            self.record.note(&line.checkpoint);
        }
        Ok(())
    }

    /// Says that a chain's log no longer continues what this node shipped,
    /// and stops shipping and pruning it (so it is said once).
    fn stuck_at(&mut self, broken: Broken) {
        let (chain, seq) = (broken.chain.clone(), broken.seq);
        match broken.kind {
            BreakKind::PrunedPast { .. } => tracing::warn!(
                chain, seq, reason = %broken.kind,
                "this node no longer ships or prunes this audit chain: its events were pruned \
                 past what this node shipped (another node's checkpoint file shows the pruning, \
                 or it was forged: `tessera audit verify` with every node's file tells)"
            ),
            _ => tracing::error!(
                chain, seq, reason = %broken.kind,
                "the audit log no longer continues the checkpoint this node shipped: \
                 not shipping or pruning this chain (run `tessera audit verify --checkpoint`)"
            ),
        }
        self.stuck.insert(chain, broken);
    }
}

/// Reads back the lines of `path` this store's key signed into `record`,
/// first cutting off a last line left incomplete by a crash (it was never
/// shipped whole, and nothing was pruned on it: pruning waits for the
/// sync).
fn read_back(path: &Path, service: &Service, record: &mut ShippedRecord) -> anyhow::Result<()> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let public_key = service.audit_log().audit_public_key();
    let (mut complete, mut foreign) = (0u64, 0u64);
    let mut reader = std::io::BufReader::new(&mut file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        complete += n as u64;
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        match SignedCheckpoint::from_json_line(&text)
            .and_then(|signed| verify_checkpoint(public_key, &signed))
        {
            Ok(checkpoint) => record.note(&checkpoint),
            Err(_) => foreign += 1,
        }
    }
    drop(reader);
    let len = file.seek(std::io::SeekFrom::End(0))?;
    if len > complete {
        tracing::warn!(path = %path.display(), bytes = len - complete,
            "cutting off an incomplete last line of the audit checkpoint file (a crash while writing it)");
        file.set_len(complete)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("repairing {}", path.display()))?;
    }
    if foreign > 0 {
        tracing::warn!(path = %path.display(), lines = foreign,
            "lines of the audit checkpoint file that this store's key did not sign were ignored");
    }
    Ok(())
}

/// Appends `text` to `path` and waits until it is on disk.
fn append_synced(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("writing {}", path.display()))
}

/// Exports, then prunes, every `interval` until `stop` is cancelled, then
/// exports once more (so that the last events before a shutdown are
/// covered).
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
        let now = crate::domain::time::now_micros();
        if let Err(e) = export.export(&state.service, now).await {
            tracing::warn!(error = %e, "could not export audit checkpoints; will retry");
        } else if !stopping {
            if let Err(e) = export.prune(&state.service, now).await {
                tracing::warn!(error = %e, "the pruning of old audit events failed; will retry");
            }
        }
        if stopping {
            break;
        }
    }
}
