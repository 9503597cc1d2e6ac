//! `tessera agent --dir DIR`: keeps a directory equal to a workload key's
//! secrets, one file per name, following the runtime API's long poll.
//!
//! The directory is the one place where values rest in plaintext, by
//! design; everything else the agent writes (the manifest, its log) holds
//! names and versions only. See docs/delivery.md for the contract.

pub mod files;
pub mod manifest;
pub mod sync;

use super::runtime_client::{
    Backoff, FetchError, Fetched, RuntimeArgs, RuntimeClient, StopSignals, EARLY_ANSWER,
    LONG_POLL_WAIT,
};
use anyhow::{bail, Context};
use clap::Args;
use files::{resolve_group, Access, SecretsDir};
use manifest::Manifest;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// The directory to keep equal to the key's secrets (created if
    /// missing; mode 0700, or 0750 with --group).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Share the files with this group (name or id): directory 0750 and
    /// files 0640 owned by that group, for a workload running as another
    /// user in the group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Write the files once and exit: 0 when they are written, non-zero
    /// otherwise (for init containers).
    #[arg(long)]
    pub once: bool,

    /// Run this command with `sh -c` after each applied change (files
    /// written or removed); the agent waits for it.
    #[arg(long, value_name = "CMD")]
    pub on_change: Option<String>,

    /// When the server refuses the key (401), remove the files the agent
    /// wrote before exiting. Default: keep them.
    #[arg(long)]
    pub wipe_on_revoke: bool,
}

/// Health, for logging each change of state once rather than per retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Good,
    Unreachable,
    CannotWrite,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let client = RuntimeClient::new(&args.runtime)?;
    let access = match &args.group {
        Some(g) => Access::shared_with_group(resolve_group(g)?),
        None => Access::private(),
    };
    let dir = SecretsDir::open(&args.dir, access)?;
    if let Some(warning) = dir.memory_fs_warning() {
        tracing::warn!("{warning}");
    }
    let stale = dir
        .remove_stale_temporaries()
        .context("cannot clean up temporary files")?;
    if stale > 0 {
        tracing::info!(
            count = stale,
            "removed temporary files left by an earlier run"
        );
    }
    let mut manifest = Manifest::load(&dir)?;
    let mut signals = StopSignals::new()?;
    tracing::info!(
        dir = %dir.path().display(),
        server = client.base_url(),
        instance = client.instance_id(),
        "agent started"
    );

    let mut held = None;
    let mut backoff = Backoff::standard();
    let mut health = Health::Good;
    let mut has_applied = false;
    let mut foreign = BTreeSet::new();
    let mut refused_seen = BTreeSet::new();
    loop {
        let asked = std::time::Instant::now();
        let result = tokio::select! {
            r = client.fetch_all(held.as_ref(), LONG_POLL_WAIT) => r,
            sig = signals.recv() => {
                tracing::info!(signal = %sig, "stopping");
                return Ok(());
            }
        };
        let delay = match result {
            Ok(Fetched::Unchanged) => {
                if health == Health::Unreachable {
                    tracing::info!("reconnected");
                    health = Health::Good;
                }
                if asked.elapsed() >= EARLY_ANSWER {
                    backoff.reset();
                    continue;
                }
                // "Unchanged" long before the wait ended: the server is
                // stopping. Do not spin on it.
                backoff.next_delay()
            }
            Ok(Fetched::Changed(snapshot)) => {
                if health == Health::Unreachable {
                    tracing::info!("reconnected");
                    health = Health::Good;
                }
                for name in &snapshot.refused {
                    if refused_seen.insert(name.clone()) {
                        tracing::warn!(secret = ?name, "skipping a secret whose name is not a safe file name");
                    }
                }
                match sync::apply(&dir, &mut manifest, &snapshot, &mut foreign) {
                    Ok(applied) => {
                        if health == Health::CannotWrite {
                            tracing::info!("files written again");
                            health = Health::Good;
                        }
                        log_applied(&applied, snapshot.revision, !has_applied);
                        has_applied = true;
                        held = snapshot.etag;
                        if args.once {
                            return Ok(());
                        }
                        if let (false, Some(cmd)) = (applied.is_empty(), &args.on_change) {
                            run_hook(cmd, &dir, &applied).await;
                        }
                        backoff.reset();
                        continue;
                    }
                    Err(e) if args.once => return Err(e),
                    Err(e) => {
                        if health != Health::CannotWrite {
                            tracing::error!(
                                error = format!("{e:#}"),
                                "cannot update the files; keeping what is there and retrying"
                            );
                            health = Health::CannotWrite;
                        }
                        // Fetch everything again next time.
                        held = None;
                        backoff.next_delay()
                    }
                }
            }
            Err(FetchError::Unauthorized(m)) => {
                let kept = if args.wipe_on_revoke {
                    let n = sync::wipe(&dir, &mut manifest)?;
                    format!("removed the {n} files it wrote (--wipe-on-revoke)")
                } else {
                    "the files are kept (--wipe-on-revoke would remove them)".to_owned()
                };
                bail!("the server refused the API key ({m}); {kept}");
            }
            Err(e @ (FetchError::Forbidden(_) | FetchError::Rejected(_))) => bail!(e),
            Err(FetchError::Unavailable {
                message,
                retry_after,
            }) => {
                if args.once {
                    bail!("cannot fetch the secrets: {message}");
                }
                if health != Health::Unreachable {
                    let what = if has_applied {
                        "server unreachable; keeping last good files and retrying"
                    } else {
                        "server unreachable; retrying"
                    };
                    tracing::warn!(error = %message, "{what}");
                    health = Health::Unreachable;
                }
                backoff
                    .next_delay()
                    .max(retry_after.unwrap_or(Duration::ZERO))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            sig = signals.recv() => {
                tracing::info!(signal = %sig, "stopping");
                return Ok(());
            }
        }
    }
}

/// Names and versions only.
fn log_applied(applied: &sync::Applied, revision: i64, first: bool) {
    for (file, secret, version) in &applied.written {
        tracing::info!(file, secret, version, "wrote");
    }
    for (file, secret) in &applied.removed {
        tracing::info!(file, secret, "removed");
    }
    if first || !applied.is_empty() {
        tracing::info!(
            revision,
            written = applied.written.len(),
            removed = applied.removed.len(),
            "files up to date"
        );
    }
}

/// Runs `--on-change` and waits for it; a failure is logged, not fatal.
/// The command gets `TESSERA_AGENT_DIR` and `TESSERA_CHANGED_SECRETS`
/// (space-separated names), and not `TESSERA_API_KEY`.
async fn run_hook(cmd: &str, dir: &SecretsDir, applied: &sync::Applied) {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env_remove("TESSERA_API_KEY")
        .env("TESSERA_AGENT_DIR", dir.path())
        .env("TESSERA_CHANGED_SECRETS", applied.secrets().join(" "))
        .stdin(std::process::Stdio::null())
        .status()
        .await;
    match status {
        Ok(s) if s.success() => tracing::info!("--on-change command succeeded"),
        Ok(s) => tracing::warn!(status = %s, "--on-change command failed"),
        Err(e) => tracing::warn!(error = %e, "cannot run the --on-change command"),
    }
}
