//! Column lists and row mappers shared by the PostgreSQL aggregates.

use crate::domain::types::{ApiKeyRecord, ListedSecret, Team, User};
use crate::store::json_list;
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::str::FromStr;

pub const TEAM_COLUMNS: &str = "id, org_id, name, is_default, created_at";

pub fn team_row(r: &PgRow) -> Result<Team, sqlx::Error> {
    Ok(Team {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        name: r.try_get("name")?,
        is_default: r.try_get("is_default")?,
        created_at: r.try_get("created_at")?,
    })
}

pub const USER_COLUMNS: &str = "id, org_id, email, name, role, created_at";

/// A user whose columns are named with `prefix` (`""` or e.g. `"owner_"`).
pub fn user_with(r: &PgRow, prefix: &str) -> Result<User, sqlx::Error> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(User {
        id: r.try_get(col("id").as_str())?,
        org_id: r.try_get(col("org_id").as_str())?,
        email: r.try_get(col("email").as_str())?,
        name: r.try_get(col("name").as_str())?,
        role: decode_enum("role", r.try_get(col("role").as_str())?)?,
        created_at: r.try_get(col("created_at").as_str())?,
    })
}

pub fn user_row(r: &PgRow) -> Result<User, sqlx::Error> {
    user_with(r, "")
}

pub const KEY_COLUMNS: &str = "prefix, org_id, key_type, name, secret_hash, user_id, team_id, \
     model_ids, created_by, created_at, last_used_at, secret_names";

pub fn key_row(r: &PgRow) -> Result<ApiKeyRecord, sqlx::Error> {
    Ok(ApiKeyRecord {
        prefix: r.try_get("prefix")?,
        org_id: r.try_get("org_id")?,
        key_type: decode_enum("key_type", r.try_get("key_type")?)?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        user_id: r.try_get("user_id")?,
        team_id: r.try_get("team_id")?,
        model_ids: json_list(r.try_get("model_ids")?),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        secret_names: json_list(r.try_get("secret_names")?),
    })
}

pub fn listed_row(r: &PgRow) -> Result<ListedSecret, sqlx::Error> {
    Ok(ListedSecret {
        team_id: r.try_get("team_id")?,
        team_name: r.try_get("team_name")?,
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        canonical_name: r.try_get("canonical_name")?,
        created_at: r.try_get("created_at")?,
        version: r.try_get("version")?,
    })
}

pub fn decode_enum<T: FromStr>(col: &str, value: String) -> Result<T, sqlx::Error> {
    value.parse().map_err(|_| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("unknown enum value {value:?}").into(),
    })
}
