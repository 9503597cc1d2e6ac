//! Team management routes (extensions).

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::users::KeyHandoverQuery;
use super::views::{
    team_view, MemberView, MembersView, MembershipRequest, TeamNameRequest, TeamTombstoneView,
    TeamView,
};
use super::AppState;
use crate::domain::types::TeamRole;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// Extension: create a team (org admins). Body: `name`.
#[utoipa::path(post, path = "/v1/teams", tag = "extensions", request_body = TeamNameRequest,
    responses((status = 200, body = TeamView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_team(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<TeamNameRequest>,
) -> ApiResult<Json<TeamView>> {
    Ok(Json(team_view(
        state
            .service
            .teams()
            .create_team(&caller.0, &body.name)
            .await?,
    )))
}

/// Extension: rename a team (team or org admins). Body: `name`.
#[utoipa::path(patch, path = "/v1/teams/{team_id}", tag = "extensions", params(("team_id" = String, Path)), request_body = TeamNameRequest,
    responses((status = 200, body = TeamView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rename_team(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
    Body(body): Body<TeamNameRequest>,
) -> ApiResult<Json<TeamView>> {
    Ok(Json(team_view(
        state
            .service
            .teams()
            .rename_team(&caller.0, &team_id, &body.name)
            .await?,
    )))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeleteTeamQuery {
    /// Also delete the team's secrets (otherwise a team with secrets is kept: 409).
    cascade: Option<bool>,
}

/// Extension: delete a team (org admins; never the default team).
#[utoipa::path(delete, path = "/v1/teams/{team_id}", tag = "extensions", params(("team_id" = String, Path), DeleteTeamQuery),
    responses((status = 200, body = TeamTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_team(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
    QueryParams(q): QueryParams<DeleteTeamQuery>,
) -> ApiResult<Json<TeamTombstoneView>> {
    let (team, deleted_secrets) = state
        .service
        .teams()
        .delete_team(&caller.0, &team_id, q.cascade.unwrap_or(false))
        .await?;
    Ok(Json(TeamTombstoneView {
        id: team.id,
        name: team.name,
        deleted_secrets,
    }))
}

/// Extension: the members of a team.
#[utoipa::path(get, path = "/v1/teams/{team_id}/members", tag = "extensions", params(("team_id" = String, Path)),
    responses((status = 200, body = MembersView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
) -> ApiResult<Json<MembersView>> {
    let members = state
        .service
        .teams()
        .list_members(&caller.0, &team_id)
        .await?;
    Ok(Json(MembersView {
        members: members
            .into_iter()
            .map(|(u, role)| MemberView {
                user_id: u.id,
                email: u.email,
                name: u.name,
                role,
            })
            .collect(),
    }))
}

/// Extension: add a user to a team or change its role (team or org admins).
/// Body: `role` (`ADMIN` or `MEMBER`, default `MEMBER`). Answers the
/// membership: the user with its role in this team. A demotion from team
/// admin of a user who answers for keys of this team needs `revoke_keys` or
/// `transfer_keys_to` (otherwise 409, listing the keys).
#[utoipa::path(put, path = "/v1/teams/{team_id}/members/{user_id}", tag = "extensions", request_body = MembershipRequest,
    params(("team_id" = String, Path), ("user_id" = String, Path), KeyHandoverQuery),
    responses((status = 200, body = MemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn set_member(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, user_id)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<KeyHandoverQuery>,
    Body(body): Body<MembershipRequest>,
) -> ApiResult<Json<MemberView>> {
    let role = match body.role.as_deref() {
        None => TeamRole::Member,
        Some(r) => r.parse().map_err(|_| {
            ApiError::invalid(format!("unknown role {r:?}; expected ADMIN or MEMBER"))
        })?,
    };
    let keys = q.handover()?;
    let user = state
        .service
        .teams()
        .set_member(&caller.0, &team_id, &user_id, role, keys)
        .await?;
    Ok(Json(MemberView {
        user_id: user.id,
        email: user.email,
        name: user.name,
        role,
    }))
}

/// Extension: remove a user from a team (team or org admins; not from the
/// default team). A user who answers for keys of this team needs
/// `revoke_keys` or `transfer_keys_to` (otherwise 409, listing the keys).
#[utoipa::path(delete, path = "/v1/teams/{team_id}/members/{user_id}", tag = "extensions",
    params(("team_id" = String, Path), ("user_id" = String, Path), KeyHandoverQuery),
    responses((status = 200, description = "Removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, user_id)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<KeyHandoverQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let keys = q.handover()?;
    state
        .service
        .teams()
        .remove_member(&caller.0, &team_id, &user_id, keys)
        .await?;
    Ok(Json(
        serde_json::json!({"team_id": team_id, "user_id": user_id}),
    ))
}
