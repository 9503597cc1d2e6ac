//! The identity aggregate on SQLite: organizations, teams, users and
//! memberships. Writes run on the writer thread, reads on a reader.

use super::keys::insert_key;
use super::{within_quota, SqliteStore};
use crate::audit::{always, if_changed, purge_events, PurgeReason, Purged};
use crate::identity::{
    authority_events, handover, member_row, membership_row, org_name_taken, org_row, team_row,
    user_row, AuthorityOutcome, EMAIL_TAKEN, ORG_COLUMNS, TEAMS_QUOTA, TEAM_COLUMNS, TEAM_GONE,
    TEAM_NAME_TAKEN, USERS_QUOTA, USER_COLUMNS,
};
use crate::keys::{key_row, KEY_COLUMNS};
use crate::row::qualified;
use crate::{
    IdentityStore, NewOrganization, NewTeam, NewUser, StoreError, StoreResult, TeamDeletion,
    UserQuery,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{
    keys_beyond_authority, AdministerTeam, AuthorityChange, DeleteTeam, KeyHandover, OrgAccess,
    ReadTeam, TeamAccess,
};
use tessera_core::domain::names::email_key;
use tessera_core::domain::types::{ApiKeyRecord, Membership, Organization, Team, TeamRole, User};

/// Inserts a team row (organization bootstrap and team creation).
fn insert_team(c: &Connection, t: &Team) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO teams ({TEAM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?
    .execute(params![t.id, t.org_id, t.name, t.is_default, t.created_at])
    .map_err(|e| StoreError::from(e).conflict_as(TEAM_NAME_TAKEN))?;
    Ok(())
}

/// Inserts a user row (organization bootstrap and user creation).
fn insert_user(c: &Connection, u: &User) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO users ({USER_COLUMNS}, email_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?
    .execute(params![
        u.id,
        u.org_id,
        u.email,
        u.name,
        u.role.as_str(),
        u.created_at,
        u.email.as_deref().map(email_key),
    ])
    .map_err(|e| StoreError::from(e).conflict_as(EMAIL_TAKEN))?;
    Ok(())
}

fn set_member(c: &Connection, team_id: &str, user_id: &str, role: TeamRole) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO team_members (team_id, user_id, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
    )?
    .execute(params![team_id, user_id, role.as_str()])?;
    Ok(())
}

/// A user of `org_id` with its memberships, as the writer sees them.
pub(super) fn person(
    c: &Connection,
    org_id: &str,
    user_id: &str,
) -> StoreResult<Option<(User, Vec<Membership>)>> {
    let user = c
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND org_id = ?2"
        ))?
        .query_row([user_id, org_id], |r| user_row(r))
        .optional()?;
    let Some(user) = user else { return Ok(None) };
    let memberships = c
        .prepare_cached("SELECT team_id, role FROM team_members WHERE user_id = ?1")?
        .query_map([user_id], |r| membership_row(r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((user, memberships)))
}

/// Makes `change` to the user with `apply`, after revoking or handing over
/// the keys it answers for that would outlive its authority (or refuses,
/// changing nothing). Runs on the writer, so nothing changes in between.
fn change_authority(
    c: &Connection,
    org_id: &str,
    user_id: &str,
    change: AuthorityChange<'_>,
    asked: &KeyHandover,
    apply: impl FnOnce(&Connection) -> StoreResult<()>,
) -> StoreResult<AuthorityOutcome> {
    let Some((user, memberships)) = person(c, org_id, user_id)? else {
        return Ok(AuthorityOutcome::NotFound);
    };
    if let AuthorityChange::LeaveTeam { team_id } = change {
        if !memberships.iter().any(|m| m.team_id == team_id) {
            return Ok(AuthorityOutcome::NotFound);
        }
    }
    let keys = c
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE created_by = ?1 AND key_type <> 'PERSONAL'"
        ))?
        .query_map([user_id], |r| key_row(r))?
        .collect::<Result<Vec<ApiKeyRecord>, _>>()?;
    let concerned: Vec<ApiKeyRecord> = keys_beyond_authority(&user, &memberships, change, &keys)
        .into_iter()
        .cloned()
        .collect();
    let successor = match asked {
        KeyHandover::TransferTo(id) if !concerned.is_empty() => person(c, org_id, id)?,
        _ => None,
    };
    let plan = match handover(concerned, asked, successor) {
        Ok(plan) => plan,
        Err(refused) => return Ok(refused),
    };
    for key in &plan.revoke {
        c.prepare_cached("DELETE FROM api_keys WHERE prefix = ?1")?
            .execute([&key.prefix])?;
    }
    if let Some(successor) = &plan.successor {
        for key in &plan.hand_over {
            c.prepare_cached("UPDATE api_keys SET created_by = ?2 WHERE prefix = ?1")?
                .execute([&key.prefix, successor])?;
        }
    }
    apply(c)?;
    Ok(AuthorityOutcome::Done {
        revoked: plan.revoke,
        handed_over: plan.hand_over,
        successor: plan.successor,
    })
}

#[async_trait]
impl IdentityStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn principal_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
        self.readers
            .optional(&sql, [user_id], |r| user_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let sql = "SELECT team_id, role FROM team_members WHERE user_id = ?1";
        self.readers
            .all(sql, [user_id], |r| membership_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn find_team(&self, team_id: &str) -> StoreResult<Option<Team>> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = ?1");
        self.readers
            .optional(&sql, [team_id], |r| team_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn default_team(&self, org_id: &str) -> StoreResult<Team> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = ?1 AND is_default = 1");
        self.readers.one(&sql, [org_id], |r| team_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn organization_count(&self) -> StoreResult<i64> {
        let sql = "SELECT COUNT(*) FROM organizations";
        self.readers.one(sql, [], |r| r.get(0)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_organization(
        &self,
        new: NewOrganization,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.writer
            .write_audited(
                move |c| {
                    c.execute(
                        "INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)",
                        params![new.org.id, new.org.name, new.org.created_at],
                    )
                    .map_err(|e| org_name_taken(e.into(), &new.org))?;
                    insert_team(c, &new.default_team)?;
                    insert_user(c, &new.admin)?;
                    set_member(c, &new.default_team.id, &new.admin.id, TeamRole::Admin)?;
                    insert_key(c, &new.admin_key, &format!("user:{}", new.admin.id))
                },
                always(event),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn organization(&self, org: &OrgAccess) -> StoreResult<Organization> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = ?1");
        self.readers.one(&sql, [org.org_id()], |r| org_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_teams(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let sql = format!(
            "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = ?1 ORDER BY is_default DESC, name"
        );
        self.readers
            .all(&sql, [org.org_id()], |r| team_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_team(
        &self,
        org: &OrgAccess,
        new: NewTeam,
        max_teams: i64,
        event: AuditEvent,
    ) -> StoreResult<Team> {
        let team = new.in_org(org);
        self.writer
            .write_audited(
                move |c| {
                    let count = "SELECT COUNT(*) FROM teams WHERE org_id = ?1";
                    within_quota(c, count, &team.org_id, TEAMS_QUOTA, max_teams)?;
                    insert_team(c, &team)?;
                    Ok(team)
                },
                always(event),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn rename_team(
        &self,
        team: &TeamAccess<AdministerTeam>,
        name: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let sql = "UPDATE teams SET name = ?2 WHERE id = ?1";
        let params = (team.team_id().to_owned(), name.to_owned());
        self.writer
            .execute_audited(sql, params, if_changed(event))
            .await
            .map_err(|e| e.conflict_as(TEAM_NAME_TAKEN))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delete_team(
        &self,
        team: &TeamAccess<DeleteTeam>,
        cascade: bool,
        event: AuditEvent,
    ) -> StoreResult<TeamDeletion> {
        let id = team.team_id().to_owned();
        // The team's deletion, and the purge of each deleted secret it
        // still kept (gone with it, though it was recoverable until now).
        let audit = move |(d, purged): &(TeamDeletion, Vec<Purged>)| match d {
            TeamDeletion::Deleted { .. } => {
                let mut events = purge_events(&event, purged, PurgeReason::TeamDeleted);
                events.insert(0, event);
                events
            }
            _ => Vec::new(),
        };
        let (deletion, _) = self
            .writer
            .write_audited(
                move |c| {
                    let secrets = c
                        .query_row("SELECT secret_count FROM teams WHERE id = ?1", [&id], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    let secrets = match TeamDeletion::allowed(secrets, cascade) {
                        Ok(secrets) => secrets,
                        Err(refused) => return Ok((refused, Vec::new())),
                    };
                    let purged: Vec<Purged> = c
                        .prepare_cached(
                            "SELECT org_id, team_id, id, name FROM deleted_secrets WHERE team_id = ?1",
                        )?
                        .query_map([&id], |r| {
                            Ok(Purged {
                                org_id: r.get(0)?,
                                team_id: r.get(1)?,
                                id: r.get(2)?,
                                name: r.get(3)?,
                            })
                        })?
                        .collect::<Result<_, _>>()?;
                    for sql in [
                        // Its history first (found through its secrets' ids).
                        "DELETE FROM consumer_versions WHERE secret_id IN
                         (SELECT id FROM secrets WHERE team_id = ?1
                          UNION ALL SELECT id FROM deleted_secrets WHERE team_id = ?1)",
                        "DELETE FROM consumers WHERE team_id = ?1",
                        "DELETE FROM secret_versions WHERE team_id = ?1",
                        "DELETE FROM deleted_secrets WHERE team_id = ?1",
                        "DELETE FROM secrets WHERE team_id = ?1",
                        "DELETE FROM team_members WHERE team_id = ?1",
                        "DELETE FROM api_keys WHERE team_id = ?1",
                        "DELETE FROM teams WHERE id = ?1",
                    ] {
                        c.execute(sql, [&id])?;
                    }
                    Ok((TeamDeletion::Deleted { secrets }, purged))
                },
                audit,
            )
            .await?;
        Ok(deletion)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_users(&self, org: &OrgAccess, q: UserQuery) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE org_id = ?1 AND (?2 IS NULL OR id > ?2) AND (?3 IS NULL OR email_key = ?3)
             ORDER BY id LIMIT ?4"
        );
        let params = (org.org_id(), q.after, q.email_key, q.limit as i64);
        self.readers.all(&sql, params, |r| user_row(r)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn find_user(&self, org: &OrgAccess, user_id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND org_id = ?2");
        self.readers
            .optional(&sql, [user_id, org.org_id()], |r| user_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_user(
        &self,
        org: &OrgAccess,
        new: NewUser,
        max_users: i64,
        event: AuditEvent,
    ) -> StoreResult<User> {
        let user = new.in_org(org);
        self.writer
            .write_audited(
                move |c| {
                    let count = "SELECT COUNT(*) FROM users WHERE org_id = ?1";
                    within_quota(c, count, &user.org_id, USERS_QUOTA, max_users)?;
                    insert_user(c, &user)?;
                    let default_team: String = c.query_row(
                        "SELECT id FROM teams WHERE org_id = ?1 AND is_default = 1",
                        [&user.org_id],
                        |r| r.get(0),
                    )?;
                    set_member(c, &default_team, &user.id, TeamRole::Member)?;
                    Ok(user)
                },
                always(event),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn delete_user(
        &self,
        org: &OrgAccess,
        user_id: &str,
        keys: KeyHandover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome> {
        let (org_id, user_id) = (org.org_id().to_owned(), user_id.to_owned());
        self.writer
            .write_audited(
                move |c| {
                    let change = AuthorityChange::DeleteUser;
                    change_authority(c, &org_id, &user_id, change, &keys, |c| {
                        for sql in [
                            // Its personal keys (the keys it answered for are
                            // revoked or handed over by now).
                            "DELETE FROM api_keys WHERE user_id = ?1",
                            "DELETE FROM team_members WHERE user_id = ?1",
                            "DELETE FROM users WHERE id = ?1",
                        ] {
                            c.execute(sql, [&user_id])?;
                        }
                        Ok(())
                    })
                },
                move |outcome| authority_events(event, outcome),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_members(
        &self,
        team: &TeamAccess<ReadTeam>,
    ) -> StoreResult<Vec<(User, TeamRole)>> {
        let sql = format!(
            "SELECT {}, m.role FROM team_members m JOIN users u ON u.id = m.user_id
             WHERE m.team_id = ?1 ORDER BY u.id",
            qualified("u", USER_COLUMNS)
        );
        self.readers
            .all(&sql, [team.team_id()], |r| member_row(r))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn set_member(
        &self,
        team: &TeamAccess<AdministerTeam>,
        user_id: &str,
        role: TeamRole,
        keys: KeyHandover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome> {
        let (team_id, org_id) = (team.team_id().to_owned(), team.org_id().to_owned());
        let user_id = user_id.to_owned();
        self.writer
            .write_audited(
                move |c| {
                    let change = AuthorityChange::SetTeamRole {
                        team_id: &team_id,
                        role,
                    };
                    change_authority(c, &org_id, &user_id, change, &keys, |c| {
                        set_member(c, &team_id, &user_id, role).map_err(|e| e.gone_as(TEAM_GONE))
                    })
                },
                move |outcome| authority_events(event, outcome),
            )
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn remove_member(
        &self,
        team: &TeamAccess<AdministerTeam>,
        user_id: &str,
        keys: KeyHandover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome> {
        let (team_id, org_id) = (team.team_id().to_owned(), team.org_id().to_owned());
        let user_id = user_id.to_owned();
        self.writer
            .write_audited(
                move |c| {
                    let change = AuthorityChange::LeaveTeam { team_id: &team_id };
                    change_authority(c, &org_id, &user_id, change, &keys, |c| {
                        c.prepare_cached(
                            "DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2",
                        )?
                        .execute([&team_id, &user_id])?;
                        Ok(())
                    })
                },
                move |outcome| authority_events(event, outcome),
            )
            .await
    }
}
