//! The small HTTP server of the roles without an API (`relay`, `project`,
//! `saga`):
//! `/healthz`, `/readyz` and `/metrics`, like `serve` has on its API port.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use ticketing_gateway::{database_answers, MetricsRender, ReadinessCheck};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics_render;

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

struct OpsState {
    pool: PgPool,
    /// `serve`'s read replica, if it has one.
    replica: Option<PgPool>,
    checks: Vec<(&'static str, ReadinessCheck)>,
    metrics: MetricsRender,
}

/// Binds `host:port` and serves the probes and metrics until `shutdown`.
/// `/readyz` requires the database (and `replica`, if given) and every one
/// of `checks`.
pub(crate) async fn spawn(
    host: IpAddr,
    port: u16,
    pool: PgPool,
    replica: Option<PgPool>,
    checks: Vec<(&'static str, ReadinessCheck)>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind((host, port))
        .await
        .with_context(|| format!("Failed to bind the metrics listener on {host}:{port}"))?;
    let state = Arc::new(OpsState {
        pool,
        replica,
        checks,
        metrics: metrics_render(),
    });
    let router = Router::new()
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state);
    tracing::info!(%host, port, "serving /healthz, /readyz and /metrics");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(error.cause_chain = ?error, error.message = %error, "metrics server failed");
        }
    }))
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<Arc<OpsState>>) -> (StatusCode, Json<serde_json::Value>) {
    let mut reason = database_answers(&state.pool, "database").await.err();
    if reason.is_none() {
        if let Some(replica) = &state.replica {
            reason = database_answers(replica, "read database").await.err();
        }
    }
    let reason = reason.or_else(|| {
        state
            .checks
            .iter()
            .find_map(|(name, check)| check().err().map(|reason| format!("{name}: {reason}")))
    });
    match reason {
        None => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": reason })),
        ),
    }
}

async fn metrics(State(state): State<Arc<OpsState>>) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], (state.metrics)()).into_response()
}
