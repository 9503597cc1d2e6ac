//! `users/me` and `organizations/me`.

use super::error::{ApiResult, ErrorBody};
use super::extract::Caller;
use super::views::{organization_view, user_view, OrganizationView, UserView};
use super::AppState;
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

/// The user behind the caller's key.
#[utoipa::path(get, path = "/v1/users/me", tag = "users",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn users_me(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<UserView>> {
    let user = state.service.directory().current_user(&caller.0).await?;
    let org = state
        .service
        .directory()
        .current_organization(&caller.0)
        .await?;
    Ok(Json(user_view(user, Some(org.name))))
}

/// The caller's organization.
#[utoipa::path(get, path = "/v1/organizations/me", tag = "organizations",
    responses((status = 200, body = OrganizationView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn organizations_me(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<OrganizationView>> {
    Ok(Json(organization_view(
        state
            .service
            .directory()
            .current_organization(&caller.0)
            .await?,
    )))
}
