//! Column lists and row mappers shared by the SQLite aggregates.

use super::error::bad_enum;
use crate::domain::types::{ApiKeyRecord, ListedSecret, Team, User};
use crate::store::json_list;
use rusqlite::Row;

pub const TEAM_COLUMNS: &str = "id, org_id, name, is_default, created_at";

pub fn team_row(r: &Row<'_>) -> rusqlite::Result<Team> {
    Ok(Team {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        is_default: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub const USER_COLUMNS: &str = "id, org_id, email, name, role, created_at";

pub fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    user_at(r, 0)
}

/// A user whose columns start at `base` in a joined row.
pub fn user_at(r: &Row<'_>, base: usize) -> rusqlite::Result<User> {
    let role: String = r.get(base + 4)?;
    Ok(User {
        id: r.get(base)?,
        org_id: r.get(base + 1)?,
        email: r.get(base + 2)?,
        name: r.get(base + 3)?,
        role: role.parse().map_err(|_| bad_enum(base + 4, &role))?,
        created_at: r.get(base + 5)?,
    })
}

pub const KEY_COLUMNS: &str = "prefix, org_id, key_type, name, secret_hash, user_id, team_id, \
     model_ids, created_by, created_at, last_used_at, secret_names";

pub fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let key_type: String = r.get(2)?;
    Ok(ApiKeyRecord {
        prefix: r.get(0)?,
        org_id: r.get(1)?,
        key_type: key_type.parse().map_err(|_| bad_enum(2, &key_type))?,
        name: r.get(3)?,
        secret_hash: r.get(4)?,
        user_id: r.get(5)?,
        team_id: r.get(6)?,
        model_ids: json_list(r.get(7)?),
        created_by: r.get(8)?,
        created_at: r.get(9)?,
        last_used_at: r.get(10)?,
        secret_names: json_list(r.get(11)?),
    })
}

pub fn listed_row(r: &Row<'_>) -> rusqlite::Result<ListedSecret> {
    Ok(ListedSecret {
        team_id: r.get(0)?,
        team_name: r.get(1)?,
        id: r.get(2)?,
        name: r.get(3)?,
        canonical_name: r.get(4)?,
        created_at: r.get(5)?,
        version: r.get(6)?,
    })
}
