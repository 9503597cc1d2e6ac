//! PostgreSQL statements for teams, users, memberships and API keys.

use super::{
    bounded, decode_enum, insert_key, key_row, notify_identity_changed, user_row, TEAM_COLUMNS,
    USER_COLUMNS,
};
use crate::domain::types::{ApiKeyRecord, Team, TeamRole, User};
use crate::store::{KeyListing, StoreError, StoreResult, TeamDeletion, UserQuery};
use sqlx::{PgPool, Row};

/// Maps a unique violation to a conflict with a message of our own.
fn conflict_as<T>(r: StoreResult<T>, message: &str) -> StoreResult<T> {
    r.map_err(|e| match e {
        StoreError::Conflict(_) => StoreError::Conflict(message.to_owned()),
        other => other,
    })
}

/// Counts what `count_sql` (one `$1` parameter) counts, after locking the
/// organization's row so that nodes creating at the same moment take turns
/// (`FOR NO KEY UPDATE` does not block other writes that merely reference
/// the organization).
async fn count_in_org(
    tx: &mut sqlx::PgConnection,
    org_id: &str,
    count_sql: &str,
    param: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(org_id)
        .fetch_optional(&mut *tx)
        .await?;
    sqlx::query_scalar(count_sql)
        .bind(param)
        .fetch_one(&mut *tx)
        .await
}

pub async fn create_team(pool: &PgPool, t: &Team, max_teams: i64) -> StoreResult<()> {
    let r = bounded(async {
        let mut tx = pool.begin().await?;
        let n = count_in_org(
            &mut tx,
            &t.org_id,
            "SELECT COUNT(*) FROM teams WHERE org_id = $1",
            &t.org_id,
        )
        .await?;
        if n >= max_teams {
            return Ok(Err(StoreError::QuotaExceeded {
                quota: "teams per organization",
                limit: max_teams,
            }));
        }
        insert_team(&mut tx, t).await?;
        tx.commit().await?;
        Ok(Ok(()))
    })
    .await;
    conflict_as(r, "the organization already has a team with this name")?
}

/// Inserts a team row (shared by organization bootstrap and team creation).
pub(crate) async fn insert_team(
    conn: &mut sqlx::PgConnection,
    t: &Team,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO teams ({TEAM_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&t.id)
    .bind(&t.org_id)
    .bind(&t.name)
    .bind(t.is_default)
    .bind(t.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn rename_team(pool: &PgPool, team_id: &str, name: &str) -> StoreResult<()> {
    let r = bounded(
        sqlx::query("UPDATE teams SET name = $2 WHERE id = $1")
            .bind(team_id)
            .bind(name)
            .execute(pool),
    )
    .await;
    conflict_as(r, "the organization already has a team with this name").map(|_| ())
}

pub async fn delete_team(pool: &PgPool, team_id: &str, cascade: bool) -> StoreResult<TeamDeletion> {
    bounded(async {
        let mut tx = pool.begin().await?;
        let locked = sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
            .bind(team_id)
            .fetch_optional(&mut *tx)
            .await?;
        if locked.is_none() {
            return Ok(TeamDeletion::NotFound);
        }
        let secrets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE team_id = $1")
            .bind(team_id)
            .fetch_one(&mut *tx)
            .await?;
        if secrets > 0 && !cascade {
            return Ok(TeamDeletion::HasSecrets(secrets));
        }
        for sql in [
            "DELETE FROM secrets WHERE team_id = $1",
            "DELETE FROM team_members WHERE team_id = $1",
            "DELETE FROM api_keys WHERE team_id = $1",
            "DELETE FROM teams WHERE id = $1",
        ] {
            sqlx::query(sql).bind(team_id).execute(&mut *tx).await?;
        }
        notify_identity_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(TeamDeletion::Deleted { secrets })
    })
    .await
}

pub async fn list_users(pool: &PgPool, org_id: &str, q: &UserQuery) -> StoreResult<Vec<User>> {
    let rows = bounded(
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE org_id = $1 AND ($2::text IS NULL OR id > $2) AND ($3::text IS NULL OR email_key = $3)
             ORDER BY id LIMIT $4"
        ))
        .bind(org_id)
        .bind(&q.after)
        .bind(&q.email_key)
        .bind(q.limit as i64)
        .fetch_all(pool),
    )
    .await?;
    rows.iter()
        .map(user_row)
        .collect::<Result<_, _>>()
        .map_err(super::map_err)
}

pub async fn create_user(
    pool: &PgPool,
    u: &User,
    default_team_id: &str,
    max_users: i64,
) -> StoreResult<()> {
    let r = bounded(async {
        let mut tx = pool.begin().await?;
        let n = count_in_org(
            &mut tx,
            &u.org_id,
            "SELECT COUNT(*) FROM users WHERE org_id = $1",
            &u.org_id,
        )
        .await?;
        if n >= max_users {
            return Ok(Err(StoreError::QuotaExceeded {
                quota: "users per organization",
                limit: max_users,
            }));
        }
        insert_user(&mut tx, u).await?;
        sqlx::query("INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'MEMBER')")
            .bind(default_team_id)
            .bind(&u.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    })
    .await;
    conflict_as(r, "a user with this email already exists")?
}

pub async fn delete_user(pool: &PgPool, org_id: &str, user_id: &str) -> StoreResult<bool> {
    bounded(async {
        let mut tx = pool.begin().await?;
        let found = sqlx::query("SELECT id FROM users WHERE id = $1 AND org_id = $2 FOR UPDATE")
            .bind(user_id)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        for sql in [
            // Its personal keys, and every workspace key it created: one
            // outliving its creator would keep the deleted user's access. (A
            // personal key it minted for someone else acts as that person,
            // and stays.) A key being created concurrently locks its
            // creator's row first (see `insert_api_key`), so it commits
            // before this statement runs and is deleted too, or finds the
            // user gone.
            "DELETE FROM api_keys WHERE user_id = $1 OR (created_by = $1 AND key_type <> 'PERSONAL')",
            "DELETE FROM team_members WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        notify_identity_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    })
    .await
}

pub async fn list_members(pool: &PgPool, team_id: &str) -> StoreResult<Vec<(User, TeamRole)>> {
    let rows = bounded(
        sqlx::query(
            "SELECT u.id, u.org_id, u.email, u.name, u.role, u.created_at, m.role AS team_role
             FROM team_members m JOIN users u ON u.id = m.user_id
             WHERE m.team_id = $1 ORDER BY u.id",
        )
        .bind(team_id)
        .fetch_all(pool),
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                user_row(r)?,
                decode_enum("team_role", r.try_get("team_role")?)?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(super::map_err)
}

pub async fn set_member(
    pool: &PgPool,
    team_id: &str,
    user_id: &str,
    role: TeamRole,
) -> StoreResult<()> {
    bounded(
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(pool),
    )
    .await
    .map(|_| ())
}

pub async fn remove_member(pool: &PgPool, team_id: &str, user_id: &str) -> StoreResult<bool> {
    bounded(
        sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(pool),
    )
    .await
    .map(|r| r.rows_affected() > 0)
}

/// Inserts an API key, refusing (`NotFound`) a key whose creator, owner or
/// team was deleted meanwhile. The creator's row is share-locked for the
/// transaction, so a concurrent `delete_user` either waits for this key and
/// deletes it, or has already deleted the user and this insert finds none.
pub async fn insert_api_key(
    pool: &PgPool,
    key: &ApiKeyRecord,
    name_scope: &str,
    max_keys: i64,
) -> StoreResult<()> {
    let r = bounded(async {
        let mut tx = pool.begin().await?;
        if let Some(creator) = &key.created_by {
            let found = sqlx::query("SELECT id FROM users WHERE id = $1 FOR KEY SHARE")
                .bind(creator)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Ok(Err(StoreError::NotFound(
                    "the user creating this key no longer exists".into(),
                )));
            }
        }
        let n = count_in_org(
            &mut tx,
            &key.org_id,
            "SELECT COUNT(*) FROM api_keys WHERE name_scope = $1",
            name_scope,
        )
        .await?;
        if n >= max_keys {
            return Ok(Err(StoreError::QuotaExceeded {
                quota: crate::store::key_quota_name(name_scope),
                limit: max_keys,
            }));
        }
        insert_key(&mut tx, key, name_scope).await?;
        tx.commit().await?;
        Ok(Ok(()))
    })
    .await;
    let r = conflict_as(
        r,
        "a live API key with this name already exists in the same scope",
    );
    match r {
        Ok(inner) => inner,
        Err(StoreError::NotFound(_)) if key.user_id.is_some() => {
            Err(StoreError::NotFound("user not found".into()))
        }
        Err(StoreError::NotFound(_)) => Err(StoreError::NotFound("team not found".into())),
        Err(e) => Err(e),
    }
}

pub async fn list_keys(pool: &PgPool, org_id: &str) -> StoreResult<Vec<KeyListing>> {
    let rows = bounded(
        sqlx::query(
            "SELECT k.prefix, k.org_id, k.key_type, k.name, k.secret_hash, k.user_id, k.team_id,
                    k.model_ids, k.created_by, k.created_at, k.last_used_at, k.secret_names,
                    t.name AS team_name,
                    u.id AS owner_id, u.org_id AS owner_org_id, u.email AS owner_email,
                    u.name AS owner_name, u.role AS owner_role, u.created_at AS owner_created_at
             FROM api_keys k
             LEFT JOIN teams t ON t.id = k.team_id
             LEFT JOIN users u ON u.id = k.user_id
             WHERE k.org_id = $1 ORDER BY k.created_at, k.prefix",
        )
        .bind(org_id)
        .fetch_all(pool),
    )
    .await?;
    rows.iter()
        .map(|r| {
            let owner_id: Option<String> = r.try_get("owner_id")?;
            let owner = match owner_id {
                Some(id) => Some(User {
                    id,
                    org_id: r.try_get("owner_org_id")?,
                    email: r.try_get("owner_email")?,
                    name: r.try_get("owner_name")?,
                    role: decode_enum("owner_role", r.try_get("owner_role")?)?,
                    created_at: r.try_get("owner_created_at")?,
                }),
                None => None,
            };
            Ok(KeyListing {
                key: key_row(r)?,
                team_name: r.try_get("team_name")?,
                owner,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(super::map_err)
}

/// Inserts a user row (shared by organization bootstrap and user creation).
pub(crate) async fn insert_user(
    conn: &mut sqlx::PgConnection,
    u: &User,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO users ({USER_COLUMNS}, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&u.id)
    .bind(&u.org_id)
    .bind(&u.email)
    .bind(&u.name)
    .bind(u.role.as_str())
    .bind(u.created_at)
    .bind(u.email.as_deref().map(crate::domain::names::email_key))
    .execute(conn)
    .await?;
    Ok(())
}
