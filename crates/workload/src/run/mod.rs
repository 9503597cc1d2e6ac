//! `tessera run -- CMD ARGS…`: fetch the key's secrets once and exec CMD
//! with them in its environment (same process, so its exit status and
//! signals are the command's own), or, with `--watch`, supervise CMD and
//! restart it when a value changes.
//!
//! A failed fetch never starts the command: it is an error and a non-zero
//! exit.

pub mod coalesce;
pub mod env;
pub mod named;
pub mod refused;

use super::health::{self, Health, StatusFileArgs};
use super::link::Link;
use super::runtime_client::{
    protect_the_key, FetchError, Fetched, Holds, RuntimeArgs, RuntimeClient, Snapshot,
    EARLY_ANSWER, LONG_POLL_WAIT,
};
use super::signals::StopSignals;
use super::Exit;
use crate::domain::consumer_kind::ConsumerKind;
use anyhow::{bail, Context};
use clap::Args;
use coalesce::Coalescer;
use env::{Naming, Plan};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true)]
pub struct RunArgs {
    #[command(subcommand)]
    pub check: Option<RunCommand>,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Set the bare variable VAR from the secret SECRET (repeatable), and
    /// pass no TRUSS_SECRET_ variables and no other secret. Only the
    /// variables named here (or in --plain-file) are set; a secret's name
    /// alone never chooses one.
    #[arg(long, value_name = "VAR=SECRET", num_args = 0..=1, default_missing_value = "",
          action = clap::ArgAction::Append)]
    pub plain: Vec<String>,

    /// Read VAR=SECRET pairs for --plain from FILE, one a line (`#` starts a
    /// comment). Refused unless FILE is yours (or root's) and not writable
    /// by group or others.
    #[arg(long, value_name = "FILE")]
    pub plain_file: Option<std::path::PathBuf>,

    /// Let a secret replace a variable that is already set in the
    /// environment (without it, that is an error).
    #[arg(long = "override")]
    pub replace: bool,

    /// Supervise the command instead of replacing this process with it:
    /// when a value changes, stop it (SIGTERM, then SIGKILL after --grace)
    /// and start it again with the new values.
    #[arg(long)]
    pub watch: bool,

    /// With --watch: seconds between SIGTERM and SIGKILL when restarting.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub grace: u64,

    /// With --watch: restart once no further change has come for this long
    /// (e.g. 1s, 500ms; 0 restarts at once), so a burst of writes is one
    /// restart; a steady stream still restarts every 10 periods.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = coalesce::parse_quiet)]
    pub quiet_period: Duration,

    /// With --watch: keep a status file for `tessera run status`,
    /// rewritten after every round with the server.
    #[arg(long, value_name = "FILE", requires = "watch")]
    pub status_file: Option<std::path::PathBuf>,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Check a `run --watch` supervisor through its --status-file (for a
    /// probe): exit 0 when its last round with the server ended within
    /// --max-age and the command runs with the current values, 1 otherwise.
    Status(StatusFileArgs),
}

/// The variables that say where `tessera run` finds its key: the command
/// gets values, never the key or where it is.
pub use super::runtime_client::KEY_VARIABLES;

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(RunCommand::Status(s)) = &args.check {
        return s.check();
    }
    protect_the_key()?;
    // Before anything is fetched: a bad --plain list is a usage error.
    let naming = match named::collect(&args.plain, args.plain_file.as_deref()) {
        Ok(Some(pairs)) => Naming::Named(pairs),
        Ok(None) => Naming::Truss,
        Err(problems) => {
            return Err(Exit {
                code: 2,
                message: Some(format!("the command was not started:\n  {problems}")),
            }
            .into())
        }
    };
    // A plain run execs and never reports again: the server lists it as
    // one-shot, which never blocks a destroy. A supervisor reports while
    // its command lives.
    let kind = if args.watch {
        ConsumerKind::Supervisor
    } else {
        ConsumerKind::OneShot
    };
    let client = RuntimeClient::new(&args.runtime)?.with_kind(kind);
    let snapshot = match client.fetch_all(None, Duration::ZERO).await {
        Ok(Fetched::Changed(s)) => s,
        Ok(Fetched::Unchanged) => bail!("the server answered 304 to an unconditional request"),
        Err(e) => bail!("cannot fetch the secrets, so the command was not started: {e}"),
    };
    if let Some(w) = snapshot.empty_scope_warning(client.key_prefix()) {
        tracing::warn!("{w}");
    }
    let plan = plan(&args, &naming, &snapshot)?;
    if args.watch {
        supervise(&args, &naming, &client, snapshot, plan).await
    } else {
        tracing::debug!(secrets = %names(&snapshot), "starting the command");
        let err = command(&args.command, &plan).exec();
        Err(cannot_start(&args.command, &err))
    }
}

fn plan(args: &RunArgs, naming: &Naming, snapshot: &Snapshot) -> anyhow::Result<Plan> {
    if !snapshot.refused.is_empty() {
        bail!(
            "the server sent secrets whose names are not valid ({:?}); the command was not started",
            snapshot.refused
        );
    }
    env::plan(&snapshot.secrets, naming, args.replace, |v| {
        std::env::var_os(v).is_some()
    })
    .map_err(|problems| {
        anyhow::anyhow!("the command was not started:\n  {}", problems.join("\n  "))
    })
}

/// `name@version, …` for the log.
fn names(s: &Snapshot) -> String {
    s.secrets
        .iter()
        .map(|s| format!("{}@{}", s.name, s.version))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command with the plan's variables; the child inherits neither the
/// workload key nor where it is ([`KEY_VARIABLES`]).
fn command(argv: &[OsString], plan: &Plan) -> std::process::Command {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    for var in KEY_VARIABLES {
        cmd.env_remove(var);
    }
    for (k, v) in &plan.vars {
        cmd.env(k, v.expose());
    }
    cmd
}

/// 127 when the command does not exist, 126 when it cannot be executed
/// (as shells do).
fn cannot_start(argv: &[OsString], err: &std::io::Error) -> anyhow::Error {
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Exit {
        code,
        message: Some(format!("cannot run {}: {err}", argv[0].to_string_lossy())),
    }
    .into()
}

/// A child's exit status as ours: its code, or 128 + the signal that
/// ended it.
fn exit_with(status: ExitStatus) -> anyhow::Result<()> {
    let code = match (status.code(), status.signal()) {
        (Some(0), _) => return Ok(()),
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Err(Exit {
        code: u8::try_from(code).unwrap_or(1),
        message: None,
    }
    .into())
}

fn spawn(argv: &[OsString], plan: &Plan) -> anyhow::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::from(command(argv, plan));
    // Its own process group: the supervisor forwards signals to the whole
    // group, once (a terminal's Ctrl-C reaches only the supervisor).
    cmd.process_group(0);
    cmd.spawn().map_err(|e| cannot_start(argv, &e))
}

fn signal_group(child: &tokio::process::Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        if let Err(e) = killpg(Pid::from_raw(pid), sig) {
            tracing::debug!(error = %e, signal = %sig, "could not signal the command");
        }
    }
}

/// Stops the child for a restart: SIGTERM to its group, SIGKILL after the
/// grace period. Returns its status and whether we were asked to stop
/// meanwhile (then there is no restart).
async fn stop_child(
    child: &mut tokio::process::Child,
    grace: Duration,
    signals: &mut StopSignals,
) -> anyhow::Result<(ExitStatus, bool)> {
    signal_group(child, Signal::SIGTERM);
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let mut stopping = false;
    loop {
        tokio::select! {
            status = child.wait() => return Ok((status?, stopping)),
            () = &mut deadline => {
                tracing::warn!(grace_seconds = grace.as_secs(), "the command did not stop within the grace period; killing it");
                signal_group(child, Signal::SIGKILL);
                return Ok((child.wait().await?, stopping));
            }
            sig = signals.recv() => {
                stopping = true;
                signal_group(child, sig);
            }
        }
    }
}

/// Values the command does not have yet, waiting for the changes to be
/// quiet before the restart that applies them.
struct Pending {
    plan: Plan,
    /// `name@version, …` for the log.
    secrets: String,
    /// The answer they came in: once the command runs with them, what the
    /// supervisor says it holds.
    etag: Option<reqwest::header::HeaderValue>,
    revision: i64,
    count: usize,
}

/// `--watch`: runs the command, follows the long poll, restarts the
/// command (once the changes have been quiet for `--quiet-period`) when what
/// it would receive changes, forwards SIGTERM/SIGINT, and exits with the
/// command's status. It tells the server it holds only what the command
/// runs with (not a change still waiting for its restart), and keeps the
/// `--status-file` current.
async fn supervise(
    args: &RunArgs,
    naming: &Naming,
    client: &RuntimeClient,
    snapshot: Snapshot,
    mut plan: Plan,
) -> anyhow::Result<()> {
    let mut signals = StopSignals::new()?;
    let grace = Duration::from_secs(args.grace);
    // The ETag of the latest answer (what the long poll waits on), and of
    // the values the command runs with (what this supervisor tells the
    // server it holds).
    let mut held = snapshot.etag.clone();
    let mut running = snapshot.etag.clone();
    let mut child = spawn(&args.command, &plan)?;
    tracing::info!(secrets = %names(&snapshot), pid = child.id(), "started the command");
    let mut link = Link::new("the command keeps its values");
    let mut health = Health::new("run --watch");
    health.round();
    health.applied(snapshot.revision, snapshot.secrets.len());
    let mut status_failed = false;
    let mut retry_at: Option<Instant> = None;
    let mut watching = true;
    let mut pending: Option<Pending> = None;
    let mut coalescer = Coalescer::new(args.quiet_period);
    loop {
        if let Some(path) = &args.status_file {
            health::save(&mut health, &mut status_failed, |b| {
                health::write_file(path, b)
            });
        }
        let poll = async {
            if !watching {
                return std::future::pending().await;
            }
            if let Some(t) = retry_at {
                tokio::time::sleep_until(t).await;
            }
            let asked = Instant::now();
            let holds = running.as_ref().map_or(Holds::Nothing, Holds::Revision);
            (
                client.fetch(held.as_ref(), holds, LONG_POLL_WAIT).await,
                asked.elapsed(),
            )
        };
        let due = coalescer.due().filter(|_| watching);
        let restart = async {
            match due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => {
                let status = status.context("cannot wait for the command")?;
                tracing::info!(%status, "the command exited");
                stopped(&mut health, args, &mut status_failed);
                return exit_with(status);
            }
            sig = signals.recv() => {
                tracing::info!(signal = %sig, "forwarding to the command");
                signal_group(&child, sig);
                // No more restarts: wait for the command to exit.
                watching = false;
            }
            () = restart => {
                let changes = coalescer.take();
                let Some(next) = pending.take() else {
                    continue;
                };
                tracing::info!(secrets = %next.secrets, changes, "secrets changed; restarting the command");
                let (status, stop) = stop_child(&mut child, grace, &mut signals).await?;
                if stop {
                    tracing::info!(%status, "the command exited");
                    stopped(&mut health, args, &mut status_failed);
                    return exit_with(status);
                }
                plan = next.plan;
                child = spawn(&args.command, &plan)?;
                running = next.etag;
                health.applied(next.revision, next.count);
                tracing::info!(pid = child.id(), "restarted the command");
            }
            (result, took) = poll => {
                retry_at = None;
                match result {
                    Ok(fetched) => {
                        link.answered();
                        health.round();
                        let Fetched::Changed(snap) = fetched else {
                            if took < EARLY_ANSWER {
                                // The server is stopping: do not spin on it.
                                retry_at = Some(Instant::now() + link.answered_early());
                            }
                            continue;
                        };
                        held = snap.etag.clone();
                        if let Some(w) = snap.empty_scope_warning(client.key_prefix()) {
                            tracing::warn!("{w}");
                        }
                        let next = match self::plan(args, naming, &snap) {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::error!(error = format!("{e:#}"), "new secrets cannot be applied; the command keeps its current values");
                                health.failing(&format!("new secrets cannot be applied: {e:#}"));
                                pending = None;
                                coalescer.cancel();
                                continue;
                            }
                        };
                        if next.same_as(&plan) {
                            if pending.take().is_some() {
                                tracing::info!("secrets are back to what the command has; not restarting");
                            } else {
                                tracing::info!(revision = snap.revision, "secrets changed, but not what the command receives; not restarting");
                            }
                            coalescer.cancel();
                            // The command already runs with these values.
                            running = snap.etag.clone();
                            health.applied(snap.revision, snap.secrets.len());
                            continue;
                        }
                        tracing::debug!(secrets = %names(&snap), "secrets changed; restarting once they are quiet");
                        // What the server sent can be applied: no longer
                        // failing, though the command gets it only at the
                        // restart (until then it holds, and is reported
                        // holding, what it has).
                        health.applicable();
                        pending = Some(Pending {
                            plan: next,
                            secrets: names(&snap),
                            etag: snap.etag.clone(),
                            revision: snap.revision,
                            count: snap.secrets.len(),
                        });
                        coalescer.changed(Instant::now());
                    }
                    Err(FetchError::Unavailable { message, retry_after }) => {
                        health.unreachable(&message);
                        retry_at = Some(Instant::now() + link.failed(&message, retry_after));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "no longer watching for changes; the command keeps running with the values it has");
                        health.failing(&format!("no longer watching for changes: {e}"));
                        watching = false;
                        pending = None;
                        coalescer.cancel();
                    }
                }
            }
        }
    }
}

/// The supervisor is ending: its status says so.
fn stopped(health: &mut Health, args: &RunArgs, failed_before: &mut bool) {
    if let Some(path) = &args.status_file {
        health.stopped();
        health::save(health, failed_before, |b| health::write_file(path, b));
    }
}
