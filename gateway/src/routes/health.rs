//! Liveness and readiness probes, and the Prometheus scrape endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of the process, for Prometheus to scrape.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(render) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], render()).into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

/// The process is up and serving.
pub(crate) async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to take traffic: the database answers and every check added by the
/// roles running alongside (e.g. projection lag) passes.
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let check = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: database unavailable");
            return not_ready("database unavailable".to_owned());
        }
        Err(_) => return not_ready("database did not answer within 2 s".to_owned()),
    }
    for (name, check) in &state.readiness {
        if let Err(reason) = check() {
            return not_ready(format!("{name}: {reason}"));
        }
    }
    (StatusCode::OK, Json(json!({ "status": "ready" })))
}

fn not_ready(reason: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
}
