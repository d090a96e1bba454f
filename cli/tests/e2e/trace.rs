//! One POST /api/orders is one trace: the HTTP request's span, a
//! `relay.publish` span per event it wrote (children of the request span,
//! whose context is stored with the events), and a `projection.apply` span
//! per event (children of the publish span, whose context the Kafka message
//! carries as `traceparent`). Exported over OTLP (gRPC) to an in-process
//! collector. The order's expiry, fired by the saga worker a second later,
//! continues the same trace: a `saga.fire` span, child of the request span
//! (whose context the timer stored), and the publish of its follow-up
//! `OrderExpired` event as a child of that.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};

use crate::helpers::{start_system_with, System};

/// Drains the collector as spans arrive (its channel is small, and a full
/// one would stall the exporter), keeping every span received.
fn collect(mut collector: FakeCollectorServer) -> Arc<Mutex<Vec<ExportedSpan>>> {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    drop(tokio::spawn(async move {
        loop {
            let batch = collector
                .exported_spans(1, Duration::from_millis(100))
                .await;
            kept.lock().unwrap().extend(batch);
        }
    }));
    spans
}

/// Waits (bounded) until `done` holds over the spans received so far.
async fn spans_when(
    spans: &Mutex<Vec<ExportedSpan>>,
    done: impl Fn(&[ExportedSpan]) -> bool,
) -> Vec<ExportedSpan> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let received = spans.lock().unwrap().clone();
        if done(&received) || Instant::now() > deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn in_trace<'a>(
    spans: &'a [ExportedSpan],
    trace_id: &'a str,
    suffix: &'a str,
) -> impl Iterator<Item = &'a ExportedSpan> {
    spans
        .iter()
        .filter(move |s| s.trace_id == trace_id && s.name.ends_with(suffix))
}

/// Whether `span` has the string attribute `key` = `value` (the collector
/// keeps attribute values in their debug form).
fn has_attribute(span: &ExportedSpan, key: &str, value: &str) -> bool {
    span.attributes
        .get(key)
        .is_some_and(|found| found.contains(&format!("StringValue({value:?})")))
}

/// A system exporting its spans (OTLP over gRPC, flushed every 100 ms) to
/// an in-process collector, with `extra` settings; and the spans received.
async fn traced_system(extra: &[(&str, &str)]) -> (System, Arc<Mutex<Vec<ExportedSpan>>>) {
    let collector = FakeCollectorServer::start().await.unwrap();
    let endpoint = collector.endpoint();
    let spans = collect(collector);
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    env.extend_from_slice(extra);
    (start_system_with(&env).await, spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_order_is_one_trace_from_the_request_through_the_relay_to_the_projection() {
    let (system, spans) = traced_system(&[("ORDER_EXPIRATION_SECONDS", "1")]).await;
    let (client, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&client, "concert", 10.0).await;

    let (order, _) = system
        .place_order(&client, ticket["id"].as_str().unwrap())
        .await;

    let is_order_request = |s: &ExportedSpan| {
        s.name == "POST /api/orders" && s.attributes.contains_key("http.response.status_code")
    };
    let saga_follow_up = |spans: &[ExportedSpan], request: &ExportedSpan| {
        let sagas: Vec<&ExportedSpan> = spans
            .iter()
            .filter(|s| s.name == "saga.fire" && s.parent_span_id == request.span_id)
            .collect();
        let follow_ups = in_trace(spans, &request.trace_id, " publish")
            .filter(|p| sagas.iter().any(|s| s.span_id == p.parent_span_id))
            .count();
        (sagas.len(), follow_ups)
    };
    let spans = spans_when(&spans, |spans| {
        spans.iter().filter(|s| is_order_request(s)).any(|request| {
            in_trace(spans, &request.trace_id, " process").count() >= 2
                && saga_follow_up(spans, request).1 >= 1
        })
    })
    .await;
    let requests: Vec<&ExportedSpan> = spans.iter().filter(|s| is_order_request(s)).collect();
    assert_eq!(requests.len(), 1, "one span for the one POST /api/orders");
    let request = requests[0];
    assert_eq!(request.parent_span_id, "", "the request starts the trace");
    assert!(
        has_attribute(request, "http.route", "/api/orders"),
        "{request:?}"
    );
    let trace_id = request.trace_id.as_str();
    let published: Vec<&ExportedSpan> = in_trace(&spans, trace_id, " publish")
        .filter(|p| p.parent_span_id == request.span_id)
        .collect();
    let projected: Vec<&ExportedSpan> = in_trace(&spans, trace_id, " process")
        .filter(|p| {
            published
                .iter()
                .any(|publish| publish.span_id == p.parent_span_id)
        })
        .collect();
    assert_eq!(
        published.len(),
        2,
        "TicketReserved and OrderPlaced are published in the request's trace"
    );
    assert_eq!(projected.len(), 2, "both events projected in the trace");
    for projection in &projected {
        assert!(
            published
                .iter()
                .any(|p| p.span_id == projection.parent_span_id),
            "a projection span is a child of a publish span: {projection:?}"
        );
        assert!(
            has_attribute(projection, "outcome", "applied"),
            "{projection:?}"
        );
    }
    let order_topic_projection = projected
        .iter()
        .find(|p| p.name.contains(".orders."))
        .expect("the order event's projection");
    assert!(
        spans.iter().any(|s| s.name == "projection write"
            && s.links
                .iter()
                .any(|link| link.span_id == order_topic_projection.span_id)),
        "the read-model write of the batch links to the projection span"
    );
    assert_eq!(order["status"], "created");
    // The expiry: the saga's span continues the request's trace, and the
    // follow-up command's event is published as its child.
    let (sagas, follow_ups) = saga_follow_up(&spans, request);
    assert!(sagas >= 1, "the expiry timer fired in the request's trace");
    assert!(
        follow_ups >= 1,
        "OrderExpired published as the saga span's child"
    );
}

/// Telemetry stays signal: a system with nothing to do exports no spans
/// (its pollers trace at debug level), and the first request afterwards is
/// still traced end to end.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_system_exports_no_spans_and_a_request_still_exports_its_trace() {
    let (system, spans) = traced_system(&[]).await;
    // What start-up traced (provisioning the topics) has been exported by
    // now; from here on the system is idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    spans.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle: Vec<String> = spans
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(idle.is_empty(), "spans exported while idle: {idle:?}");

    let (client, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&client, "concert", 10.0).await;
    let _ = system
        .place_order(&client, ticket["id"].as_str().unwrap())
        .await;
    let spans = spans_when(&spans, |spans| {
        spans
            .iter()
            .filter(|s| s.name == "POST /api/orders")
            .any(|request| in_trace(spans, &request.trace_id, " process").count() >= 2)
    })
    .await;
    let request = spans
        .iter()
        .find(|s| s.name == "POST /api/orders")
        .expect("the order request's span");
    assert_eq!(
        in_trace(&spans, &request.trace_id, " publish").count(),
        2,
        "TicketReserved and OrderPlaced published in the request's trace"
    );
    assert_eq!(in_trace(&spans, &request.trace_id, " process").count(), 2);
}
