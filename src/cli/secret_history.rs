//! `tessera secrets versions|restore|destroy|consumers|deleted|undelete`:
//! a secret's history over the extension routes. Like every secrets
//! command, nothing here ever prints or sends a value.

use super::admin::seg;
use super::remote::Remote;
use crate::wire::management::TeamsView;
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
async fn writer_names(r: &Remote, listing: &Value) -> HashMap<String, String> {
    let mut names = HashMap::new();
    if !r.is_text() {
        return names;
    }
    let versions = listing["versions"].as_array().map(Vec::as_slice);
    for version in versions.unwrap_or_default() {
        let Some(id) = version["created_by"]["user_id"].as_str() else {
            continue;
        };
        if names.contains_key(id) {
            continue;
        }
        let path = format!("/v1/users/{}", seg(id));
        if let Ok(user) = r.call(Method::GET, &path, None).await {
            if let Some(email) = user["email"].as_str() {
                names.insert(id.to_owned(), email.to_owned());
            }
        }
    }
    names
}

/// One cell of the WRITTEN_BY column: the user (email when known, else id)
/// and the key it wrote through, e.g. `ana@example.com (key AbCd1234)`.
fn written_by(actor: &Value, names: &HashMap<String, String>) -> String {
    let user = actor["user_id"]
        .as_str()
        .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_owned()));
    let key = actor["key_prefix"].as_str();
    match (user, key) {
        (Some(u), Some(k)) => format!("{u} (key {k})"),
        (Some(u), None) => u,
        (None, Some(k)) => format!("key {k}"),
        (None, None) => "-".to_owned(),
    }
}

pub async fn run(r: &Remote, cmd: HistoryCommand) -> anyhow::Result<()> {
    match cmd {
        HistoryCommand::Versions { name, team } => {
            let team = team_id(r, team).await?;
            let path = format!("/v1/teams/{}/secrets/{}/versions", seg(&team), seg(&name));
            let mut v = r.call(Method::GET, &path, None).await?;
            // The table shows who wrote each version and how many consumers
            // hold it.
            let writers = writer_names(r, &v).await;
            if let Some(versions) = v["versions"].as_array_mut() {
                for version in versions {
                    let held = version["consumers"].as_array().map_or(0, Vec::len);
                    version["held_by"] = Value::from(held);
                    version["written_by"] =
                        Value::from(written_by(&version["created_by"], &writers));
                }
            }
            let columns = [
                "version",
                "created_at",
                "written_by",
                "current",
                "destroyed",
                "held_by",
            ];
            r.print_list(&v, &v["versions"], &columns);
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
            r.print_one(&v, &["name", "id", "version"]);
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
            if let Some(w) = v["warning"].as_str() {
                eprintln!("warning: {w}");
            }
            r.print_one(&v, &["name", "version", "destroyed"]);
        }
        HistoryCommand::Consumers { name, team } => {
            let team = team_id(r, team).await?;
            let path = format!("/v1/teams/{}/secrets/{}/consumers", seg(&team), seg(&name));
            let v = r.call(Method::GET, &path, None).await?;
            if r.is_text() {
                println!("{}", v["summary"].as_str().unwrap_or_default());
            }
            if let Some(w) = v["warning"].as_str() {
                eprintln!("warning: {w}");
            }
            let columns = [
                "key_prefix",
                "instance",
                "kind",
                "version",
                "last_seen_at",
                "client",
            ];
            r.print_list(&v, &v["consumers"], &columns);
        }
        HistoryCommand::Deleted { team } => {
            let team = team_id(r, team).await?;
            let path = format!("/v1/teams/{}/deleted_secrets", seg(&team));
            let v = r.call(Method::GET, &path, None).await?;
            let columns = ["name", "id", "version", "deleted_at", "purge_after"];
            r.print_list(&v, &v["deleted_secrets"], &columns);
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
            r.print_one(&v, &["name", "id", "version"]);
        }
    }
    Ok(())
}
