//! Starts the ceiling server (this same binary, `ceiling` subcommand) as a
//! child process, so it is measured like the other servers: own process,
//! own runtime, competing with the load client for the same cores.

use super::Team;
use crate::client::wait_ready;
use crate::process::{free_addr, Proc};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The ceiling only checks that a credential is present.
pub const KEY: &str = "ceiling";

pub fn team_id(team: Team) -> &'static str {
    match team {
        Team::Big => crate::ceiling::BIG_TEAM,
        Team::Small => crate::ceiling::SMALL_TEAM,
    }
}

pub struct Ceiling {
    pub addr: SocketAddr,
    proc: Proc,
}

impl Ceiling {
    pub async fn start(work_dir: &Path) -> anyhow::Result<Self> {
        let addr = free_addr()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("ceiling").arg("--listen").arg(addr.to_string());
        let mut proc = Proc::spawn("ceiling", cmd, &work_dir.join("ceiling.log"))?;
        wait_ready(addr, "/readyz", Duration::from_secs(10), || {
            proc.check_alive()
        })
        .await?;
        Ok(Ceiling { addr, proc })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub async fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(5)).await;
    }
}
