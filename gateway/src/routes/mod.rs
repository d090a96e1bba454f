//! The HTTP surface: routes, and the layers every request passes through.

mod as_of;
mod document;
pub(crate) mod health;
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
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;
use uuid::Uuid;

use crate::conditional::conditional_get;
use crate::consistency::remember_token;
use crate::error::ApiError;
use crate::http_telemetry;
use crate::idempotency::idempotent;
use crate::openapi;
use crate::precompressed;
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
/// compressed when the client accepts it (pages served from memory come
/// compressed already: see `precompressed`); a fast level, since the CPU it
/// costs is spent on every uncached request. Answers under
/// `precompressed::MIN_BYTES` go as they are: a compressor's set-up costs
/// more than the few bytes it would save (a fifth of the server's CPU
/// under the create-ticket load, when every 201 was compressed).
fn compression() -> CompressionLayer<impl Predicate> {
    let predicate = SizeAbove::new(precompressed::MIN_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE);
    CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .compress_when(predicate)
}

type Route = UtoipaMethodRouter<Arc<AppState>>;

/// The layers some routes have, each applied with its documentation, so
/// the two cannot drift. Without a state (only the document is wanted)
/// the documentation is added and the layer, which needs the state, not.
struct RouteLayers<'a>(Option<&'a Arc<AppState>>);

impl RouteLayers<'_> {
    /// `Idempotency-Key` (see `idempotency`).
    fn idempotent(&self, (schemas, mut paths, route): Route) -> Route {
        openapi::idempotency_key(&mut paths);
        let route = match self.0 {
            Some(state) => route.layer(from_fn_with_state(state.clone(), idempotent)),
            None => route,
        };
        (schemas, paths, route)
    }

    /// Shed while the read side lags (see `shedding`).
    fn shed(&self, (schemas, mut paths, route): Route) -> Route {
        openapi::write_shedding(&mut paths);
        let route = match self.0 {
            Some(state) => route.layer(from_fn_with_state(state.clone(), shed_writes)),
            None => route,
        };
        (schemas, paths, route)
    }
}

/// Every route, with its OpenAPI documentation. A route is added only
/// through `routes!`, which takes the handler's `#[utoipa::path]`: there is
/// no way to serve an operation the document leaves out.
pub(crate) fn api(state: Option<&Arc<AppState>>) -> OpenApiRouter<Arc<AppState>> {
    let layers = RouteLayers(state);
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(users::signup))
        .routes(routes!(users::signin))
        .routes(routes!(users::signout))
        .routes(routes!(users::current_user))
        .routes(layers.shed(layers.idempotent(routes!(tickets::create))))
        .routes(routes!(tickets::list))
        .routes(layers.shed(routes!(tickets::update)))
        .routes(routes!(tickets::show))
        .routes(layers.shed(layers.idempotent(routes!(orders::create))))
        .routes(routes!(orders::list))
        .routes(layers.idempotent(routes!(payments::create)))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::show))
        .routes(routes!(history::ticket))
        .routes(routes!(history::order))
        .routes(routes!(document::openapi))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let remember_token = from_fn_with_state(state.clone(), remember_token);
    let request_id = HeaderName::from_static(REQUEST_ID);
    let (routes, _) = api(Some(&state)).split_for_parts();
    routes
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

#[cfg(test)]
mod tests {
    /// Only `routes!` documents a route, so nothing here may add one any
    /// other way: the OpenAPI document then lists every route there is.
    #[test]
    fn every_route_is_added_through_routes_macro() {
        let source = include_str!("mod.rs");
        let code = source
            .split_once("#[cfg(test)]")
            .map_or(source, |(code, _)| code);
        for bypass in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ] {
            assert!(
                !code.contains(bypass),
                "routes/mod.rs adds a route with `{bypass}`: use `.routes(routes!(handler))` so it is documented"
            );
        }
    }
}
