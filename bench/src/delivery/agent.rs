//! The agent end to end: `tessera agent --dir DIR` follows the small team;
//! each round upserts a new value and times until the agent's file holds
//! exactly the new bytes (read every millisecond; the agent replaces files
//! by rename, so a read sees the old or the new value, never a mix).

use super::{ms, seed, Propagation, Writer};
use crate::config::Plan;
use crate::process::{cpu_seconds, machine_busy_seconds, Proc};
use crate::targets::tessera::{scrub_env, Tessera};
use crate::workloads::{fresh_value, secret_name, PROPAGATED};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often the file is read while a round waits for it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// The agent's first sync of the whole team must finish within this.
const FIRST_SYNC: Duration = Duration::from_secs(30);
/// A round whose file has not changed by then is a failure.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

pub const NO_AGENT: &str = "the tessera binary has no agent subcommand";

/// Whether `tessera agent --help` succeeds, and its text.
fn agent_help(bin: &Path) -> Option<String> {
    let mut cmd = Command::new(bin);
    scrub_env(&mut cmd);
    let out = cmd
        .args(["agent", "--help"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where DIR goes: a memory file system when there is one (as the agent's
/// docs advise), else the work directory.
fn dir_parent(work: &Path) -> (PathBuf, &'static str) {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        (shm.to_path_buf(), "tmpfs (/dev/shm)")
    } else {
        (
            work.to_path_buf(),
            "the work directory (no /dev/shm: not a tmpfs)",
        )
    }
}

/// Reads `path` every [`POLL_INTERVAL`] until it holds `want`; returns the
/// instant it was first seen, or None at `deadline`.
pub fn wait_for_bytes(path: &Path, want: &[u8], deadline: Instant) -> Option<Instant> {
    loop {
        if std::fs::read(path).is_ok_and(|got| got == want) {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

pub async fn run(t: &Tessera, p: &mut Propagation, plan: &Plan, work: &Path) -> anyhow::Result<()> {
    let Some(help) = agent_help(t.bin()) else {
        p.skipped = Some(NO_AGENT.into());
        return Ok(());
    };
    let key = t.read_key().context("no WORKSPACE_READ_SECRETS key")?;
    let (parent, fs) = dir_parent(work);
    let dir = tempfile::Builder::new()
        .prefix("tessera-bench-agent-")
        .tempdir_in(&parent)?;
    let private = tempfile::Builder::new().prefix("agent-").tempdir_in(work)?;
    let log = private.path().join("agent.log");
    let file = dir.path().join(secret_name(PROPAGATED));
    p.setup = format!(
        "DIR on {fs}; the file is read every {} ms; {} rounds",
        POLL_INTERVAL.as_millis(),
        plan.rounds
    );

    let mut writer = Writer::connect(t.addr, t).await?;
    let first = fresh_value(seed(usize::MAX));
    writer.upsert(&first).await?;

    let mut cmd = Command::new(t.bin());
    scrub_env(&mut cmd);
    cmd.arg("agent")
        .arg("--dir")
        .arg(dir.path())
        .env("TESSERA_URL", format!("http://{}", t.addr));
    if help.contains("--api-key-file") {
        let key_file = private.path().join("read.key");
        write_private(&key_file, key)?;
        cmd.arg("--api-key-file").arg(&key_file);
    } else {
        cmd.env("TESSERA_API_KEY", key);
    }
    let mut agent = Proc::spawn("tessera agent", cmd, &log)?;

    let deadline = Instant::now() + FIRST_SYNC;
    loop {
        if wait_for_bytes(&file, first.as_bytes(), Instant::now()).is_some() {
            break;
        }
        agent
            .check_alive()
            .with_context(|| format!("agent log: {}", log_tail(&log)))?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent did not write {} within {FIRST_SYNC:?}; log: {}",
            file.display(),
            log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the agent park its long poll.
    tokio::time::sleep(plan.round_settle).await;

    let server_before = cpu_seconds(Some(t.pid()))?;
    let client_before = cpu_seconds(None)?;
    let machine_before = machine_busy_seconds()?;
    let wall = Instant::now();
    for round in 0..plan.rounds {
        let value = fresh_value(seed(round));
        // The reader's thread starts before the write is sent, so it is
        // already reading when the file changes.
        let seen = {
            let (file, want) = (file.clone(), value.clone());
            let deadline = Instant::now() + ROUND_TIMEOUT;
            tokio::task::spawn_blocking(move || wait_for_bytes(&file, want.as_bytes(), deadline))
        };
        let (sent, acked) = match writer.upsert(&value).await {
            Ok(times) => times,
            Err(e) => {
                // The reader gives up at its deadline.
                p.record_error("upsert", || format!("round {}: {e:#}", round + 1));
                tokio::time::sleep(plan.round_settle).await;
                continue;
            }
        };
        p.upsert_ms.push(ms(acked - sent));
        match seen.await.ok().flatten() {
            Some(at) => {
                let took = at.saturating_duration_since(sent.into_std());
                p.last_ms.push(ms(took));
                eprintln!(
                    "  round {}/{}: file updated after {:.1} ms (upsert acked {:.1} ms)",
                    round + 1,
                    plan.rounds,
                    ms(took),
                    ms(acked - sent)
                );
            }
            None => {
                let alive = agent.check_alive().err();
                p.record_error("timeout", || {
                    format!(
                        "round {}: the agent's file did not hold the new value within \
                         {ROUND_TIMEOUT:?}{}; log: {}",
                        round + 1,
                        alive.map_or(String::new(), |e| format!(" ({e})")),
                        log_tail(&log)
                    )
                });
            }
        }
        tokio::time::sleep(plan.round_settle).await;
    }
    let secs = wall.elapsed().as_secs_f64();
    let server = cpu_seconds(Some(t.pid()))? - server_before;
    let client = cpu_seconds(None)? - client_before;
    let machine = machine_busy_seconds()? - machine_before;
    p.server_cores = server / secs;
    p.client_cores = client / secs;
    // The agent's own CPU is in here too.
    p.other_cores = (machine - server - client).max(0.0) / secs;
    agent.stop(Duration::from_secs(10)).await;
    Ok(())
}

/// The key file, readable by its owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
