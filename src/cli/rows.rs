//! How the admin commands' tables show each response body (the wire's
//! types): the columns and one cell per column, as `Remote::print_rows`
//! prints them. A body has one table, whichever command answers it.

use super::remote::Row;
use crate::wire::management::{
    ApiKeyInfo, ApiKeyTombstoneView, MemberInfo, MembershipTombstone, SecretInfo,
    SecretTombstoneView, TeamTombstoneView, TeamView, UserAdminInfo, UserTombstoneView, UserView,
};

/// An absent value's cell.
fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

impl Row for TeamView {
    const COLUMNS: &'static [&'static str] = &["id", "name", "default", "created_at"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.default.to_string(),
            self.created_at.clone(),
        ]
    }
}

impl Row for TeamTombstoneView {
    const COLUMNS: &'static [&'static str] = &["id", "name", "deleted_secrets"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.deleted_secrets.to_string(),
        ]
    }
}

impl Row for UserView {
    const COLUMNS: &'static [&'static str] = &["user_id", "email", "name"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.user_id.clone(),
            or_dash(&self.email),
            or_dash(&self.name),
        ]
    }
}

impl Row for UserAdminInfo {
    const COLUMNS: &'static [&'static str] = &["user_id", "email", "name", "role"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.user_id.clone(),
            or_dash(&self.email),
            or_dash(&self.name),
            self.role.clone(),
        ]
    }
}

impl Row for UserTombstoneView {
    const COLUMNS: &'static [&'static str] = &["user_id"];
    fn cells(&self) -> Vec<String> {
        vec![self.user_id.clone()]
    }
}

impl Row for MemberInfo {
    const COLUMNS: &'static [&'static str] = &["user_id", "email", "name", "role"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.user_id.clone(),
            or_dash(&self.email),
            or_dash(&self.name),
            self.role.clone(),
        ]
    }
}

impl Row for MembershipTombstone {
    const COLUMNS: &'static [&'static str] = &["team_id", "user_id"];
    fn cells(&self) -> Vec<String> {
        vec![self.team_id.clone(), self.user_id.clone()]
    }
}

impl Row for ApiKeyInfo {
    const COLUMNS: &'static [&'static str] = &[
        "prefix",
        "type",
        "name",
        "team_name",
        "owner",
        "created_at",
        "last_used_at",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.prefix.clone(),
            self.key_type.clone(),
            or_dash(&self.name),
            or_dash(&self.team_name),
            // A personal key's owner by email ("-" for a user without one).
            self.owner
                .as_ref()
                .map_or_else(|| "-".to_owned(), |o| or_dash(&o.email)),
            self.created_at.clone(),
            or_dash(&self.last_used_at),
        ]
    }
}

impl Row for ApiKeyTombstoneView {
    const COLUMNS: &'static [&'static str] = &["prefix"];
    fn cells(&self) -> Vec<String> {
        vec![self.prefix.clone()]
    }
}

impl Row for SecretInfo {
    const COLUMNS: &'static [&'static str] = &["name", "team_name", "id", "created_at"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.team_name.clone(),
            self.id.clone(),
            self.created_at.clone(),
        ]
    }
}

impl Row for SecretTombstoneView {
    const COLUMNS: &'static [&'static str] = &["name"];
    fn cells(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}
