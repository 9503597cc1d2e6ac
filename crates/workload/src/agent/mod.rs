//! `tessera agent --dir DIR`: keeps a directory equal to a workload key's
//! secrets, one file per name, following the runtime API's long poll.
//!
//! The directory is the one place where values rest in plaintext, by
//! design; everything else the agent writes (the manifest, the status file,
//! its log) holds names and versions only. See docs/delivery.md for the
//! contract.

pub mod files;
pub mod manifest;
pub mod sync;

use super::health::{self, Health, DEFAULT_MAX_AGE};
use super::link::Link;
use super::runtime_client::{
    protect_the_key, FetchError, Fetched, Holds, RuntimeArgs, RuntimeClient, Snapshot,
    EARLY_ANSWER, KEY_VARIABLES, LONG_POLL_WAIT,
};
use super::signals::StopSignals;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use files::{resolve_group, Access, SecretsDir, STATUS_FILE};
use manifest::Manifest;
use reqwest::header::HeaderValue;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// The directory to keep equal to the key's secrets (created if
    /// missing; mode 0700, or 0750 with --group). Refused when it is a
    /// symbolic link, or exists and is not the agent's user's or may be
    /// written by others.
    #[arg(long, value_name = "DIR", required = true)]
    pub dir: Option<PathBuf>,

    /// Share the files with this group (name or id): directory 0750 and
    /// files 0640 owned by that group, for a workload running as another
    /// user in the group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Write the files once and exit: 0 when every secret's files hold its
    /// value, non-zero otherwise (for init containers).
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

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Check the agent keeping DIR (for a liveness or readiness probe):
    /// exit 0 when its last round with the server ended within --max-age
    /// and every secret's files hold its value, 1 otherwise.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The directory the agent keeps.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The oldest last round that still counts as healthy (`90s`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_MAX_AGE,
          value_parser = tessera_core::duration::parse_duration)]
    pub max_age: Duration,
}

/// `tessera agent status`.
fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let path = args.dir.join(STATUS_FILE);
    health::check(
        health::read_file(&path),
        &path.display().to_string(),
        args.max_age,
    )
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let Some(AgentCommand::Status(s)) = &args.command {
        return status(s);
    }
    // The agent holds its key for as long as it runs.
    protect_the_key()?;
    let Some(dir_path) = args.dir.clone() else {
        bail!("--dir is required");
    };
    let client = RuntimeClient::new(&args.runtime)?;
    let access = match &args.group {
        Some(g) => Access::shared_with_group(resolve_group(g)?),
        None => Access::private(),
    };
    let dir = SecretsDir::open(&dir_path, access)?;
    if let Some(warning) = dir.memory_fs_warning() {
        tracing::warn!("{warning}");
    }
    if let Some(note) = dir.parent_note() {
        tracing::info!("{note}");
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
    let manifest = Manifest::load(&dir)?;
    let signals = StopSignals::new()?;
    tracing::info!(
        dir = %dir.path().display(),
        server = client.base_url(),
        instance = client.instance_id(),
        "agent started"
    );
    let mut agent = Agent {
        args,
        client,
        dir,
        manifest,
        signals,
        has_applied: false,
        refused_seen: BTreeSet::new(),
        empty_warned: false,
    };
    if agent.args.once {
        agent.once().await
    } else {
        agent.follow().await
    }
}

struct Agent {
    args: AgentArgs,
    client: RuntimeClient,
    dir: SecretsDir,
    manifest: Manifest,
    signals: StopSignals,
    has_applied: bool,
    refused_seen: BTreeSet<String>,
    empty_warned: bool,
}

/// How applying one snapshot went.
enum Outcome {
    /// Every secret's files hold its value.
    Complete,
    /// Not in full; why.
    Incomplete(String),
}

impl Agent {
    /// Warnings about what the server sent (names refused on the client,
    /// a scope with no secret), then the files.
    async fn apply(&mut self, snapshot: &Snapshot, run_hook_after: bool) -> Outcome {
        for name in &snapshot.refused {
            if self.refused_seen.insert(name.clone()) {
                tracing::warn!(secret = ?name, "skipping a secret whose name is not a safe file name");
            }
        }
        match snapshot.empty_scope_warning(self.client.key_prefix()) {
            Some(w) if !self.empty_warned => {
                tracing::warn!("{w}");
                self.empty_warned = true;
            }
            Some(_) => {}
            None => self.empty_warned = false,
        }
        let applied = match sync::apply(&self.dir, &mut self.manifest, snapshot) {
            Ok(a) => a,
            Err(e) => return Outcome::Incomplete(format!("cannot update the files: {e:#}")),
        };
        log_applied(
            &applied,
            snapshot.revision,
            !self.has_applied && applied.is_complete(),
        );
        self.has_applied |= applied.is_complete();
        if let (true, false, Some(cmd)) = (run_hook_after, applied.is_empty(), &self.args.on_change)
        {
            run_hook(cmd, &self.dir, &applied).await;
        }
        match applied.blocked_message(self.dir.path()) {
            None => Outcome::Complete,
            Some(why) => Outcome::Incomplete(why),
        }
    }

    /// `--once`: fetch and write, then tell the server what is now held
    /// (a conditional request that answers 304 when nothing moved meanwhile;
    /// if something did, that is applied too, a few times at most).
    async fn once(&mut self) -> anyhow::Result<()> {
        let mut held: Option<HeaderValue> = None;
        for _ in 0..4 {
            let holds = held.as_ref().map_or(Holds::Nothing, Holds::Revision);
            match self
                .client
                .fetch(held.as_ref(), holds, Duration::ZERO)
                .await
            {
                Ok(Fetched::Unchanged) => return Ok(()),
                Ok(Fetched::Changed(snapshot)) => match self.apply(&snapshot, false).await {
                    Outcome::Complete => held = snapshot.etag,
                    Outcome::Incomplete(why) => bail!("{why}"),
                },
                Err(e) => return Err(self.fatal(e, "cannot fetch the secrets")),
            }
        }
        // Still moving after several rounds: what is written is current
        // as of the last answer.
        Ok(())
    }

    /// The error that ends the agent for a fetch error (with
    /// `--wipe-on-revoke`, after removing its files on a 401).
    fn fatal(&mut self, e: FetchError, context: &str) -> anyhow::Error {
        match e {
            FetchError::Unauthorized(m) => {
                let kept = if self.args.wipe_on_revoke {
                    match sync::wipe(&self.dir, &mut self.manifest) {
                        Ok(n) => format!("removed the {n} files it wrote (--wipe-on-revoke)"),
                        Err(e) => format!("could not remove its files: {e:#}"),
                    }
                } else {
                    "the files are kept (--wipe-on-revoke would remove them)".to_owned()
                };
                anyhow::anyhow!("the server refused the API key ({m}); {kept}")
            }
            FetchError::Unavailable { message, .. } => anyhow::anyhow!("{context}: {message}"),
            e => anyhow::anyhow!(e),
        }
    }

    /// Follows the long poll until stopped.
    async fn follow(&mut self) -> anyhow::Result<()> {
        let mut health = Health::new("agent");
        let mut status_failed = false;
        let result = self.follow_with(&mut health, &mut status_failed).await;
        health.stopped();
        if let Err(e) = &result {
            health.failing(&format!("{e:#}"));
        }
        let dir = &self.dir;
        health::save(&mut health, &mut status_failed, |b| dir.write_status(b));
        result
    }

    async fn follow_with(
        &mut self,
        health: &mut Health,
        status_failed: &mut bool,
    ) -> anyhow::Result<()> {
        // `held`: the ETag of the last answer applied in full, which is
        // both what the next long poll waits past and what the agent tells
        // the server it holds.
        let mut held: Option<HeaderValue> = None;
        let mut link = Link::new("keeping the last good files");
        // Retries after an answer that could not be applied in full.
        let mut write_backoff = super::backoff::Backoff::new();
        let mut failing: Option<String> = None;
        loop {
            let dir = &self.dir;
            health::save(health, status_failed, |b| dir.write_status(b));
            let asked = Instant::now();
            let holds = held.as_ref().map_or(Holds::Nothing, Holds::Revision);
            let result = tokio::select! {
                r = self.client.fetch(held.as_ref(), holds, LONG_POLL_WAIT) => r,
                sig = self.signals.recv() => {
                    tracing::info!(signal = %sig, "stopping");
                    return Ok(());
                }
            };
            if result.is_ok() {
                link.answered();
                health.round();
                if !self.dir.still_in_place() {
                    bail!(
                        "{} no longer names the directory the agent opened: it was moved or replaced \
                         (by someone who may write to its parent). Stopping; the files stay in the \
                         directory the agent had open",
                        self.dir.path().display()
                    );
                }
            }
            let delay = match result {
                Ok(Fetched::Unchanged) if asked.elapsed() >= EARLY_ANSWER => continue,
                // "Unchanged" long before the wait ended: the server is
                // stopping. Do not spin on it.
                Ok(Fetched::Unchanged) => link.answered_early(),
                Ok(Fetched::Changed(snapshot)) => {
                    match self.apply(&snapshot, true).await {
                        Outcome::Complete => {
                            if failing.take().is_some() {
                                tracing::info!("every secret's files hold its value again");
                            }
                            health.applied(snapshot.revision, snapshot.secrets.len());
                            write_backoff.reset();
                            held = snapshot.etag;
                            continue;
                        }
                        Outcome::Incomplete(why) => {
                            if failing.as_deref() != Some(why.as_str()) {
                                tracing::error!(
                                    "{why}; retrying (the files that could be written were)"
                                );
                            }
                            health.failing(&why);
                            failing = Some(why);
                            // Fetch everything again next time, and do not
                            // tell the server this was applied.
                            held = None;
                            write_backoff.next_delay(Duration::MAX, super::backoff::uniform)
                        }
                    }
                }
                Err(FetchError::Unavailable {
                    message,
                    retry_after,
                }) => {
                    health.unreachable(&message);
                    link.failed(&message, retry_after)
                }
                Err(e) => return Err(self.fatal(e, "cannot fetch the secrets")),
            };
            let dir = &self.dir;
            health::save(health, status_failed, |b| dir.write_status(b));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                sig = self.signals.recv() => {
                    tracing::info!(signal = %sig, "stopping");
                    return Ok(());
                }
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
/// (space-separated names), and neither the key nor where it is
/// ([`KEY_VARIABLES`]).
async fn run_hook(cmd: &str, dir: &SecretsDir, applied: &sync::Applied) {
    let mut hook = tokio::process::Command::new("sh");
    hook.arg("-c").arg(cmd);
    for var in KEY_VARIABLES {
        hook.env_remove(var);
    }
    let status = hook
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
