//! The servers under test. Each knows how to start, how its upsert and list
//! requests look, and how to stop; the load client treats them all alike.

pub mod ceiling;
pub mod openbao;
pub mod tessera;

use crate::client::RequestSet;
use crate::workloads::{fresh_value, secret_name, value, NAMES, SMALL_TEAM_SIZE};
use anyhow::Context;
use hyper::header::AUTHORIZATION;
use hyper::Method;
use std::net::SocketAddr;
use std::ops::Range;

/// Target names, as they appear in the tables and the JSON.
pub const TESSERA_SQLITE: &str = "tessera-sqlite";
pub const TESSERA_POSTGRES: &str = "tessera-postgres";
pub const OPENBAO: &str = "openbao";
pub const CEILING: &str = "ceiling";

/// Which data set a request addresses.
#[derive(Debug, Clone, Copy)]
pub enum Team {
    /// The team the upserts write and list-10k lists.
    Big,
    /// The team of 100 secrets that list-100 lists.
    Small,
}

pub enum Kind {
    Tessera(tessera::Tessera),
    OpenBao(openbao::OpenBao),
    Ceiling(ceiling::Ceiling),
}

pub struct Target {
    pub name: String,
    pub kind: Kind,
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        match &self.kind {
            Kind::Tessera(t) => t.addr,
            Kind::OpenBao(b) => b.addr,
            Kind::Ceiling(c) => c.addr,
        }
    }

    pub fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Tessera(t) => t.pid(),
            Kind::OpenBao(b) => b.pid(),
            Kind::Ceiling(c) => c.pid(),
        }
    }

    pub fn is_tessera(&self) -> bool {
        matches!(self.kind, Kind::Tessera(_))
    }

    /// Upserts of `names` (indices into the benchmark's name sequence).
    pub fn upsert(&self, team: Team, names: Range<usize>) -> anyhow::Result<RequestSet> {
        match &self.kind {
            Kind::Tessera(t) => {
                let (team_id, key) = t.tenant(team);
                baseten_upserts(self.addr(), key, team_id, names)
            }
            Kind::OpenBao(b) => b.upserts(team, names),
            Kind::Ceiling(_) => {
                baseten_upserts(self.addr(), ceiling::KEY, ceiling::team_id(team), names)
            }
        }
    }

    /// The list request for `team` (a one-item set).
    pub fn list(&self, team: Team) -> anyhow::Result<RequestSet> {
        match &self.kind {
            Kind::Tessera(t) => {
                let (team_id, key) = t.tenant(team);
                baseten_list(self.addr(), key, team_id)
            }
            Kind::OpenBao(b) => b.list(team),
            Kind::Ceiling(_) => baseten_list(self.addr(), ceiling::KEY, ceiling::team_id(team)),
        }
    }

    /// `count` upserts of the big team's names in turn, each with a value of
    /// its own (`fresh_value(seed + i)`): every one is a real change, so the
    /// team's cached listing never stays valid. Tessera only (neighbour).
    pub fn fresh_upserts(&self, count: usize, seed: u64) -> anyhow::Result<RequestSet> {
        let Kind::Tessera(t) = &self.kind else {
            anyhow::bail!("{}: fresh upserts are only built for Tessera", self.name);
        };
        let (team_id, key) = t.tenant(Team::Big);
        let mut set = RequestSet::new(
            self.addr(),
            Method::POST,
            (AUTHORIZATION, &format!("Bearer {key}")),
        )?;
        let path = format!("/v1/teams/{team_id}/secrets");
        for i in 0..count {
            let body = serde_json::json!({
                "name": secret_name(i % NAMES),
                "value": fresh_value(seed + i as u64),
            });
            set.push(&path, serde_json::to_vec(&body)?)?;
        }
        Ok(set)
    }

    /// One fetch of every value of the small team, or None when the target
    /// has no equivalent (the ceiling stores nothing).
    pub fn fetch_small(&self) -> anyhow::Result<Option<RequestSet>> {
        match &self.kind {
            Kind::Tessera(t) => {
                let key = t
                    .read_key()
                    .context("no WORKSPACE_READ_SECRETS key was created")?;
                let mut set = RequestSet::new(
                    self.addr(),
                    Method::GET,
                    (AUTHORIZATION, &format!("Bearer {key}")),
                )?;
                set.push("/runtime/v1/secrets", Vec::new())?;
                Ok(Some(set))
            }
            Kind::OpenBao(b) => Ok(Some(b.reads(Team::Small, 0..SMALL_TEAM_SIZE)?)),
            Kind::Ceiling(_) => Ok(None),
        }
    }

    pub async fn stop(&mut self) {
        match &mut self.kind {
            Kind::Tessera(t) => t.stop().await,
            Kind::OpenBao(b) => b.stop().await,
            Kind::Ceiling(c) => c.stop().await,
        }
    }
}

/// `POST /v1/teams/{team_id}/secrets` with `{"name", "value"}`: the
/// Baseten-shaped upsert that Tessera and the ceiling both serve.
fn baseten_upserts(
    addr: SocketAddr,
    key: &str,
    team_id: &str,
    names: Range<usize>,
) -> anyhow::Result<RequestSet> {
    let mut set = RequestSet::new(
        addr,
        Method::POST,
        (AUTHORIZATION, &format!("Bearer {key}")),
    )?;
    let path = format!("/v1/teams/{team_id}/secrets");
    let value = value();
    for i in names {
        let body = serde_json::json!({"name": secret_name(i), "value": value});
        set.push(&path, serde_json::to_vec(&body)?)?;
    }
    Ok(set)
}

fn baseten_list(addr: SocketAddr, key: &str, team_id: &str) -> anyhow::Result<RequestSet> {
    let mut set = RequestSet::new(addr, Method::GET, (AUTHORIZATION, &format!("Bearer {key}")))?;
    set.push(&format!("/v1/teams/{team_id}/secrets"), Vec::new())?;
    Ok(set)
}
