//! History routes (extensions): a secret's versions and who holds them,
//! restoring and destroying versions, deleted secrets. Thin handlers over
//! `service/history.rs`; no value ever appears in their bodies.

use super::error::{ApiResult, ErrorBody};
use super::extract::{Caller, PathParams, QueryParams};
use super::history_views::{
    DeletedSecretView, DeletedSecretsView, DestroyedVersionView, PurgedSecretView,
    SecretConsumersView, SecretVersionView, SecretVersionsView,
};
use super::AppState;
use crate::domain::time::now_micros;
use crate::service::TeamRef;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// List a secret's versions, newest first, as metadata: who wrote each and
/// when, whether it was destroyed, and which consumers hold it.
#[utoipa::path(get, path = "/v1/teams/{team_id}/secrets/{secret_name}/versions", tag = "extensions",
    params(("team_id" = String, Path), ("secret_name" = String, Path)),
    responses((status = 200, body = SecretVersionsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name)): PathParams<(String, String)>,
) -> ApiResult<Json<SecretVersionsView>> {
    let versions = state
        .service
        .secret_versions(&caller.0, TeamRef::Id(&team_id), &name, now_micros())
        .await?;
    Ok(Json((&versions).into()))
}

/// Make an earlier version the current one, as a new version (team or org
/// admins). The value never leaves the server; workloads receive it through
/// the delivery routes like any other change.
#[utoipa::path(post, path = "/v1/teams/{team_id}/secrets/{secret_name}/versions/{version}/restore", tag = "extensions",
    params(("team_id" = String, Path), ("secret_name" = String, Path), ("version" = i64, Path)),
    responses((status = 200, body = SecretVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name, version)): PathParams<(String, String, i64)>,
) -> ApiResult<Json<SecretVersionView>> {
    let record = state
        .service
        .restore_version(&caller.0, TeamRef::Id(&team_id), &name, version)
        .await?;
    Ok(Json((&record).into()))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DestroyQuery {
    /// Destroy it even though a consumer seen in the last 10 minutes still
    /// holds it (otherwise: 409). One-shot runs never block a destroy.
    force: Option<bool>,
}

/// Destroy a previous version (team or org admins): its value is removed for
/// good, its metadata stays. The current version cannot be destroyed.
#[utoipa::path(delete, path = "/v1/teams/{team_id}/secrets/{secret_name}/versions/{version}", tag = "extensions",
    params(("team_id" = String, Path), ("secret_name" = String, Path), ("version" = i64, Path), DestroyQuery),
    responses((status = 200, body = DestroyedVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn destroy_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name, version)): PathParams<(String, String, i64)>,
    QueryParams(q): QueryParams<DestroyQuery>,
) -> ApiResult<Json<DestroyedVersionView>> {
    let destroyed = state
        .service
        .destroy_version(
            &caller.0,
            TeamRef::Id(&team_id),
            &name,
            version,
            q.force.unwrap_or(false),
        )
        .await?;
    Ok(Json(DestroyedVersionView::new(&destroyed, version)))
}

/// Who holds which version of a secret: each workload key and agent
/// instance that received it, its version, and when it was last seen.
#[utoipa::path(get, path = "/v1/teams/{team_id}/secrets/{secret_name}/consumers", tag = "extensions",
    params(("team_id" = String, Path), ("secret_name" = String, Path)),
    responses((status = 200, body = SecretConsumersView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_consumers(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name)): PathParams<(String, String)>,
) -> ApiResult<Json<SecretConsumersView>> {
    let now = now_micros();
    let (record, consumers) = state
        .service
        .secret_consumers(&caller.0, TeamRef::Id(&team_id), &name, now)
        .await?;
    Ok(Json(SecretConsumersView::new(&record, &consumers, now)))
}

/// List the team's deleted secrets that can still be undeleted.
#[utoipa::path(get, path = "/v1/teams/{team_id}/deleted_secrets", tag = "extensions",
    params(("team_id" = String, Path)),
    responses((status = 200, body = DeletedSecretsView), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deleted(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
) -> ApiResult<Json<DeletedSecretsView>> {
    let deleted = state
        .service
        .deleted_secrets(&caller.0, TeamRef::Id(&team_id))
        .await?;
    let keep_for = state.service.keep_deleted_micros();
    Ok(Json(DeletedSecretsView {
        deleted_secrets: deleted
            .iter()
            .map(|d| DeletedSecretView::new(d, keep_for))
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeletedQuery {
    /// Which deleted secret of that name (by id); default: the most
    /// recently deleted.
    id: Option<String>,
}

/// Undelete a secret (team or org admins): it is live again with its id,
/// versions and value. 409 when its name is taken again.
#[utoipa::path(post, path = "/v1/teams/{team_id}/deleted_secrets/{secret_name}/restore", tag = "extensions",
    params(("team_id" = String, Path), ("secret_name" = String, Path), DeletedQuery),
    responses((status = 200, body = SecretVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn undelete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<DeletedQuery>,
) -> ApiResult<Json<SecretVersionView>> {
    let record = state
        .service
        .undelete_secret(&caller.0, TeamRef::Id(&team_id), &name, q.id.as_deref())
        .await?;
    Ok(Json((&record).into()))
}

/// Purge a deleted secret now, with its versions (team or org admins).
#[utoipa::path(delete, path = "/v1/teams/{team_id}/deleted_secrets/{secret_name}", tag = "extensions",
    params(("team_id" = String, Path), ("secret_name" = String, Path), DeletedQuery),
    responses((status = 200, body = PurgedSecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn purge_deleted(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<DeletedQuery>,
) -> ApiResult<Json<PurgedSecretView>> {
    let purged = state
        .service
        .purge_deleted_secret(&caller.0, TeamRef::Id(&team_id), &name, q.id.as_deref())
        .await?;
    Ok(Json(PurgedSecretView {
        id: purged.record.id,
        name: purged.record.name,
        purged: true,
    }))
}
