//! `tessera secrets versions|restore|destroy|consumers|deleted|undelete`:
//! a secret's history over the extension routes. Like every secrets
//! command, nothing here ever prints or sends a value.

use super::admin::seg;
use super::remote::{read, Remote, Row};
use crate::wire::history::{
    Actor, DeletedSecrets, DestroyedVersion, SecretConsumers, SecretVersion, SecretVersions,
    VersionInfo,
};
use crate::wire::management::{TeamsView, UserView};
use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// List a secret's versions (newest first): who wrote each, whether it
    /// was destroyed, how many consumers hold it.
    Versions {
        name: String,
        /// Team id (default: your key's team, or the default team).
        #[arg(long)]
        team: Option<String>,
    },
    /// Make an earlier version the current one (as a new version). Team or
    /// org admins.
    Restore {
        name: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        team: Option<String>,
    },
    /// Destroy a previous version's value for good (its metadata stays).
    /// Team or org admins.
    Destroy {
        name: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        team: Option<String>,
        /// Destroy it even though a consumer seen in the last 10 minutes
        /// still holds it (one-shot `tessera run`s never block a destroy).
        #[arg(long)]
        force: bool,
    },
    /// Who holds which version of a secret.
    Consumers {
        name: String,
        #[arg(long)]
        team: Option<String>,
    },
    /// List deleted secrets that can still be undeleted.
    Deleted {
        #[arg(long)]
        team: Option<String>,
    },
    /// Undelete a secret (the most recently deleted of that name, or --id).
    /// Team or org admins.
    Undelete {
        name: String,
        #[arg(long)]
        team: Option<String>,
        /// Which deleted secret of that name.
        #[arg(long)]
        id: Option<String>,
    },
}

/// The team a command acts on: the one given, else the one the routes
/// without a team id would use (a team key's team: the only one it sees;
/// a personal key's: the organization's default team).
async fn team_id(r: &Remote, team: Option<String>) -> anyhow::Result<String> {
    if let Some(t) = team {
        return Ok(t);
    }
    let list = r.call(Method::GET, "/v1/teams", None).await?;
    let list = serde_json::from_value::<TeamsView>(list)
        .map(|t| t.teams)
        .unwrap_or_default();
    let chosen =
        list.iter()
            .find(|t| t.default)
            .or(if list.len() == 1 { list.first() } else { None });
    match chosen {
        Some(team) => Ok(team.id.clone()),
        None => bail!("cannot tell which team you mean; pass --team TEAM_ID"),
    }
}

/// The email of each user who wrote one of the listed versions, where the
/// caller may read the directory (otherwise the table shows the user's id).
async fn writer_names(r: &Remote, listing: &SecretVersions) -> HashMap<String, String> {
    let mut names = HashMap::new();
    if !r.is_text() {
        return names;
    }
    for version in &listing.versions {
        let Some(id) = version.created_by.user_id.as_deref() else {
            continue;
        };
        if names.contains_key(id) {
            continue;
        }
        let path = format!("/v1/users/{}", seg(id));
        if let Ok(user) = r.call(Method::GET, &path, None).await {
            if let Ok(UserView {
                email: Some(email), ..
            }) = read::<UserView>(&user)
            {
                names.insert(id.to_owned(), email);
            }
        }
    }
    names
}

/// One cell of the WRITTEN_BY column: the user (email when known, else id)
/// and the key it wrote through, e.g. `ana@example.com (key AbCd1234)`.
fn written_by(actor: &Actor, names: &HashMap<String, String>) -> String {
    let user = actor
        .user_id
        .as_ref()
        .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()));
    match (user, actor.key_prefix.as_deref()) {
        (Some(u), Some(k)) => format!("{u} (key {k})"),
        (Some(u), None) => u,
        (None, Some(k)) => format!("key {k}"),
        (None, None) => "-".to_owned(),
    }
}

/// A line of the versions table: a version with its writer's name looked
/// up and its consumers counted.
struct VersionRow {
    version: i64,
    created_at: String,
    written_by: String,
    current: bool,
    destroyed: bool,
    held_by: usize,
}

impl VersionRow {
    fn new(v: &VersionInfo, names: &HashMap<String, String>) -> Self {
        Self {
            version: v.version,
            created_at: v.created_at.clone(),
            written_by: written_by(&v.created_by, names),
            current: v.current,
            destroyed: v.destroyed,
            held_by: v.consumers.len(),
        }
    }
}

impl Row for VersionRow {
    const COLUMNS: &'static [&'static str] = &[
        "version",
        "created_at",
        "written_by",
        "current",
        "destroyed",
        "held_by",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.version.to_string(),
            self.created_at.clone(),
            self.written_by.clone(),
            self.current.to_string(),
            self.destroyed.to_string(),
            self.held_by.to_string(),
        ]
    }
}

/// The versions listing as `--output json` has always printed it: the
/// server's answer with the table's two computed columns (`held_by`,
/// `written_by`) added to each version, so scripts reading them keep working.
fn with_computed_columns(mut listing: Value, rows: &[VersionRow]) -> Value {
    if let Some(versions) = listing.get_mut("versions").and_then(Value::as_array_mut) {
        for (version, row) in versions.iter_mut().zip(rows) {
            if let Some(fields) = version.as_object_mut() {
                fields.insert("held_by".to_owned(), Value::from(row.held_by));
                fields.insert("written_by".to_owned(), Value::from(row.written_by.clone()));
            }
        }
    }
    listing
}

pub async fn run(r: &Remote, cmd: HistoryCommand) -> anyhow::Result<()> {
    match cmd {
        HistoryCommand::Versions { name, team } => {
            let team = team_id(r, team).await?;
            let path = format!("/v1/teams/{}/secrets/{}/versions", seg(&team), seg(&name));
            let v = r.call(Method::GET, &path, None).await?;
            let listing = read::<SecretVersions>(&v)?;
            // The table shows who wrote each version and how many consumers
            // hold it.
            let writers = writer_names(r, &listing).await;
            let rows: Vec<VersionRow> = listing
                .versions
                .iter()
                .map(|version| VersionRow::new(version, &writers))
                .collect();
            r.print_rows(&with_computed_columns(v, &rows), &rows);
        }
        HistoryCommand::Restore {
            name,
            version,
            team,
        } => {
            let team = team_id(r, team).await?;
            let path = format!(
                "/v1/teams/{}/secrets/{}/versions/{version}/restore",
                seg(&team),
                seg(&name)
            );
            let v = r.call(Method::POST, &path, None).await?;
            r.print_row(&v, &read::<SecretVersion>(&v)?);
        }
        HistoryCommand::Destroy {
            name,
            version,
            team,
            force,
        } => {
            let team = team_id(r, team).await?;
            let path = format!(
                "/v1/teams/{}/secrets/{}/versions/{version}?force={force}",
                seg(&team),
                seg(&name)
            );
            let rotate = format!("(tessera secrets set {name} --destroy-previous)");
            let v = r
                .call_as(
                    Method::DELETE,
                    &path,
                    None,
                    &[
                        ("with force=true", "with --force"),
                        ("(with destroy_previous)", &rotate),
                    ],
                )
                .await?;
            let destroyed = read::<DestroyedVersion>(&v)?;
            if let Some(w) = &destroyed.warning {
                eprintln!("warning: {w}");
            }
            r.print_row(&v, &destroyed);
        }
        HistoryCommand::Consumers { name, team } => {
            let team = team_id(r, team).await?;
            let path = format!("/v1/teams/{}/secrets/{}/consumers", seg(&team), seg(&name));
            let v = r.call(Method::GET, &path, None).await?;
            let held = read::<SecretConsumers>(&v)?;
            if r.is_text() {
                println!("{}", held.summary);
            }
            if let Some(w) = &held.warning {
                eprintln!("warning: {w}");
            }
            r.print_rows(&v, &held.consumers);
        }
        HistoryCommand::Deleted { team } => {
            let team = team_id(r, team).await?;
            let path = format!("/v1/teams/{}/deleted_secrets", seg(&team));
            let v = r.call(Method::GET, &path, None).await?;
            r.print_rows(&v, &read::<DeletedSecrets>(&v)?.deleted_secrets);
        }
        HistoryCommand::Undelete { name, team, id } => {
            let team = team_id(r, team).await?;
            let mut path = format!(
                "/v1/teams/{}/deleted_secrets/{}/restore",
                seg(&team),
                seg(&name)
            );
            if let Some(id) = id {
                path.push_str(&format!("?id={}", seg(&id)));
            }
            let v = r.call(Method::POST, &path, None).await?;
            r.print_row(&v, &read::<SecretVersion>(&v)?);
        }
    }
    Ok(())
}
