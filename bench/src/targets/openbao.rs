//! OpenBao as a target: one node with Raft integrated storage on disk (its
//! durable production setup), TLS off, KV v2 mounted at `secret` (the big
//! data set) and at `small` (the 100-secret data set).

use super::Team;
use crate::client::{oneshot, wait_ready, RequestSet};
use crate::process::{free_addr, output, Proc};
use crate::workloads::{secret_name, value};
use anyhow::Context;
use bytes::Bytes;
use hyper::header::HeaderName;
use hyper::{Method, StatusCode};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-vault-token");

pub struct OpenBao {
    pub addr: SocketAddr,
    token: String,
    proc: Proc,
    // Removed (with the Raft data) when the target is dropped.
    _dir: TempDir,
}

impl OpenBao {
    pub async fn start(bin: &Path, work_dir: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("openbao-")
            .tempdir_in(work_dir)?;
        let raft = dir.path().join("raft");
        std::fs::create_dir(&raft)?;
        let addr = free_addr()?;
        let cluster = free_addr()?;
        let config = dir.path().join("config.hcl");
        std::fs::write(&config, config_hcl(&raft, addr, cluster))?;

        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .arg(format!("-config={}", config.display()))
            .arg("-log-level=warn");
        let mut proc = Proc::spawn("bao server", cmd, &dir.path().join("server.log"))?;

        // Before init the health endpoint answers 501; any answer means the
        // listener is up.
        let start = tokio::time::Instant::now();
        while oneshot(addr, Method::GET, "/v1/sys/health", &[], Bytes::new())
            .await
            .is_err()
        {
            proc.check_alive()?;
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "bao server did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let bao = |args: &[&str]| {
            let mut cmd = tokio::process::Command::new(bin);
            cmd.args(args)
                .env("BAO_ADDR", format!("http://{addr}"))
                .env_remove("BAO_TOKEN");
            cmd
        };
        let init = output(
            "bao operator init",
            &mut bao(&[
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ]),
        )
        .await?;
        let init: serde_json::Value = serde_json::from_str(&init)?;
        let unseal_key = init["unseal_keys_b64"][0]
            .as_str()
            .context("no unseal key in `bao operator init` output")?;
        let token = init["root_token"]
            .as_str()
            .context("no root token in `bao operator init` output")?
            .to_string();
        output(
            "bao operator unseal",
            &mut bao(&["operator", "unseal", unseal_key]),
        )
        .await?;
        // 200 from the health endpoint means initialized, unsealed and the
        // active node (a Raft leader was elected).
        wait_ready(addr, "/v1/sys/health", Duration::from_secs(60), || {
            proc.check_alive()
        })
        .await?;
        for mount in ["secret", "small"] {
            let path = format!("-path={mount}");
            let mut cmd = bao(&["secrets", "enable", &path, "kv-v2"]);
            output("bao secrets enable", cmd.env("BAO_TOKEN", &token)).await?;
        }
        let bao = OpenBao {
            addr,
            token,
            proc,
            _dir: dir,
        };
        bao.wait_writable().await?;
        Ok(bao)
    }

    /// A new KV v2 mount answers errors for a moment while it sets itself
    /// up; wait until a write to each mount succeeds. The probe writes the
    /// first name of each data set, which loading overwrites anyway.
    async fn wait_writable(&self) -> anyhow::Result<()> {
        let start = tokio::time::Instant::now();
        for team in [Team::Big, Team::Small] {
            let body = serde_json::to_vec(&serde_json::json!({"data": {"value": value()}}))?;
            let path = format!("/v1/{}/data/{}", mount(team), secret_name(0));
            loop {
                let headers = [(TOKEN_HEADER, self.token.as_str())];
                let (status, reply) =
                    oneshot(self.addr, Method::POST, &path, &headers, body.clone()).await?;
                if status == StatusCode::OK {
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(30),
                    "OpenBao KV mount not writable: {status} {}",
                    String::from_utf8_lossy(&reply)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `POST /v1/<mount>/data/<name>` with `{"data": {"value": ...}}`.
    pub fn upserts(&self, team: Team, names: Range<usize>) -> anyhow::Result<RequestSet> {
        let mut set = RequestSet::new(self.addr, Method::POST, (TOKEN_HEADER, &self.token))?;
        let body = serde_json::to_vec(&serde_json::json!({"data": {"value": value()}}))?;
        let body = Bytes::from(body);
        for i in names {
            set.push(
                &format!("/v1/{}/data/{}", mount(team), secret_name(i)),
                body.clone(),
            )?;
        }
        Ok(set)
    }

    /// `GET /v1/<mount>/data/<name>` for each name, all of them in one unit:
    /// KV v2 returns one secret per request, so reading a team of 100
    /// values is 100 requests, sent in sequence on one connection.
    pub fn reads(&self, team: Team, names: Range<usize>) -> anyhow::Result<RequestSet> {
        let mut set = RequestSet::new(self.addr, Method::GET, (TOKEN_HEADER, &self.token))?;
        for i in names {
            set.push(
                &format!("/v1/{}/data/{}", mount(team), secret_name(i)),
                Bytes::new(),
            )?;
        }
        let n = set.len();
        Ok(set.with_unit(n))
    }

    /// `LIST /v1/<mount>/metadata/`: the key names of the mount.
    pub fn list(&self, team: Team) -> anyhow::Result<RequestSet> {
        let method = Method::from_bytes(b"LIST")?;
        let mut set = RequestSet::new(self.addr, method, (TOKEN_HEADER, &self.token))?;
        set.push(&format!("/v1/{}/metadata/", mount(team)), Bytes::new())?;
        Ok(set)
    }

    pub async fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(30)).await;
    }
}

fn mount(team: Team) -> &'static str {
    match team {
        Team::Big => "secret",
        Team::Small => "small",
    }
}

/// Single-node Raft on disk, plain HTTP on loopback. Raft fsyncs its log
/// before a write is acknowledged, like Tessera's commits.
fn config_hcl(raft: &Path, addr: SocketAddr, cluster: SocketAddr) -> String {
    let raft: PathBuf = raft.to_path_buf();
    format!(
        r#"storage "raft" {{
  path    = "{raft}"
  node_id = "bench"
}}
listener "tcp" {{
  address         = "{addr}"
  cluster_address = "{cluster}"
  tls_disable     = true
}}
api_addr     = "http://{addr}"
cluster_addr = "http://{cluster}"
ui           = false
"#,
        raft = raft.display()
    )
}
