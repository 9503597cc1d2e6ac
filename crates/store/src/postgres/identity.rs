//! The identity aggregate on PostgreSQL: organizations, teams, users and
//! memberships.

use super::keys::insert_key;
use super::{bounded, notify_identity_changed, PostgresStore};
use crate::audit::{purge_events, PurgeReason, Purged};
use crate::identity::{
    authority_events, check_quota, handover, member_row, membership_row, org_name_taken, org_row,
    team_row, user_row, AuthorityOutcome, EMAIL_TAKEN, ORG_COLUMNS, TEAMS_QUOTA, TEAM_COLUMNS,
    TEAM_GONE, TEAM_NAME_TAKEN, USERS_QUOTA, USER_COLUMNS,
};
use crate::keys::{key_row, KEY_COLUMNS};
use crate::row::{qualified, Row as _};
use crate::{
    IdentityStore, NewOrganization, NewTeam, NewUser, StoreError, StoreResult, TeamDeletion,
    UserQuery,
};
use async_trait::async_trait;
use sqlx::PgConnection;
use tessera_core::audit::event::AuditEvent;
use tessera_core::domain::access::{
    keys_beyond_authority, AdministerTeam, AuthorityChange, DeleteTeam, KeyHandover, OrgAccess,
    ReadTeam, TeamAccess,
};
use tessera_core::domain::names::email_key;
use tessera_core::domain::types::{ApiKeyRecord, Membership, Organization, Team, TeamRole, User};

/// Inserts a team row (organization bootstrap and team creation).
async fn insert_team(c: &mut PgConnection, t: &Team) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO teams ({TEAM_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&t.id)
    .bind(&t.org_id)
    .bind(&t.name)
    .bind(t.is_default)
    .bind(t.created_at)
    .execute(&mut *c)
    .await
    .map_err(|e| StoreError::from(e).conflict_as(TEAM_NAME_TAKEN))?;
    sqlx::query("INSERT INTO team_counters (team_id, revision, secret_count) VALUES ($1, 0, 0)")
        .bind(&t.id)
        .execute(c)
        .await?;
    Ok(())
}

/// Inserts a user row (organization bootstrap and user creation).
async fn insert_user(c: &mut PgConnection, u: &User) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO users ({USER_COLUMNS}, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&u.id)
    .bind(&u.org_id)
    .bind(&u.email)
    .bind(&u.name)
    .bind(u.role.as_str())
    .bind(u.created_at)
    .bind(u.email.as_deref().map(email_key))
    .execute(c)
    .await
    .map_err(|e| StoreError::from(e).conflict_as(EMAIL_TAKEN))?;
    Ok(())
}

/// Locks the organization's row so that nodes creating at the same moment
/// take turns (`FOR NO KEY UPDATE` does not block other writes that merely
/// reference the organization), then refuses one more of what `count_sql`
/// (one `$1` parameter) counts when it is at `limit` already.
pub(super) async fn within_quota(
    tx: &mut PgConnection,
    org_id: &str,
    count_sql: &str,
    param: &str,
    quota: &'static str,
    limit: i64,
) -> StoreResult<()> {
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let n = sqlx::query_scalar(count_sql)
        .bind(param)
        .fetch_one(&mut *tx)
        .await?;
    check_quota(n, quota, limit)
}

/// A user of `org_id` with its memberships, read in the caller's
/// transaction (which has locked the user's row if it matters).
pub(super) async fn person(
    c: &mut PgConnection,
    org_id: &str,
    user_id: &str,
) -> StoreResult<Option<(User, Vec<Membership>)>> {
    let user = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND org_id = $2"
    ))
    .bind(user_id)
    .bind(org_id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(user) = user else { return Ok(None) };
    let user = user_row(&user)?;
    let memberships = sqlx::query("SELECT team_id, role FROM team_members WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(membership_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((user, memberships)))
}

/// Makes a change to the user's authority in `tx`, after revoking or handing
/// over the keys it answers for that would outlive that authority (or
/// refuses, changing nothing); `apply` makes the change itself.
///
/// The rows of the user and of the successor are locked first, in id
/// order (two changes naming each other cannot deadlock). A key being
/// created by the user holds its creator's row (`FOR KEY SHARE`, see
/// `insert_api_key`): it commits first and is among the keys found here, or
/// waits and finds the authority gone.
async fn change_authority(
    tx: &mut PgConnection,
    org_id: &str,
    user_id: &str,
    change: AuthorityChange<'_>,
    asked: &KeyHandover,
) -> StoreResult<Result<crate::identity::Handover, AuthorityOutcome>> {
    let mut ids = vec![user_id.to_owned()];
    if let KeyHandover::TransferTo(to) = asked {
        ids.push(to.clone());
    }
    ids.sort();
    ids.dedup();
    sqlx::query("SELECT id FROM users WHERE id = ANY($1) AND org_id = $2 ORDER BY id FOR UPDATE")
        .bind(&ids)
        .bind(org_id)
        .fetch_all(&mut *tx)
        .await?;
    let Some((user, memberships)) = person(tx, org_id, user_id).await? else {
        return Ok(Err(AuthorityOutcome::NotFound));
    };
    if let AuthorityChange::LeaveTeam { team_id } = change {
        if !memberships.iter().any(|m| m.team_id == team_id) {
            return Ok(Err(AuthorityOutcome::NotFound));
        }
    }
    let keys = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE created_by = $1 AND key_type <> 'PERSONAL'"
    ))
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(key_row)
    .collect::<Result<Vec<ApiKeyRecord>, _>>()?;
    let concerned: Vec<ApiKeyRecord> = keys_beyond_authority(&user, &memberships, change, &keys)
        .into_iter()
        .cloned()
        .collect();
    let successor = match asked {
        KeyHandover::TransferTo(id) if !concerned.is_empty() => person(tx, org_id, id).await?,
        _ => None,
    };
    let plan = match handover(concerned, asked, successor) {
        Ok(plan) => plan,
        Err(refused) => return Ok(Err(refused)),
    };
    for key in &plan.revoke {
        sqlx::query("DELETE FROM api_keys WHERE prefix = $1")
            .bind(&key.prefix)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(successor) = &plan.successor {
        for key in &plan.hand_over {
            sqlx::query("UPDATE api_keys SET created_by = $2 WHERE prefix = $1")
                .bind(&key.prefix)
                .bind(successor)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(Ok(plan))
}

impl PostgresStore {
    /// Commits an authority change made in `tx` (see [`change_authority`]):
    /// other nodes forget the principals they cached (a revoked key is
    /// refused there at once), and the events go with it.
    async fn commit_authority(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        plan: crate::identity::Handover,
        event: AuditEvent,
    ) -> StoreResult<AuthorityOutcome> {
        notify_identity_changed(&mut tx).await?;
        let outcome = AuthorityOutcome::Done {
            revoked: plan.revoke,
            handed_over: plan.hand_over,
            successor: plan.successor,
        };
        self.commit_recorded(tx, authority_events(event, &outcome))
            .await?;
        Ok(outcome)
    }
}

#[async_trait]
impl IdentityStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn principal_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        self.optional(sqlx::query(&sql).bind(user_id), user_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let sql = "SELECT team_id, role FROM team_members WHERE user_id = $1";
        self.all(sqlx::query(sql).bind(user_id), membership_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn find_team(&self, team_id: &str) -> StoreResult<Option<Team>> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1");
        self.optional(sqlx::query(&sql).bind(team_id), team_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn default_team(&self, org_id: &str) -> StoreResult<Team> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND is_default");
        self.one(sqlx::query(&sql).bind(org_id), team_row).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn organization_count(&self) -> StoreResult<i64> {
        let query = sqlx::query("SELECT COUNT(*) FROM organizations");
        self.one(query, |r| r.col(0)).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_organization(
        &self,
        new: NewOrganization,
        event: AuditEvent,
    ) -> StoreResult<()> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&new.org.id)
                .bind(&new.org.name)
                .bind(new.org.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| org_name_taken(e.into(), &new.org))?;
            insert_team(&mut tx, &new.default_team).await?;
            insert_user(&mut tx, &new.admin).await?;
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'ADMIN')",
            )
            .bind(&new.default_team.id)
            .bind(&new.admin.id)
            .execute(&mut *tx)
            .await?;
            insert_key(&mut tx, &new.admin_key, &format!("user:{}", new.admin.id)).await?;
            self.commit_recorded(tx, vec![event]).await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn organization(&self, org: &OrgAccess) -> StoreResult<Organization> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1");
        self.one(sqlx::query(&sql).bind(org.org_id()), org_row)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_teams(&self, org: &OrgAccess) -> StoreResult<Vec<Team>> {
        let sql = format!(
            "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 ORDER BY is_default DESC, name"
        );
        self.all(sqlx::query(&sql).bind(org.org_id()), team_row)
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
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let (org, count) = (&team.org_id, "SELECT COUNT(*) FROM teams WHERE org_id = $1");
            within_quota(&mut tx, org, count, org, TEAMS_QUOTA, max_teams).await?;
            insert_team(&mut tx, &team).await?;
            self.commit_recorded(tx, vec![event]).await?;
            Ok(team)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn rename_team(
        &self,
        team: &TeamAccess<AdministerTeam>,
        name: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let query = sqlx::query("UPDATE teams SET name = $2 WHERE id = $1");
        let query = query.bind(team.team_id()).bind(name);
        self.execute_recorded(query, event)
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
        bounded(async {
            let mut tx = self.pool.begin().await?;
            // The team's row first: once it is ours, no creation of a secret
            // in it is under way (each holds a key-share lock on it until it
            // commits) and none can start; then its count.
            let found = sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
                .bind(team.team_id())
                .fetch_optional(&mut *tx)
                .await?;
            let secrets = match found {
                Some(_) => {
                    sqlx::query_scalar("SELECT secret_count FROM team_counters WHERE team_id = $1")
                        .bind(team.team_id())
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            let secrets = match TeamDeletion::allowed(secrets, cascade) {
                Ok(secrets) => secrets,
                Err(refused) => return Ok(refused),
            };
            // Each deleted secret it still kept is purged with it.
            let purged: Vec<Purged> = sqlx::query_as::<_, (String, String, String, String)>(
                "SELECT org_id, team_id, id, name FROM deleted_secrets WHERE team_id = $1",
            )
            .bind(team.team_id())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(org_id, team_id, id, name)| Purged {
                org_id,
                team_id,
                id,
                name,
            })
            .collect();
            for sql in [
                // Its history first (found through its secrets' ids).
                "DELETE FROM consumer_versions WHERE secret_id IN
                     (SELECT id FROM secrets WHERE team_id = $1
                      UNION ALL SELECT id FROM deleted_secrets WHERE team_id = $1)",
                "DELETE FROM consumers WHERE team_id = $1",
                "DELETE FROM secret_versions WHERE team_id = $1",
                "DELETE FROM deleted_secrets WHERE team_id = $1",
                "DELETE FROM secrets WHERE team_id = $1",
                "DELETE FROM team_members WHERE team_id = $1",
                "DELETE FROM api_keys WHERE team_id = $1",
                "DELETE FROM teams WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(team.team_id())
                    .execute(&mut *tx)
                    .await?;
            }
            notify_identity_changed(&mut tx).await?;
            let mut events = purge_events(&event, &purged, PurgeReason::TeamDeleted);
            events.insert(0, event);
            self.commit_recorded(tx, events).await?;
            Ok(TeamDeletion::Deleted { secrets })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_users(&self, org: &OrgAccess, q: UserQuery) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE org_id = $1 AND ($2::text IS NULL OR id > $2) AND ($3::text IS NULL OR email_key = $3)
             ORDER BY id LIMIT $4"
        );
        let query = sqlx::query(&sql).bind(org.org_id()).bind(q.after);
        let query = query.bind(q.email_key).bind(q.limit as i64);
        self.all(query, user_row).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn find_user(&self, org: &OrgAccess, user_id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND org_id = $2");
        let query = sqlx::query(&sql).bind(user_id).bind(org.org_id());
        self.optional(query, user_row).await
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
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let (org, count) = (&user.org_id, "SELECT COUNT(*) FROM users WHERE org_id = $1");
            within_quota(&mut tx, org, count, org, USERS_QUOTA, max_users).await?;
            insert_user(&mut tx, &user).await?;
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, role)
                 SELECT id, $2, 'MEMBER' FROM teams WHERE org_id = $1 AND is_default",
            )
            .bind(&user.org_id)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
            self.commit_recorded(tx, vec![event]).await?;
            Ok(user)
        })
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
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let change = AuthorityChange::DeleteUser;
            let plan = match change_authority(&mut tx, org.org_id(), user_id, change, &keys).await?
            {
                Ok(plan) => plan,
                Err(refused) => return Ok(refused),
            };
            for sql in [
                // Its personal keys (the keys it answered for are revoked or
                // handed over by now).
                "DELETE FROM api_keys WHERE user_id = $1",
                "DELETE FROM team_members WHERE user_id = $1",
                "DELETE FROM users WHERE id = $1",
            ] {
                sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
            }
            self.commit_authority(tx, plan, event).await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_members(
        &self,
        team: &TeamAccess<ReadTeam>,
    ) -> StoreResult<Vec<(User, TeamRole)>> {
        let sql = format!(
            "SELECT {}, m.role FROM team_members m JOIN users u ON u.id = m.user_id
             WHERE m.team_id = $1 ORDER BY u.id",
            qualified("u", USER_COLUMNS)
        );
        self.all(sqlx::query(&sql).bind(team.team_id()), member_row)
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
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let change = AuthorityChange::SetTeamRole {
                team_id: team.team_id(),
                role,
            };
            let plan =
                match change_authority(&mut tx, team.org_id(), user_id, change, &keys).await? {
                    Ok(plan) => plan,
                    Err(refused) => return Ok(refused),
                };
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            )
            .bind(team.team_id())
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from(e).gone_as(TEAM_GONE))?;
            self.commit_authority(tx, plan, event).await
        })
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
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let change = AuthorityChange::LeaveTeam {
                team_id: team.team_id(),
            };
            let plan =
                match change_authority(&mut tx, team.org_id(), user_id, change, &keys).await? {
                    Ok(plan) => plan,
                    Err(refused) => return Ok(refused),
                };
            sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                .bind(team.team_id())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            self.commit_authority(tx, plan, event).await
        })
        .await
    }
}
