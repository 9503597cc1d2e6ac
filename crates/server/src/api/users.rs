//! User routes: the Baseten directory, plus user management (extension).

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Body, Caller, PathParams, QueryParams};
use super::views::{
    user_view, CreateUserRequest, MintKeyRequest, NewApiKeyView, PaginationView, UserAdminView,
    UserTombstoneView, UserView, UsersView,
};
use super::AppState;
use crate::domain::access::KeyHandover;
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
    let org = state
        .service
        .directory()
        .current_organization(&caller.0)
        .await?;
    let page = state
        .service
        .users()
        .list_users(&caller.0, q.cursor, limit, q.email)
        .await?;
    Ok(Json(UsersView {
        items: page
            .users
            .into_iter()
            .map(|u| user_view(u, Some(org.name.clone())))
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
    let user = state.service.users().get_user(&caller.0, &user_id).await?;
    let org = state
        .service
        .directory()
        .current_organization(&caller.0)
        .await?;
    Ok(Json(user_view(user, Some(org.name))))
}

/// What to do with the API keys a user answers for when a change takes
/// away the authority they were issued under (a demotion, a removal from a
/// team, the deletion of the user). Without either, such a change is
/// refused with 409 listing the keys.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct KeyHandoverQuery {
    /// `true`: revoke those keys with the change (on every node within a
    /// second).
    revoke_keys: Option<bool>,
    /// A user of the organization who may issue those keys (an org admin,
    /// or an admin of their team) answers for them from now on.
    transfer_keys_to: Option<String>,
}

impl KeyHandoverQuery {
    pub fn handover(self) -> ApiResult<KeyHandover> {
        match (self.revoke_keys.unwrap_or(false), self.transfer_keys_to) {
            (true, Some(_)) => Err(ApiError::invalid(
                "revoke_keys and transfer_keys_to exclude each other: choose one",
            )),
            (true, None) => Ok(KeyHandover::Revoke),
            (false, Some(to)) if to.trim().is_empty() => {
                Err(ApiError::invalid("transfer_keys_to must name a user id"))
            }
            (false, Some(to)) => Ok(KeyHandover::TransferTo(to)),
            (false, None) => Ok(KeyHandover::Refuse),
        }
    }
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
        .users()
        .create_user(&caller.0, body.email, body.name, role)
        .await?;
    Ok(Json(user.into()))
}

/// Extension: delete a user with its personal keys and memberships (org
/// admins). The workspace keys the user created are revoked or handed over
/// as the query says; without `revoke_keys` or `transfer_keys_to`, a user
/// who answers for any is kept (409 listing them).
#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "extensions", params(("user_id" = String, Path), KeyHandoverQuery),
    responses((status = 200, body = UserTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(user_id): PathParams<String>,
    QueryParams(q): QueryParams<KeyHandoverQuery>,
) -> ApiResult<Json<UserTombstoneView>> {
    let keys = q.handover()?;
    let user = state
        .service
        .users()
        .delete_user(&caller.0, &user_id, keys)
        .await?;
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
        .keys()
        .mint_personal_key(&caller.0, &user_id, body.name)
        .await?;
    Ok(Json(NewApiKeyView {
        api_key: token.token().to_owned(),
    }))
}
