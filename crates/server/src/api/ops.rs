//! Operational endpoints, unauthenticated: liveness, readiness, metrics and
//! the OpenAPI document.

use super::AppState;
use crate::store::StoreError;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "Up")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers, writes succeed (after a write failed for lack of disk
/// space, until one succeeds again) and the master key is loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "Ready"), (status = 503, description = "Store unreachable, or its disk is full")))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.service.ping().await {
        Ok(()) => Json(json!({
            "status": "ready",
            "backend": state.service.backend(),
            "kek_id": state.service.kek_id(),
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let message = match e {
                StoreError::StorageFull { .. } => super::error::STORAGE_FULL,
                _ => "the store is not reachable",
            };
            super::error::ApiError::new(super::error::ErrorCode::Unavailable, message)
                .into_response()
        }
    }
}

/// Prometheus metrics (text format), on the metrics listener only. Labels
/// carry route templates, methods, status codes and a few fixed sets (never
/// a secret's name or value, nor anything whose values grow with tenants).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()), responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.get().cloned().unwrap_or_default(),
    )
        .into_response()
}
