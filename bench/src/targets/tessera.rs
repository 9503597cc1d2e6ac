//! Tessera as a target: a fresh store (SQLite in a temporary data directory,
//! or a PostgreSQL schema), two organizations, and `tessera serve`.

use super::Team;
use crate::client::{oneshot, wait_ready};
use crate::process::{free_addr, output, Proc};
use anyhow::Context;
use bytes::Bytes;
use hyper::header::AUTHORIZATION;
use hyper::{Method, StatusCode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// A team and an API key that may write and list it.
struct Tenant {
    team_id: String,
    key: String,
}

pub struct Tessera {
    pub addr: SocketAddr,
    bin: PathBuf,
    database_url: Option<String>,
    dir: TempDir,
    proc: Proc,
    big: Tenant,
    small: Tenant,
    /// A WORKSPACE_READ_SECRETS key of the small team (fetch-100 and the
    /// propagation workloads), created after the issue 5 setup.
    read_key: Option<String>,
    /// `serve` flags this binary needs for the benchmark's connection counts
    /// (see [`serve_flags`]).
    serve_flags: Vec<String>,
}

/// A second `tessera serve` on the same PostgreSQL database and master key
/// (propagate-pg); stopped and its data directory removed when dropped.
pub struct Peer {
    pub addr: SocketAddr,
    proc: Proc,
    _dir: TempDir,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub async fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(30)).await;
    }
}

impl Tessera {
    /// Initializes a store with two organizations (the big team is the first
    /// one's default team, the small team the second one's: Baseten's API has
    /// no team creation) and starts the server on it.
    pub async fn start(
        bin: &Path,
        work_dir: &Path,
        database_url: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::start_with(bin, work_dir, database_url, &[]).await
    }

    /// Like [`Tessera::start`], with `extra` flags for `serve`.
    pub async fn start_with(
        bin: &Path,
        work_dir: &Path,
        database_url: Option<String>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tessera-")
            .tempdir_in(work_dir)?;
        let store_args = store_args(dir.path(), database_url.as_deref());
        let big_key = output("tessera init", tokio_cmd(bin).arg("init").args(&store_args)).await?;
        let small_key = output(
            "tessera org create",
            tokio_cmd(bin)
                .args(["org", "create", "bench-small"])
                .args(&store_args),
        )
        .await?;
        let addr = free_addr()?;
        let mut serve_flags = serve_flags(bin).await;
        serve_flags.extend(extra.iter().map(|f| f.to_string()));
        let proc = spawn_serve(bin, dir.path(), database_url.as_deref(), addr, &serve_flags)?;
        let mut tessera = Tessera {
            addr,
            bin: bin.to_path_buf(),
            database_url,
            dir,
            proc,
            big: Tenant {
                team_id: String::new(),
                key: big_key,
            },
            small: Tenant {
                team_id: String::new(),
                key: small_key,
            },
            read_key: None,
            serve_flags,
        };
        let proc = &mut tessera.proc;
        wait_ready(addr, "/readyz", Duration::from_secs(30), || {
            proc.check_alive()
        })
        .await?;
        tessera.big.team_id = default_team(addr, &tessera.big.key).await?;
        tessera.small.team_id = default_team(addr, &tessera.small.key).await?;
        Ok(tessera)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The server's log (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// (team id, API key) of a data set.
    pub fn tenant(&self, team: Team) -> (&str, &str) {
        let t = match team {
            Team::Big => &self.big,
            Team::Small => &self.small,
        };
        (&t.team_id, &t.key)
    }

    /// The data directory (the SQLite store's files are there).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn read_key(&self) -> Option<&str> {
        self.read_key.as_deref()
    }

    /// Creates a WORKSPACE_READ_SECRETS key for the small team with its
    /// organization admin's personal key (only people may issue one).
    pub async fn create_read_key(&mut self) -> anyhow::Result<()> {
        let auth = format!("Bearer {}", self.small.key);
        let path = format!("/v1/teams/{}/api_keys", self.small.team_id);
        let body = serde_json::json!({"type": "WORKSPACE_READ_SECRETS", "name": "bench"});
        let (status, reply) = oneshot(
            self.addr,
            Method::POST,
            &path,
            &[(AUTHORIZATION, &auth)],
            serde_json::to_vec(&body)?,
        )
        .await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "creating a WORKSPACE_READ_SECRETS key: {status} {}",
            String::from_utf8_lossy(&reply)
        );
        let reply: serde_json::Value = serde_json::from_slice(&reply)?;
        let key = reply["api_key"]
            .as_str()
            .context("no api_key in the answer to the key creation")?;
        self.read_key = Some(key.to_string());
        Ok(())
    }

    /// Starts a second node on this target's PostgreSQL database, with the
    /// same master key and its own (empty) data directory.
    pub async fn start_peer(&self, work_dir: &Path) -> anyhow::Result<Peer> {
        let url = self
            .database_url
            .as_deref()
            .context("a second node needs a PostgreSQL target")?;
        let dir = tempfile::Builder::new()
            .prefix("tessera-peer-")
            .tempdir_in(work_dir)?;
        let addr = free_addr()?;
        let mut flags = self.serve_flags.clone();
        flags.push("--master-key-file".into());
        flags.push(self.dir.path().join("master.key").display().to_string());
        let mut proc = spawn_serve(&self.bin, dir.path(), Some(url), addr, &flags)?;
        wait_ready(addr, "/readyz", Duration::from_secs(30), || {
            proc.check_alive()
        })
        .await
        .context("starting a second Tessera node on the same PostgreSQL database")?;
        Ok(Peer {
            addr,
            proc,
            _dir: dir,
        })
    }

    /// Stops the server gracefully and starts it again on the same store;
    /// returns the time from spawn to `/readyz` answering 200.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        self.stop().await;
        self.addr = free_addr()?;
        self.proc = spawn_serve(
            &self.bin,
            self.dir.path(),
            self.database_url.as_deref(),
            self.addr,
            &self.serve_flags,
        )?;
        let proc = &mut self.proc;
        wait_ready(self.addr, "/readyz", Duration::from_secs(30), || {
            proc.check_alive()
        })
        .await
    }

    pub async fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(30)).await;
    }
}

fn store_args(data_dir: &Path, database_url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_string(), data_dir.display().to_string()];
    if let Some(url) = database_url {
        args.extend(["--database-url".to_string(), url.to_string()]);
    }
    args
}

/// Settings come from flags only: `TESSERA_*` variables of the caller's
/// environment (a database URL, say) must not redirect the benchmark.
pub fn scrub_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TESSERA_") {
            cmd.env_remove(name);
        }
    }
}

fn tokio_cmd(bin: &Path) -> tokio::process::Command {
    let mut cmd = Command::new(bin);
    scrub_env(&mut cmd);
    cmd.into()
}

/// Limits the benchmark would otherwise run into, raised when the binary
/// has the flag (`serve --help` says): the connection cap per address
/// (propagate-1k holds 1,000 waiters from 127.0.0.1) and the quota of
/// secrets per team (the big team grows to 100,000).
async fn serve_flags(bin: &Path) -> Vec<String> {
    let help = output(
        "tessera serve --help",
        tokio_cmd(bin).args(["serve", "--help"]),
    )
    .await
    .unwrap_or_default();
    let mut flags = serve_flags_for(&help);
    // Extra flags for every `tessera serve` of the run, to measure what a
    // setting costs (e.g. BENCH_SERVE_ARGS="--keep-versions 0").
    if let Ok(extra) = std::env::var("BENCH_SERVE_ARGS") {
        flags.extend(extra.split_whitespace().map(str::to_owned));
    }
    flags
}

fn serve_flags_for(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let raise = [
        ("--max-connections-per-address", "10000"),
        ("--max-secrets-per-team", "1000000"),
        // The workloads measure the server, not its throttles (read-growth
        // above all: one key at full speed).
        ("--rate-limit", "off"),
    ];
    for (flag, value) in raise {
        // A whole word: `--max-connections` must not match the per-address flag.
        let present = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '<')
            .any(|word| word == flag);
        if present {
            flags.extend([flag.to_string(), value.to_string()]);
        }
    }
    flags
}

fn spawn_serve(
    bin: &Path,
    data_dir: &Path,
    database_url: Option<&str>,
    addr: SocketAddr,
    flags: &[String],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin);
    scrub_env(&mut cmd);
    cmd.arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .args(store_args(data_dir, database_url))
        .args(flags);
    Proc::spawn("tessera serve", cmd, &data_dir.join("serve.log"))
}

/// The id of the default team of the key's organization (`GET /v1/teams`).
async fn default_team(addr: SocketAddr, key: &str) -> anyhow::Result<String> {
    let auth = format!("Bearer {key}");
    let (status, body) = oneshot(
        addr,
        Method::GET,
        "/v1/teams",
        &[(AUTHORIZATION, &auth)],
        Bytes::new(),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "GET /v1/teams answered {status}");
    let teams: serde_json::Value = serde_json::from_slice(&body)?;
    teams["teams"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["default"] == true)
        .and_then(|t| t["id"].as_str())
        .map(str::to_string)
        .context("GET /v1/teams listed no default team")
}

#[cfg(test)]
mod tests {
    use super::serve_flags_for;

    #[test]
    fn raises_only_the_limits_the_binary_has() {
        let old = "Usage: tessera serve [OPTIONS]\n      --listen <LISTEN>";
        assert!(serve_flags_for(old).is_empty());
        let help = "      --max-connections <MAX_CONNECTIONS>\n      \
                    --max-connections-per-address <N>\n      \
                    --max-secrets-per-team <N>  [default: 10000]";
        assert_eq!(
            serve_flags_for(help),
            [
                "--max-connections-per-address",
                "10000",
                "--max-secrets-per-team",
                "1000000"
            ]
        );
        assert!(serve_flags_for("--max-connections <N>").is_empty());
    }
}
