//! Team routes (Baseten's read-only view of teams).

use super::error::{ApiResult, ErrorBody};
use super::extract::{Caller, PathParams, QueryParams};
use super::views::{team_view, TeamView, TeamsView};
use super::AppState;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TeamFilter {
    /// Only the team with exactly this name.
    name: Option<String>,
}

/// List the teams the caller can see.
#[utoipa::path(get, path = "/v1/teams", tag = "teams", params(TeamFilter),
    responses((status = 200, body = TeamsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_teams(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(filter): QueryParams<TeamFilter>,
) -> ApiResult<Json<TeamsView>> {
    let teams = state
        .service
        .teams()
        .list_teams(&caller.0, filter.name.as_deref())
        .await?;
    Ok(Json(TeamsView {
        teams: teams.into_iter().map(team_view).collect(),
    }))
}

/// One team the caller can see.
#[utoipa::path(get, path = "/v1/teams/{team_id}", tag = "teams", params(("team_id" = String, Path)),
    responses((status = 200, body = TeamView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get_team(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
) -> ApiResult<Json<TeamView>> {
    Ok(Json(team_view(
        state.service.teams().get_team(&caller.0, &team_id).await?,
    )))
}
