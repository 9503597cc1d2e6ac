//! HTTP only: routing, extraction, error mapping, metrics. Handlers are thin
//! and call the service layer.

pub mod audit;
pub mod directory;
pub mod error;
pub mod extract;
pub mod history;
pub mod history_views;
pub mod keys;
pub mod listing_cache;
pub mod metrics;
pub mod ops;
pub mod runtime;
mod runtime_stream;
pub mod secrets;
pub mod team_admin;
pub mod teams;
pub mod throttle;
pub mod trace;
pub mod users;
pub mod views;
pub mod waiters;
#[cfg(test)]
mod wire_contract;

use crate::service::Service;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use error::{ApiError, ErrorCode};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use tessera_wire::MAX_BODY_BYTES;

pub struct AppState {
    pub service: Service,
    pub metrics: PrometheusHandle,
    pub openapi: OnceLock<String>,
    /// Failed-authentication throttling and per-key rate limits.
    pub throttles: throttle::Throttles,
    /// Long polls held per read key and client address.
    pub waiters: waiters::Waiters,
    /// Team listings as last sent, by team revision.
    pub listings: listing_cache::ListingCache,
    /// Cancelled when the server begins to shut down (SIGTERM/SIGINT).
    /// `crate::net::serve` stops accepting when it fires; a handler that
    /// holds a request open (a long-poll waiter) should select on
    /// `shutdown.cancelled()` and answer at once, so that shutdown does not
    /// wait for its timeout.
    pub shutdown: tokio_util::sync::CancellationToken,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "Self-hosted secrets manager. The /v1 routes follow the Baseten management API for \
                       secrets, teams, users and API keys; routes marked as extensions are Tessera's own.",
    ),
    modifiers(&BearerAuth),
    security(("BearerAuth" = [])),
    components(schemas(error::ErrorBody, error::ConcernedKeyView)),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key as `Authorization: Bearer <key>`; `Authorization: Api-Key <key>` works too.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Marks every operation of the `extensions` and `runtime` tags with
/// `x-tessera-extension`, so tools can tell Tessera's own routes from
/// Baseten's.
struct MarkExtensions;

impl Modify for MarkExtensions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let is_extension = op
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == "extensions" || t == "runtime"));
                if is_extension {
                    let ext = utoipa::openapi::extensions::ExtensionsBuilder::new()
                        .add("x-tessera-extension", true)
                        .build();
                    op.extensions
                        .get_or_insert_with(Default::default)
                        .merge(ext);
                }
            }
        }
    }
}

/// Answers any operation can give besides its own: 429 where a key is
/// checked (failed-authentication throttling, per-key rate limits) and 503
/// everywhere (connection caps, the handler timeout, an unreachable store).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                if responses.contains_key("401") && !responses.contains_key("429") {
                    responses.insert(
                        "429".into(),
                        error("Rate limited: too many failed authentications from this address, \
                               or this key's request rate exceeded (`Retry-After` says when to retry)")
                        .into(),
                    );
                }
                if !responses.contains_key("503") {
                    responses.insert(
                        "503".into(),
                        error("Unavailable: connection limit reached, request timed out, or the store is unreachable")
                            .into(),
                    );
                }
            }
        }
    }
}

/// Every route, registered together with its OpenAPI operation, so the
/// document cannot miss a route the router serves.
fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(secrets::list_secrets, secrets::upsert_secret))
        .routes(routes!(secrets::delete_secret))
        .routes(routes!(
            secrets::list_team_secrets,
            secrets::upsert_team_secret
        ))
        .routes(routes!(secrets::delete_team_secret))
        .routes(routes!(history::list_versions))
        .routes(routes!(history::restore_version))
        .routes(routes!(history::destroy_version))
        .routes(routes!(history::list_consumers))
        .routes(routes!(history::list_deleted))
        .routes(routes!(history::undelete))
        .routes(routes!(history::purge_deleted))
        .routes(routes!(audit::list_audit_events))
        .routes(routes!(teams::list_teams, team_admin::create_team))
        .routes(routes!(
            teams::get_team,
            team_admin::rename_team,
            team_admin::delete_team
        ))
        .routes(routes!(team_admin::list_members))
        .routes(routes!(team_admin::set_member, team_admin::remove_member))
        .routes(routes!(keys::list_api_keys, keys::create_api_key))
        .routes(routes!(keys::create_team_api_key))
        .routes(routes!(keys::delete_api_key))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user, users::delete_user))
        .routes(routes!(users::mint_user_key))
        .routes(routes!(directory::users_me))
        .routes(routes!(directory::organizations_me))
        .routes(routes!(runtime::fetch_secrets))
        .routes(routes!(runtime::fetch_secret))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::openapi))
}

/// The router and its OpenAPI document (with extensions marked: this runs
/// after the routes are collected, which `#[openapi(modifiers)]` does not).
fn split() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api_router().split_for_parts();
    MarkExtensions.modify(&mut doc);
    CommonResponses.modify(&mut doc);
    (router, doc)
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    split().1.to_pretty_json().unwrap_or_default()
}

pub fn router(state: Arc<AppState>) -> Router {
    let (router, doc) = split();
    let _ = state.openapi.set(doc.to_pretty_json().unwrap_or_default());
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            trace::observe,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

/// The metrics listener's router: `GET /metrics` and nothing else. It is
/// served on an address of its own (`--metrics-listen`, loopback by
/// default), never on the API's listener, so reaching the API's port says
/// nothing about the server's traffic.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(ops::metrics))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "only /metrics is served here") })
        .with_state(state)
}

async fn not_found() -> ApiError {
    metrics::record_unmatched(404);
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    metrics::record_unmatched(405);
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// A panic is a bug: answer 500 without any detail (the panic hook logs
/// where it happened, never its message, which could hold data).
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::new(ErrorCode::Internal, "internal error").into_response()
}
