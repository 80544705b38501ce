//! Liveness and readiness probes for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::ApiState;

/// The process is up and answering.
pub(crate) async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// The database answers and the keyring can wrap and unwrap: safe to send traffic.
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    match state.app.check_ready().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(problem) => {
            tracing::warn!(%problem, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "error": { "code": "not_ready", "message": "a dependency is unavailable" } })),
            )
                .into_response()
        }
    }
}
