//! Liveness and readiness probes, and the Prometheus scrape endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// What the probes answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    /// Why the process is not ready (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    reason: Option<String>,
}

impl Health {
    fn status(status: &'static str) -> Json<Health> {
        Json(Health {
            status,
            reason: None,
        })
    }
}

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics
///
/// Every metric of the process, for Prometheus to scrape (on the API port
/// unless `METRICS_PORT` moves it to its own).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text exposition format.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "\"Not Found\": metrics are served on `METRICS_PORT` instead.", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(render) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], render()).into_response(),
        None => ApiError::NotFound.into_response(),
    }
}

/// Liveness
///
/// The process is up and serving.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "liveness",
    tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Health))
)]
pub(crate) async fn live() -> Json<Health> {
    Health::status("ok")
}

/// Readiness
///
/// Ready to take traffic: the database (and the read replica, if one is
/// configured) answers and every check added by the roles running
/// alongside (e.g. projection lag) passes.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readiness",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`", body = Health),
        (status = 503, description = "`{\"status\":\"unavailable\",\"reason\":\"...\"}`", body = Health),
    )
)]
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    if let Err(reason) = answers(&state.pool, "database").await {
        return not_ready(reason);
    }
    // The query endpoints read there: a replica that is down fails them.
    if let Some(replica) = &state.read_pool {
        if let Err(reason) = answers(replica, "read database").await {
            return not_ready(reason);
        }
    }
    for (name, check) in &state.readiness {
        if let Err(reason) = check() {
            return not_ready(format!("{name}: {reason}"));
        }
    }
    (StatusCode::OK, Health::status("ready"))
}

/// Whether `pool` answers a trivial query within 2 s; `Err` says why not
/// (`name` names the database in the reason). Every role's `/readyz` uses
/// it.
pub async fn answers(pool: &sqlx::PgPool, name: &str) -> Result<(), String> {
    let check = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: {name} unavailable");
            Err(format!("{name} unavailable"))
        }
        Err(_) => Err(format!("{name} did not answer within 2 s")),
    }
}

fn not_ready(reason: String) -> (StatusCode, Json<Health>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health {
            status: "unavailable",
            reason: Some(reason),
        }),
    )
}
