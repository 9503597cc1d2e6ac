//! Operators' commands against a running server: teams, users, memberships
//! and API keys. Each one is a single request to the HTTP API, so the server
//! decides permissions exactly as for any other client.

use super::remote::{Output, Remote, RemoteArgs};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

/// Percent-encodes one path segment.
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const TEAM_COLUMNS: &[&str] = &["id", "name", "default", "created_at"];
const USER_COLUMNS: &[&str] = &["user_id", "email", "name", "role"];
const KEY_COLUMNS: &[&str] = &[
    "prefix",
    "type",
    "name",
    "team_name",
    "owner",
    "created_at",
    "last_used_at",
];

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// List the teams you can see.
    List,
    /// Create a team (org admins).
    Create { name: String },
    /// Rename a team.
    Rename { team_id: String, name: String },
    /// Delete a team; with --cascade also its secrets.
    Delete {
        team_id: String,
        #[arg(long)]
        cascade: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users (all pages).
    List {
        #[arg(long)]
        email: Option<String>,
    },
    /// Create a user (org admins); joins the default team.
    Create {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// ADMIN or MEMBER.
        #[arg(long, default_value = "MEMBER")]
        role: String,
    },
    /// Delete a user with its personal keys.
    Delete { user_id: String },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List a team's members.
    List { team_id: String },
    /// Add a user to a team, or change its role.
    Add {
        team_id: String,
        user_id: String,
        /// ADMIN or MEMBER.
        #[arg(long, default_value = "MEMBER")]
        role: String,
    },
    /// Remove a user from a team.
    Remove { team_id: String, user_id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the keys you may manage.
    List {
        /// Only keys of this type.
        #[arg(long = "type")]
        key_type: Option<String>,
    },
    /// Create a key; prints it (once) as the only line.
    Create {
        /// PERSONAL, WORKSPACE_MANAGE_ALL, WORKSPACE_INVOKE, ...
        #[arg(long = "type")]
        key_type: String,
        #[arg(long)]
        name: Option<String>,
        /// Team of a team-bound key (default: your team or the default team).
        #[arg(long)]
        team: Option<String>,
        /// Model scope (WORKSPACE_INVOKE, WORKSPACE_EXPORT_METRICS); repeatable.
        #[arg(long = "model-id")]
        model_ids: Vec<String>,
    },
    /// Mint a personal key for a user (org admins); prints it as the only line.
    Mint {
        user_id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke a key by prefix.
    Revoke { prefix: String },
}

/// Prints a newly created key: alone on its line in text mode so scripts can
/// capture it.
fn print_key(remote: &Remote, v: &Value) {
    match remote.output {
        Output::Json => println!("{v}"),
        Output::Text => println!("{}", v["api_key"].as_str().unwrap_or_default()),
    }
}

pub async fn teams(args: &RemoteArgs, cmd: TeamCommand) -> anyhow::Result<()> {
    let r = Remote::new(args)?;
    match cmd {
        TeamCommand::List => {
            let v = r.call(Method::GET, "/v1/teams", None).await?;
            r.print_list(&v, &v["teams"], TEAM_COLUMNS);
        }
        TeamCommand::Create { name } => {
            let v = r
                .call(Method::POST, "/v1/teams", Some(json!({"name": name})))
                .await?;
            r.print_one(&v, TEAM_COLUMNS);
        }
        TeamCommand::Rename { team_id, name } => {
            let v = r
                .call(
                    Method::PATCH,
                    &format!("/v1/teams/{}", seg(&team_id)),
                    Some(json!({"name": name})),
                )
                .await?;
            r.print_one(&v, TEAM_COLUMNS);
        }
        TeamCommand::Delete { team_id, cascade } => {
            let v = r
                .call_as(
                    Method::DELETE,
                    &format!("/v1/teams/{}?cascade={cascade}", seg(&team_id)),
                    None,
                    &[("pass cascade=true", "pass --cascade")],
                )
                .await?;
            r.print_one(&v, &["id", "name", "deleted_secrets"]);
        }
    }
    Ok(())
}

pub async fn users(args: &RemoteArgs, cmd: UserCommand) -> anyhow::Result<()> {
    let r = Remote::new(args)?;
    match cmd {
        UserCommand::List { email } => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = "/v1/users?limit=1000".to_owned();
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", seg(c)));
                }
                if let Some(e) = &email {
                    path.push_str(&format!("&email={}", seg(e)));
                }
                let page = r.call(Method::GET, &path, None).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["pagination"]["cursor"].as_str() {
                    Some(c) if page["pagination"]["has_more"] == true => {
                        cursor = Some(c.to_owned())
                    }
                    _ => break,
                }
            }
            let all = Value::Array(items);
            r.print_list(&json!({"items": all}), &all, &["user_id", "email", "name"]);
        }
        UserCommand::Create { email, name, role } => {
            let v = r
                .call(
                    Method::POST,
                    "/v1/users",
                    Some(json!({"email": email, "name": name, "role": role})),
                )
                .await?;
            r.print_one(&v, USER_COLUMNS);
        }
        UserCommand::Delete { user_id } => {
            let v = r
                .call(
                    Method::DELETE,
                    &format!("/v1/users/{}", seg(&user_id)),
                    None,
                )
                .await?;
            r.print_one(&v, &["user_id"]);
        }
    }
    Ok(())
}

pub async fn members(args: &RemoteArgs, cmd: MemberCommand) -> anyhow::Result<()> {
    let r = Remote::new(args)?;
    match cmd {
        MemberCommand::List { team_id } => {
            let v = r
                .call(
                    Method::GET,
                    &format!("/v1/teams/{}/members", seg(&team_id)),
                    None,
                )
                .await?;
            r.print_list(&v, &v["members"], USER_COLUMNS);
        }
        MemberCommand::Add {
            team_id,
            user_id,
            role,
        } => {
            let path = format!("/v1/teams/{}/members/{}", seg(&team_id), seg(&user_id));
            let v = r
                .call(Method::PUT, &path, Some(json!({"role": role})))
                .await?;
            r.print_one(&v, USER_COLUMNS);
        }
        MemberCommand::Remove { team_id, user_id } => {
            let path = format!("/v1/teams/{}/members/{}", seg(&team_id), seg(&user_id));
            let v = r.call(Method::DELETE, &path, None).await?;
            r.print_one(&v, &["team_id", "user_id"]);
        }
    }
    Ok(())
}

pub async fn keys(args: &RemoteArgs, cmd: KeyCommand) -> anyhow::Result<()> {
    let r = Remote::new(args)?;
    match cmd {
        KeyCommand::List { key_type } => {
            let path = match key_type {
                Some(t) => format!("/v1/api_keys?type={}", seg(&t)),
                None => "/v1/api_keys".to_owned(),
            };
            let v = r.call(Method::GET, &path, None).await?;
            r.print_list(&v, &v["keys"], KEY_COLUMNS);
        }
        KeyCommand::Create {
            key_type,
            name,
            team,
            model_ids,
        } => {
            let mut body = json!({"type": key_type, "name": name});
            if !model_ids.is_empty() {
                body["model_ids"] = json!(model_ids);
            }
            let path = match team {
                Some(t) => format!("/v1/teams/{}/api_keys", seg(&t)),
                None => "/v1/api_keys".to_owned(),
            };
            let v = r
                .call_as(
                    Method::POST,
                    &path,
                    Some(body),
                    &[
                        ("model_ids is only allowed", "--model-id is only allowed"),
                        (
                            "create them with POST /v1/api_keys",
                            "create them without --team",
                        ),
                    ],
                )
                .await?;
            print_key(&r, &v);
        }
        KeyCommand::Mint { user_id, name } => {
            let v = r
                .call(
                    Method::POST,
                    &format!("/v1/users/{}/api_keys", seg(&user_id)),
                    Some(json!({"name": name})),
                )
                .await?;
            print_key(&r, &v);
        }
        KeyCommand::Revoke { prefix } => {
            let v = r
                .call(
                    Method::DELETE,
                    &format!("/v1/api_keys/{}", seg(&prefix)),
                    None,
                )
                .await?;
            r.print_one(&v, &["prefix"]);
        }
    }
    Ok(())
}
