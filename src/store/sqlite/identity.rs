//! SQLite statements for teams, users, memberships and API keys. Called on
//! the writer thread (writes) or a reader connection (reads).

use super::{internal, key_row, user_row, KEY_COLUMNS, TEAM_COLUMNS, USER_COLUMNS};
use crate::domain::types::{ApiKeyRecord, Team, TeamRole, User};
use crate::store::{KeyListing, StoreError, StoreResult, TeamDeletion, UserQuery};
use rusqlite::{params, Connection};

/// Inserts an API key, refusing (`NotFound`) a key whose creator, owner or
/// team was deleted meanwhile: a deleted user's keys, and the keys it created,
/// must not outlive it (see `delete_user`).
pub fn insert_api_key(c: &Connection, key: &ApiKeyRecord, name_scope: &str) -> StoreResult<()> {
    if let Some(creator) = &key.created_by {
        let exists: bool = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")
            .map_err(internal)?
            .query_row([creator], |r| r.get(0))
            .map_err(internal)?;
        if !exists {
            return Err(StoreError::NotFound(
                "the user creating this key no longer exists".into(),
            ));
        }
    }
    super::insert_key(c, key, name_scope).map_err(|e| match internal(e) {
        StoreError::Conflict(_) => StoreError::Conflict(
            "a live API key with this name already exists in the same scope".into(),
        ),
        StoreError::NotFound(_) if key.user_id.is_some() => {
            StoreError::NotFound("user not found".into())
        }
        StoreError::NotFound(_) => StoreError::NotFound("team not found".into()),
        other => other,
    })
}

fn team_name_conflict(e: rusqlite::Error) -> StoreError {
    match internal(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("the organization already has a team with this name".into())
        }
        other => other,
    }
}

pub fn create_team(c: &Connection, t: &Team) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO teams ({TEAM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))
    .map_err(internal)?
    .execute(params![t.id, t.org_id, t.name, t.is_default, t.created_at])
    .map_err(team_name_conflict)?;
    Ok(())
}

pub fn rename_team(c: &Connection, team_id: &str, name: &str) -> StoreResult<()> {
    c.prepare_cached("UPDATE teams SET name = ?2 WHERE id = ?1")
        .map_err(internal)?
        .execute(params![team_id, name])
        .map_err(team_name_conflict)?;
    Ok(())
}

pub fn delete_team(c: &Connection, team_id: &str, cascade: bool) -> StoreResult<TeamDeletion> {
    let exists: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM teams WHERE id = ?1)",
            [team_id],
            |r| r.get(0),
        )
        .map_err(internal)?;
    if !exists {
        return Ok(TeamDeletion::NotFound);
    }
    let secrets: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM secrets WHERE team_id = ?1",
            [team_id],
            |r| r.get(0),
        )
        .map_err(internal)?;
    if secrets > 0 && !cascade {
        return Ok(TeamDeletion::HasSecrets(secrets));
    }
    for sql in [
        "DELETE FROM secrets WHERE team_id = ?1",
        "DELETE FROM team_members WHERE team_id = ?1",
        "DELETE FROM api_keys WHERE team_id = ?1",
        "DELETE FROM teams WHERE id = ?1",
    ] {
        c.execute(sql, [team_id]).map_err(internal)?;
    }
    Ok(TeamDeletion::Deleted { secrets })
}

pub fn list_users(c: &Connection, org_id: &str, q: &UserQuery) -> StoreResult<Vec<User>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE org_id = ?1 AND (?2 IS NULL OR id > ?2) AND (?3 IS NULL OR email_key = ?3)
             ORDER BY id LIMIT ?4"
        ))
        .map_err(internal)?;
    let rows = st
        .query_map(
            params![org_id, q.after, q.email_key, q.limit as i64],
            user_row,
        )
        .map_err(internal)?;
    rows.collect::<Result<_, _>>().map_err(internal)
}

pub fn create_user(c: &Connection, u: &User, default_team_id: &str) -> StoreResult<()> {
    insert_user(c, u)?;
    set_member(c, default_team_id, &u.id, TeamRole::Member)
}

pub fn delete_user(c: &Connection, org_id: &str, user_id: &str) -> StoreResult<bool> {
    let exists: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND org_id = ?2)",
            params![user_id, org_id],
            |r| r.get(0),
        )
        .map_err(internal)?;
    if !exists {
        return Ok(false);
    }
    for sql in [
        // Its personal keys, and every workspace key it created: one
        // outliving its creator would keep the deleted user's access. (A
        // personal key it minted for someone else acts as that person, and
        // stays.)
        "DELETE FROM api_keys WHERE user_id = ?1 OR (created_by = ?1 AND key_type <> 'PERSONAL')",
        "DELETE FROM team_members WHERE user_id = ?1",
        "DELETE FROM users WHERE id = ?1",
    ] {
        c.execute(sql, [user_id]).map_err(internal)?;
    }
    Ok(true)
}

pub fn list_members(c: &Connection, team_id: &str) -> StoreResult<Vec<(User, TeamRole)>> {
    let cols = USER_COLUMNS
        .split(", ")
        .map(|col| format!("u.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {cols}, m.role FROM team_members m JOIN users u ON u.id = m.user_id
             WHERE m.team_id = ?1 ORDER BY u.id"
        ))
        .map_err(internal)?;
    let rows = st
        .query_map([team_id], |r| {
            let role: String = r.get(6)?;
            Ok((
                user_row(r)?,
                role.parse().map_err(|_| super::bad_enum(6, &role))?,
            ))
        })
        .map_err(internal)?;
    rows.collect::<Result<_, _>>().map_err(internal)
}

pub fn set_member(c: &Connection, team_id: &str, user_id: &str, role: TeamRole) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO team_members (team_id, user_id, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .map_err(internal)?
    .execute(params![team_id, user_id, role.as_str()])
    .map_err(internal)?;
    Ok(())
}

pub fn remove_member(c: &Connection, team_id: &str, user_id: &str) -> StoreResult<bool> {
    c.prepare_cached("DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2")
        .map_err(internal)?
        .execute(params![team_id, user_id])
        .map(|n| n > 0)
        .map_err(internal)
}

pub fn list_keys(c: &Connection, org_id: &str) -> StoreResult<Vec<KeyListing>> {
    let key_cols = KEY_COLUMNS
        .split(", ")
        .map(|col| format!("k.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    let user_cols = USER_COLUMNS
        .split(", ")
        .map(|col| format!("u.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {key_cols}, t.name, {user_cols} FROM api_keys k
             LEFT JOIN teams t ON t.id = k.team_id
             LEFT JOIN users u ON u.id = k.user_id
             WHERE k.org_id = ?1 ORDER BY k.created_at, k.prefix"
        ))
        .map_err(internal)?;
    let rows = st
        .query_map([org_id], |r| {
            let key = key_row(r)?;
            // Columns after the key's: the team name, then the owner.
            let base = KEY_COLUMNS.split(", ").count();
            let team_name: Option<String> = r.get(base)?;
            let owner_id: Option<String> = r.get(base + 1)?;
            let owner = match owner_id {
                Some(_) => Some(user_at(r, base + 1)?),
                None => None,
            };
            Ok(KeyListing {
                key,
                team_name,
                owner,
            })
        })
        .map_err(internal)?;
    rows.collect::<Result<_, _>>().map_err(internal)
}

/// A user whose columns start at `base` in a joined row.
pub(crate) fn user_at(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<User> {
    let role: String = r.get(base + 4)?;
    Ok(User {
        id: r.get(base)?,
        org_id: r.get(base + 1)?,
        email: r.get(base + 2)?,
        name: r.get(base + 3)?,
        role: role.parse().map_err(|_| super::bad_enum(base + 4, &role))?,
        created_at: r.get(base + 5)?,
    })
}

/// Inserts a user row (shared by organization bootstrap and user creation).
pub fn insert_user(c: &Connection, u: &User) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO users ({USER_COLUMNS}, email_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))
    .map_err(internal)?
    .execute(params![
        u.id,
        u.org_id,
        u.email,
        u.name,
        u.role.as_str(),
        u.created_at,
        u.email.as_deref().map(crate::domain::names::email_key),
    ])
    .map_err(|e| match internal(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("a user with this email already exists".into())
        }
        other => other,
    })?;
    Ok(())
}
