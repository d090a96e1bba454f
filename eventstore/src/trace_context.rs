//! The W3C trace context across the asynchronous hops: a command's
//! `traceparent` is stored with its events, sent as a Kafka header, and
//! continued by whoever consumes them (relay, projections, sagas).
//!
//! Every helper is a no-op when no OpenTelemetry layer is installed (tests,
//! or a process started without one): nothing is lost, there is simply no
//! span context to read or to join.
//!
//! ```
//! use ticketing_eventstore::trace_context;
//!
//! // A consumer continues the producer's trace in a span of its own...
//! let span = trace_context::child_of(
//!     tracing::info_span!("saga.handle"),
//!     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//! );
//! // ...and its follow-up command stores that span's context.
//! let traceparent = span.in_scope(trace_context::current_traceparent);
//! # let _ = traceparent;
//! ```

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and event metadata key) carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`: `None` without an OpenTelemetry layer or
/// for a disabled span.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span (see [`traceparent_of`]).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The remote span a `traceparent` names; `None` if it is absent or
/// malformed.
pub fn remote_context(traceparent: Option<&str>) -> Option<Context> {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent?.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` (not yet entered) a child of the remote span `traceparent`
/// names, so that it joins that trace. A missing or malformed
/// `traceparent` leaves `span` as it was (a new trace when it has no
/// parent).
pub fn child_of(span: Span, traceparent: Option<&str>) -> Span {
    if let Some(parent) = remote_context(traceparent) {
        // Fails only without the layer or once the span started: nothing
        // to join then.
        let _ = span.set_parent(parent);
    }
    span
}

/// Adds a link from `span` to the remote span `traceparent` names, for
/// work that follows from it without being part of it (e.g. one batch
/// serving many traces).
pub fn link_to(span: &Span, traceparent: Option<&str>) {
    if let Some(linked) = remote_context(traceparent) {
        span.add_link(linked.span().span_context().clone());
    }
}

/// Renames `span` in its trace, e.g. once the route of a request is known
/// (recording `otel.name` only names a span that has not started yet).
pub fn rename(span: &Span, name: String) {
    span.context().span().update_name(name);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
