use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::subscriber::with_default;
use tracing_subscriber::layer::SubscriberExt;

use super::{child_of, current_traceparent, link_to, remote_context, rename, traceparent_of};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Runs `f` under a subscriber with the OpenTelemetry layer; returns what
/// `f` returned and the spans it finished.
fn traced<T>(f: impl FnOnce() -> T) -> (T, Vec<SpanData>) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let result = with_default(subscriber, f);
    provider.force_flush().unwrap();
    (result, exporter.get_finished_spans().unwrap())
}

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap()
}

#[test]
fn a_child_joins_the_trace_of_its_traceparent() {
    let (own, spans) = traced(|| {
        let span = child_of(tracing::info_span!("consume"), Some(PARENT));
        span.in_scope(current_traceparent).unwrap()
    });

    assert_eq!(trace_id(&own), TRACE_ID);
    assert_ne!(own, PARENT, "the child has a span id of its own");
    let consume = spans.iter().find(|s| s.name == "consume").unwrap();
    assert_eq!(
        consume.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap()
    );
}

#[test]
fn the_traceparent_of_a_nested_span_names_that_span() {
    let ((outer, inner), spans) = traced(|| {
        let outer = tracing::info_span!("outer");
        let inner = outer.in_scope(|| tracing::info_span!("inner"));
        (
            traceparent_of(&outer).unwrap(),
            traceparent_of(&inner).unwrap(),
        )
    });

    assert_eq!(trace_id(&outer), trace_id(&inner));
    let inner_span = spans.iter().find(|s| s.name == "inner").unwrap();
    let outer_span = spans.iter().find(|s| s.name == "outer").unwrap();
    assert_eq!(inner_span.parent_span_id, outer_span.span_context.span_id());
    assert!(inner.contains(&inner_span.span_context.span_id().to_string()));
}

#[test]
fn a_link_keeps_the_span_in_its_own_trace() {
    let (own, spans) = traced(|| {
        let span = tracing::info_span!("batch");
        link_to(&span, Some(PARENT));
        traceparent_of(&span).unwrap()
    });

    assert_ne!(trace_id(&own), TRACE_ID);
    let batch = spans.iter().find(|s| s.name == "batch").unwrap();
    let linked: Vec<String> = batch
        .links
        .iter()
        .map(|link| link.span_context.trace_id().to_string())
        .collect();
    assert_eq!(linked, [TRACE_ID]);
}

#[test]
fn malformed_or_missing_traceparents_start_a_new_trace() {
    for traceparent in [None, Some(""), Some("01-zz-yy-00"), Some("garbage")] {
        assert!(remote_context(traceparent).is_none(), "{traceparent:?}");
        let (own, _) = traced(|| {
            let span = child_of(tracing::info_span!("consume"), traceparent);
            traceparent_of(&span).unwrap()
        });
        assert_ne!(trace_id(&own), TRACE_ID);
    }
}

#[test]
fn without_an_opentelemetry_layer_there_is_no_traceparent() {
    let subscriber = tracing_subscriber::registry();
    let traceparent = with_default(subscriber, || {
        let span = child_of(tracing::info_span!("consume"), Some(PARENT));
        traceparent_of(&span)
    });
    assert_eq!(traceparent, None);
}

#[test]
fn a_started_span_can_be_renamed() {
    let (_, spans) = traced(|| {
        let span = tracing::info_span!("http.request");
        span.in_scope(|| rename(&tracing::Span::current(), "POST /api/orders".to_owned()));
    });
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["POST /api/orders"]);
}
