//! Operators' commands against a running server: teams, users, memberships
//! and API keys. Each one is a single request to the HTTP API, so the server
//! decides permissions exactly as for any other client.

use super::remote::{read, Output, Remote, RemoteArgs};
use crate::wire::management::{
    ApiKeyList, ApiKeyTombstoneView, MemberInfo, MemberList, MembershipTombstone, NewApiKeyView,
    TeamTombstoneView, TeamView, TeamsView, UserAdminInfo, UserTombstoneView, UsersView,
};
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

/// What to do with the API keys a user answers for when a change takes away
/// the authority they were issued under. Without either flag such a change
/// is refused, listing the keys.
#[derive(Debug, Clone, clap::Args)]
pub struct HandoverArgs {
    /// Revoke the keys the user answers for that would outlive their
    /// authority (on every node within a second).
    #[arg(long, conflicts_with = "transfer_keys_to")]
    revoke_keys: bool,
    /// Make this user (an org admin, or an admin of the keys' team) answer
    /// for those keys instead.
    #[arg(long, value_name = "USER_ID")]
    transfer_keys_to: Option<String>,
}

impl HandoverArgs {
    /// The query string the API takes for these flags ("" for none).
    fn query(&self) -> String {
        match (&self.transfer_keys_to, self.revoke_keys) {
            (Some(to), _) => format!("?transfer_keys_to={}", seg(to)),
            (None, true) => "?revoke_keys=true".to_owned(),
            (None, false) => String::new(),
        }
    }
}

/// A refusal for keys that would outlive their answerer's authority, told in
/// the CLI's terms: the keys, and the flags that say what to do with them.
fn explain_handover(e: anyhow::Error) -> anyhow::Error {
    let Some(refused) = e.downcast_ref::<super::remote::Refused>() else {
        return e;
    };
    let Some(keys) = refused.body["keys"].as_array() else {
        return e;
    };
    let listed: Vec<String> = keys
        .iter()
        .map(|k| {
            let team = k["team_id"]
                .as_str()
                .map(|t| format!(", team {t}"))
                .unwrap_or_default();
            format!(
                "  {} ({}{team}){}",
                k["prefix"].as_str().unwrap_or("?"),
                k["type"].as_str().unwrap_or("?"),
                k["name"]
                    .as_str()
                    .map(|n| format!(" {n:?}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let transfer_refused = refused.body["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("the user named by transfer_keys_to"));
    let what = if transfer_refused {
        "the user named by --transfer-keys-to may not issue these keys, so cannot answer for them \
         (an org admin may answer for any key, a team admin for the team's keys):"
    } else {
        "refused: no key outlives the authority of the person who answers for it, and this change \
         would take that authority away for these keys:"
    };
    anyhow::anyhow!(
        "CONFLICT ({}): {what}\n{}\nPass --revoke-keys to revoke them, or --transfer-keys-to USER_ID to make \
         another user (an org admin, or an admin of their team) answer for them.",
        refused.status,
        listed.join("\n")
    )
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
    /// Delete a user with its personal keys (and, as the flags say, the
    /// keys it created).
    Delete {
        user_id: String,
        #[command(flatten)]
        keys: HandoverArgs,
    },
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
        #[command(flatten)]
        keys: HandoverArgs,
    },
    /// Remove a user from a team.
    Remove {
        team_id: String,
        user_id: String,
        #[command(flatten)]
        keys: HandoverArgs,
    },
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
        /// Narrow a WORKSPACE_READ_SECRETS key to this secret name; repeatable
        /// (without it the key reads every secret of its team).
        #[arg(long = "secret-name")]
        secret_names: Vec<String>,
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

/// Prints a newly created key: alone on its line in text and id modes so
/// scripts can capture it (its prefix is the part before the dot).
fn print_key(remote: &Remote, v: &Value) -> anyhow::Result<()> {
    let key: NewApiKeyView = read(v)?;
    match remote.output {
        Output::Json => println!("{v}"),
        Output::Text | Output::Id => println!("{}", key.api_key),
    }
    Ok(())
}

pub async fn teams(args: &RemoteArgs, cmd: TeamCommand) -> anyhow::Result<()> {
    let r = Remote::new(args)?;
    match cmd {
        TeamCommand::List => {
            let v = r.call(Method::GET, "/v1/teams", None).await?;
            r.print_rows(&v, &read::<TeamsView>(&v)?.teams);
        }
        TeamCommand::Create { name } => {
            let v = r
                .call(Method::POST, "/v1/teams", Some(json!({"name": name})))
                .await?;
            r.print_row(&v, &read::<TeamView>(&v)?);
        }
        TeamCommand::Rename { team_id, name } => {
            let v = r
                .call(
                    Method::PATCH,
                    &format!("/v1/teams/{}", seg(&team_id)),
                    Some(json!({"name": name})),
                )
                .await?;
            r.print_row(&v, &read::<TeamView>(&v)?);
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
            r.print_row(&v, &read::<TeamTombstoneView>(&v)?);
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
                let page: UsersView = read(&r.call(Method::GET, &path, None).await?)?;
                items.extend(page.items);
                match page.pagination.cursor {
                    Some(c) if page.pagination.has_more => cursor = Some(c),
                    _ => break,
                }
            }
            // The pages' items as the server wrote them: the server writes
            // this very type.
            r.print_rows(&json!({ "items": items }), &items);
        }
        UserCommand::Create { email, name, role } => {
            let v = r
                .call(
                    Method::POST,
                    "/v1/users",
                    Some(json!({"email": email, "name": name, "role": role})),
                )
                .await?;
            r.print_row(&v, &read::<UserAdminInfo>(&v)?);
        }
        UserCommand::Delete { user_id, keys } => {
            let v = r
                .call(
                    Method::DELETE,
                    &format!("/v1/users/{}{}", seg(&user_id), keys.query()),
                    None,
                )
                .await
                .map_err(explain_handover)?;
            r.print_row(&v, &read::<UserTombstoneView>(&v)?);
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
            r.print_rows(&v, &read::<MemberList>(&v)?.members);
        }
        MemberCommand::Add {
            team_id,
            user_id,
            role,
            keys,
        } => {
            let path = format!(
                "/v1/teams/{}/members/{}{}",
                seg(&team_id),
                seg(&user_id),
                keys.query()
            );
            let v = r
                .call(Method::PUT, &path, Some(json!({"role": role})))
                .await
                .map_err(explain_handover)?;
            r.print_row(&v, &read::<MemberInfo>(&v)?);
        }
        MemberCommand::Remove {
            team_id,
            user_id,
            keys,
        } => {
            let path = format!(
                "/v1/teams/{}/members/{}{}",
                seg(&team_id),
                seg(&user_id),
                keys.query()
            );
            let v = r
                .call(Method::DELETE, &path, None)
                .await
                .map_err(explain_handover)?;
            r.print_row(&v, &read::<MembershipTombstone>(&v)?);
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
            r.print_rows(&v, &read::<ApiKeyList>(&v)?.keys);
        }
        KeyCommand::Create {
            key_type,
            name,
            team,
            model_ids,
            secret_names,
        } => {
            let mut body = json!({"type": key_type, "name": name});
            if !model_ids.is_empty() {
                body["model_ids"] = json!(model_ids);
            }
            if !secret_names.is_empty() {
                body["secret_names"] = json!(secret_names);
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
            print_key(&r, &v)?;
        }
        KeyCommand::Mint { user_id, name } => {
            let v = r
                .call(
                    Method::POST,
                    &format!("/v1/users/{}/api_keys", seg(&user_id)),
                    Some(json!({"name": name})),
                )
                .await?;
            print_key(&r, &v)?;
        }
        KeyCommand::Revoke { prefix } => {
            let v = r
                .call(
                    Method::DELETE,
                    &format!("/v1/api_keys/{}", seg(&prefix)),
                    None,
                )
                .await?;
            r.print_row(&v, &read::<ApiKeyTombstoneView>(&v)?);
        }
    }
    Ok(())
}
