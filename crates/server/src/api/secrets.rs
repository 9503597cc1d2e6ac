//! Secret routes: thin handlers over the secrets service.

use super::error::{ApiResult, ErrorBody};
use super::extract::{Body as JsonBody, Caller, PathParams};
use super::listing_cache::MAX_LISTING_BYTES;
use super::views::{SecretTombstoneView, SecretView, SecretsView, UpsertSecretRequest};
use super::AppState;
use crate::domain::types::ListedSecret;
use crate::service::secrets::{ListingStamp, SecretPages, TeamListing};
use crate::service::TeamRef;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use std::sync::Arc;

/// Appends a page of entries to `out`, each preceded by a comma except the
/// listing's very first.
fn write_entries(out: &mut Vec<u8>, page: &[ListedSecret], first: &mut bool) {
    for s in page {
        if !std::mem::take(first) {
            out.push(b',');
        }
        // Serializing strings into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, &SecretView::from(s));
    }
}

const OPEN: &[u8] = br#"{"secrets":["#;
const CLOSE: &[u8] = b"]}";

/// A listing as `{"secrets": [...]}`. One that fits in its first page is
/// answered at once; a larger one is streamed page by page, so the server
/// holds one page per request whatever the listing's size (plus, for a team
/// listing, the copy being kept for the listing cache, up to its limit). A
/// store error after the first page can only cut the stream short; it is
/// logged.
async fn listing(mut pages: SecretPages, keep: Option<Keep>) -> ApiResult<Response> {
    let first_page = pages.next().await?.map(|p| p.entries).unwrap_or_default();
    let mut first = true;
    let mut head = Vec::with_capacity(OPEN.len() + first_page.len() * 160 + CLOSE.len());
    head.extend_from_slice(OPEN);
    write_entries(&mut head, &first_page, &mut first);
    if pages.is_done() {
        head.extend_from_slice(CLOSE);
        let body = Bytes::from(head);
        if let Some(keep) = keep {
            keep.state.listings.put(keep.stamp, body.clone());
        }
        return Ok(json_response(Body::from(body)));
    }
    let copy = keep.map(|keep| (keep, head.clone()));
    let state = Some((pages, first, copy));
    let rest = futures_util::stream::unfold(state, |state| async move {
        let (mut pages, mut first, mut copy) = state?;
        let chunk = match pages.next().await {
            Ok(Some(page)) => {
                let mut chunk = Vec::with_capacity(page.entries.len() * 160);
                write_entries(&mut chunk, &page.entries, &mut first);
                // Rendered: the page's turn in the lane ends now.
                drop(page);
                Bytes::from(chunk)
            }
            Ok(None) => {
                if let Some((keep, mut whole)) = copy {
                    whole.extend_from_slice(CLOSE);
                    keep.state.listings.put(keep.stamp, Bytes::from(whole));
                }
                return Some((Ok(Bytes::from_static(CLOSE)), None));
            }
            Err(e) => {
                tracing::error!(error = %e, "a streamed listing failed; cutting it short");
                return Some((Err(std::io::Error::other("listing failed")), None));
            }
        };
        if let Some((_, whole)) = &mut copy {
            whole.extend_from_slice(&chunk);
        }
        // Too large to keep: stop copying.
        copy.take_if(|(_, whole)| whole.len() > MAX_LISTING_BYTES);
        Some((Ok(chunk), Some((pages, first, copy))))
    });
    let body = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(head)) })
        .chain(rest);
    Ok(json_response(Body::from_stream(body)))
}

/// Where a complete team listing is kept, and under which stamp.
struct Keep {
    state: Arc<AppState>,
    stamp: ListingStamp,
}

fn json_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn upsert(
    state: &AppState,
    caller: &Caller,
    team: TeamRef<'_>,
    body: UpsertSecretRequest,
) -> ApiResult<Response> {
    let record = state
        .service
        .upsert_secret(
            &caller.0,
            team,
            &body.name,
            body.value,
            body.destroy_previous.unwrap_or(false),
        )
        .await?;
    Ok(Json(SecretView::from(&record)).into_response())
}

/// List every secret the caller can reach, across teams (metadata only).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = SecretsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_secrets(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Response> {
    listing(state.service.list_all_secrets(&caller.0).await?, None).await
}

/// Create or update a secret in the caller's team (a team-bound key's team,
/// otherwise the organization's default team).
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = UpsertSecretRequest,
    responses((status = 200, body = SecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upsert_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(body): JsonBody<UpsertSecretRequest>,
) -> ApiResult<Response> {
    upsert(&state, &caller, TeamRef::Implicit, body).await
}

/// Delete a secret of the caller's team by any spelling of its name.
#[utoipa::path(delete, path = "/v1/secrets/{secret_name}", tag = "secrets",
    params(("secret_name" = String, Path, description = "Any spelling with the same canonical form")),
    responses((status = 200, body = SecretTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> ApiResult<Json<SecretTombstoneView>> {
    let deleted = state
        .service
        .delete_secret(&caller.0, TeamRef::Implicit, &name)
        .await?;
    Ok(Json(SecretTombstoneView { name: deleted.name }))
}

/// List a team's secrets (metadata only).
#[utoipa::path(get, path = "/v1/teams/{team_id}/secrets", tag = "secrets",
    params(("team_id" = String, Path)),
    responses((status = 200, body = SecretsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_team_secrets(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
) -> ApiResult<Response> {
    let TeamListing { stamp, pages } = state
        .service
        .list_team_secrets(&caller.0, TeamRef::Id(&team_id))
        .await?;
    if let Some(body) = state.listings.get(&stamp) {
        return Ok(json_response(Body::from(body)));
    }
    let keep = Keep {
        state: state.clone(),
        stamp,
    };
    listing(pages, Some(keep)).await
}

/// Create or update a secret in the given team.
#[utoipa::path(post, path = "/v1/teams/{team_id}/secrets", tag = "secrets",
    params(("team_id" = String, Path)), request_body = UpsertSecretRequest,
    responses((status = 200, body = SecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upsert_team_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(team_id): PathParams<String>,
    JsonBody(body): JsonBody<UpsertSecretRequest>,
) -> ApiResult<Response> {
    upsert(&state, &caller, TeamRef::Id(&team_id), body).await
}

/// Delete a secret of the given team by any spelling of its name.
#[utoipa::path(delete, path = "/v1/teams/{team_id}/secrets/{secret_name}", tag = "secrets",
    params(("team_id" = String, Path), ("secret_name" = String, Path)),
    responses((status = 200, body = SecretTombstoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_team_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((team_id, name)): PathParams<(String, String)>,
) -> ApiResult<Json<SecretTombstoneView>> {
    let deleted = state
        .service
        .delete_secret(&caller.0, TeamRef::Id(&team_id), &name)
        .await?;
    Ok(Json(SecretTombstoneView { name: deleted.name }))
}
