//! What every HTTP request leaves behind: a span in the caller's trace
//! (continued from its `traceparent` header) and a duration sample by route
//! template and status, `http_request_duration_seconds`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ticketing_eventstore::trace_context::{self, TRACEPARENT};
use tracing::Span;

use crate::request_context::REQUEST_ID;

/// Probes and scrapes, answered every few seconds: traced only at debug
/// level, so they do not drown the traces of real requests.
const QUIET_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The request's span, named and labelled after OpenTelemetry's HTTP
/// conventions; a child of the caller's span when it sent `traceparent`.
/// Route and status are recorded by [`record_request`] once known.
pub(crate) fn make_span(request: &axum::http::Request<Body>) -> Span {
    macro_rules! request_span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "http.request",
                otel.name = %request.method(),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                http.request.method = %request.method(),
                url.path = request.uri().path(),
                http.route = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
                request_id = header(request.headers(), REQUEST_ID),
            )
        };
    }
    let span = if QUIET_PATHS.contains(&request.uri().path()) {
        request_span!(tracing::Level::DEBUG)
    } else {
        request_span!(tracing::Level::INFO)
    };
    trace_context::child_of(span, header(request.headers(), TRACEPARENT))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Times the request and labels it by its route template (never the raw
/// path, whose ids would make one series per resource). Runs after routing,
/// inside the request's span.
pub(crate) async fn record_request(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().to_string();
    let span = Span::current();
    span.record("http.route", route.as_str());
    trace_context::rename(&span, format!("{method} {route}"));
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => status.as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    response
}
