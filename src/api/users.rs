//! User routes: the Baseten directory, plus user management (extension).

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::views::{
    CreateUserRequest, MintKeyRequest, NewApiKeyView, PaginationView, UserAdminView,
    UserTombstoneView, UserView, UsersView,
};
use super::AppState;
use crate::domain::types::OrgRole;
use crate::service::users::DEFAULT_PAGE;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UserQuery {
    /// The `cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<String>,
    /// Only the user with this email (compared case-insensitively).
    email: Option<String>,
}

/// Users of the caller's organization, a page at a time.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(UserQuery),
    responses((status = 200, body = UsersView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(q): QueryParams<UserQuery>,
) -> ApiResult<Json<UsersView>> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::invalid("limit must be a whole number between 1 and 1000"))?,
    };
    let org = state.service.current_organization(&caller.0).await?;
    let page = state
        .service
        .list_users(&caller.0, q.cursor, limit, q.email)
        .await?;
    Ok(Json(UsersView {
        items: page
            .users
            .into_iter()
            .map(|u| UserView::new(u, Some(org.name.clone())))
            .collect(),
        pagination: PaginationView {
            has_more: page.next_cursor.is_some(),
            cursor: page.next_cursor,
        },
    }))
}

/// One user of the caller's organization.
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users", params(("user_id" = String, Path)),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(user_id): PathParams<String>,
) -> ApiResult<Json<UserView>> {
    let user = state.service.get_user(&caller.0, &user_id).await?;
    let org = state.service.current_organization(&caller.0).await?;
    Ok(Json(UserView::new(user, Some(org.name))))
}

fn parse_org_role(raw: Option<String>) -> ApiResult<OrgRole> {
    match raw.as_deref() {
        None => Ok(OrgRole::Member),
        Some(r) => r.parse().map_err(|_| {
            ApiError::invalid(format!("unknown role {r:?}; expected ADMIN or MEMBER"))
        }),
    }
}

/// Extension: create a user (org admins). Body: `email` (required), `name`,
/// `role` (`ADMIN` or `MEMBER`, default `MEMBER`). The user joins the
/// default team.
#[utoipa::path(post, path = "/v1/users", tag = "extensions", request_body = CreateUserRequest,
    responses((status = 200, body = UserAdminView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateUserRequest>,
) -> ApiResult<Json<UserAdminView>> {
    let role = parse_org_role(body.role)?;
    let user = state
        .service
        .create_user(&caller.0, body.email, body.name, role)
        .await?;
    Ok(Json(user.into()))
}

/// Extension: delete a user with its personal keys and memberships (org admins).
#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "extensions", params(("user_id" = String, Path)),
    responses((status = 200, body = UserTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(user_id): PathParams<String>,
) -> ApiResult<Json<UserTombstoneView>> {
    let user = state.service.delete_user(&caller.0, &user_id).await?;
    Ok(Json(UserTombstoneView { user_id: user.id }))
}

/// Extension: an org admin mints a personal key for a user, so that user can
/// start. Body: optional `name`. The key is returned once.
#[utoipa::path(post, path = "/v1/users/{user_id}/api_keys", tag = "extensions", params(("user_id" = String, Path)), request_body = MintKeyRequest,
    responses((status = 200, body = NewApiKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn mint_user_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(user_id): PathParams<String>,
    Body(body): Body<MintKeyRequest>,
) -> ApiResult<Json<NewApiKeyView>> {
    let token = state
        .service
        .mint_personal_key(&caller.0, &user_id, body.name)
        .await?;
    Ok(Json(NewApiKeyView {
        api_key: token.token().to_owned(),
    }))
}
