//! The HTTP surface: routes, and the layers every request passes through.

mod as_of;
mod health;
mod history;
mod orders;
mod payments;
mod tickets;
mod users;

use std::any::Any;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::HeaderName;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use uuid::Uuid;

use crate::conditional::conditional_get;
use crate::consistency::remember_token;
use crate::error::ApiError;
use crate::http_telemetry;
use crate::idempotency::idempotent;
use crate::request_context::REQUEST_ID;
use crate::shedding::shed_writes;
use crate::state::AppState;

/// Ids are UUIDs; anything else cannot name an aggregate, so it is a 404
/// without a database round trip. Returns the canonical (lowercase) form.
pub(crate) fn parse_id(raw: &str) -> Result<String, ApiError> {
    Uuid::try_parse(raw)
        .map(|id| id.to_string())
        .map_err(|_| ApiError::NotFound)
}

/// The `{id}` of a path, as sent. A path segment that is not even valid
/// UTF-8 cannot name anything either: 404, like any unknown id.
pub(crate) struct RawId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for RawId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| RawId(id))
            .map_err(|_| ApiError::NotFound)
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// A panic is a bug; the client still gets the contract's shape, never a
/// dropped connection.
fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Unexpected(anyhow::anyhow!("handler panicked")).into_response()
}

/// Large answers (a page of tickets is about 150 KB of JSON) are sent
/// compressed when the client accepts it; a fast level, since the CPU it
/// costs is spent on every uncached request.
fn compression() -> CompressionLayer {
    CompressionLayer::new().quality(CompressionLevel::Fastest)
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let idempotency = from_fn_with_state(state.clone(), idempotent);
    let shed = from_fn_with_state(state.clone(), shed_writes);
    let remember_token = from_fn_with_state(state.clone(), remember_token);
    let request_id = HeaderName::from_static(REQUEST_ID);
    Router::new()
        .route("/api/users/signup", post(users::signup))
        .route("/api/users/signin", post(users::signin))
        .route("/api/users/signout", post(users::signout))
        .route("/api/users/currentuser", get(users::current_user))
        .route(
            "/api/tickets",
            post(tickets::create)
                .layer(idempotency.clone())
                .layer(shed.clone())
                .get(tickets::list),
        )
        .route(
            "/api/tickets/{id}",
            put(tickets::update).layer(shed.clone()).get(tickets::show),
        )
        .route(
            "/api/orders",
            post(orders::create)
                .layer(idempotency.clone())
                .layer(shed)
                .get(orders::list),
        )
        .route("/api/payments", post(payments::create).layer(idempotency))
        .route("/api/orders/{id}", delete(orders::cancel).get(orders::show))
        .route("/api/tickets/{id}/history", get(history::ticket))
        .route("/api/orders/{id}/history", get(history::order))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        // The original platform answers 404 for any unknown method and path.
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(remember_token)
        .layer(from_fn(conditional_get))
        .layer(compression())
        .layer(DefaultBodyLimit::max(state.settings.body_limit_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(http_telemetry::make_span)
                        // A 5xx the handler did not expect is logged, with
                        // its cause, where it is mapped (`ApiError`); a shed
                        // or busy 503 is routine and must stay cheap.
                        .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
                )
                .layer(from_fn(http_telemetry::record_request))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}
