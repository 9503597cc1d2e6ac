//! `tessera audit verify|export|public-key|checkpoint`: operator commands run beside the store
//! (with its data directory or database URL and the master key, which
//! unwraps the chain key), not over the API.

use crate::audit::checkpoint::{
    verify_checkpoint, Checkpoint, CheckpointPublicKey, SignedCheckpoint,
};
use crate::config::StoreArgs;
use crate::service::audit_log::Verified;
use anyhow::Context;
use clap::Subcommand;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain of the audit log, link by link; exit 1 naming the
    /// first broken link.
    Verify {
        /// Also prove the log against the signed checkpoints in this file
        /// (JSON Lines, as the server exports them): neither rewritten nor
        /// truncated since, and pruned only where a shipped anchor shows.
        /// Repeat it to give every node's file.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// The key that signed the checkpoints (`ed25519:...`, as `tessera
        /// audit public-key` prints it), kept apart from the server. Default:
        /// the key the store holds, which proves less (see docs/security.md).
        #[arg(long, env = "TESSERA_AUDIT_PUBLIC_KEY")]
        public_key: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the public key that verifies this store's audit checkpoints.
    PublicKey {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a signed checkpoint of every audit chain's head now (JSON
    /// Lines), as the server exports them.
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the audit log as JSON Lines (one event per line, chain by
    /// chain in order) to standard output, for a SIEM.
    Export {
        /// Only events at or after this time (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            checkpoint,
            public_key,
            store,
        } => {
            let service = crate::app::open_service(&store).await?;
            let public_key = match public_key {
                Some(text) => CheckpointPublicKey::parse(&text)?,
                None => service.audit_log().audit_public_key().clone(),
            };
            let mut shipped = Vec::new();
            for path in &checkpoint {
                shipped.extend(read_checkpoints(path, &public_key)?);
            }
            let shipped = (!checkpoint.is_empty()).then_some(shipped.as_slice());
            match service
                .audit_log()
                .verify_audit(&public_key, shipped)
                .await?
            {
                Verified::Intact {
                    chains,
                    events,
                    proved,
                    pruned,
                } => {
                    println!("audit log intact: {events} events in {chains} chains");
                    if !checkpoint.is_empty() {
                        println!(
                            "extends {proved} signed checkpoints ({pruned} more of events pruned \
                             since, behind shipped anchors)"
                        );
                    }
                    Ok(())
                }
                Verified::Broken(broken) => Err(super::Exit {
                    code: 1,
                    message: Some(format!("audit log broken: {broken}")),
                }
                .into()),
            }
        }
        AuditCommand::PublicKey { store } => {
            let service = crate::app::open_service(&store).await?;
            println!("{}", service.audit_log().audit_public_key());
            Ok(())
        }
        AuditCommand::Checkpoint { store } => {
            let service = crate::app::open_service(&store).await?;
            let now = crate::domain::time::now_micros();
            for signed in service.audit_log().sign_audit_heads(now).await? {
                println!("{}", signed.to_json_line()?);
            }
            Ok(())
        }
        AuditCommand::Export { since, store } => {
            let since = match since {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| anyhow::anyhow!("--since {t:?} is not an RFC 3339 time: {e}"))?
                    .timestamp_micros(),
                None => i64::MIN,
            };
            let service = crate::app::open_service(&store).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = service
                .audit_log()
                .export_audit(since, |e| {
                    let line = serde_json::json!({
                        "event": e.event,
                        "mac": hex::encode(e.mac),
                    });
                    writeln!(out, "{line}")
                })
                .await?;
            out.flush()?;
            eprintln!("exported {n} events");
            Ok(())
        }
    }
}

/// The checkpoints of `path`, each verified against `public_key`; an error
/// naming the first line that is not a checkpoint that key signed.
fn read_checkpoints(
    path: &Path,
    public_key: &CheckpointPublicKey,
) -> anyhow::Result<Vec<Checkpoint>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut checkpoints = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let checked = SignedCheckpoint::from_json_line(&line)
            .and_then(|signed| verify_checkpoint(public_key, &signed));
        match checked {
            Ok(c) => checkpoints.push(c),
            Err(e) => {
                return Err(super::Exit {
                    code: 1,
                    message: Some(format!("{}, line {}: {e}", path.display(), n + 1)),
                }
                .into())
            }
        }
    }
    Ok(checkpoints)
}
