//! The process's one metrics recorder: whatever any crate records through
//! the `metrics` facade (`metrics::counter!`, `gauge!`, `histogram!`) is
//! rendered here in the Prometheus text format.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ticketing_gateway::MetricsRender;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Histogram buckets, in seconds, of every `*_seconds` metric: from a fast
/// HTTP request to a read model minutes behind.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often histograms are compacted; the recorder leaves that to us.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Installs the recorder (histograms, not summaries, so that Prometheus
/// can aggregate and alert on quantiles) and keeps it compact.
pub(super) fn install() -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)?
        .install_recorder()?;
    describe();
    let upkeep = handle.clone();
    // Runs for the life of the process; nothing waits for it.
    drop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_PERIOD).await;
            upkeep.run_upkeep();
        }
    }));
    let _ = HANDLE.set(handle);
    Ok(())
}

/// Renders every metric for `/metrics`; empty if no recorder is installed.
pub(crate) fn metrics_render() -> MetricsRender {
    Arc::new(|| {
        HANDLE
            .get()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    })
}

/// Help texts and units, shown as `# HELP` lines once a series exists.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests by method, route template and status"
    );
    describe_counter!(
        "events_published_total",
        "Events the broker acknowledged, by topic"
    );
    describe_histogram!(
        "relay_publish_latency_seconds",
        Unit::Seconds,
        "Event commit to broker acknowledgement"
    );
    describe_gauge!(
        "outbox_backlog_events",
        "Committed events not yet published"
    );
    describe_gauge!("relay_leader", "1 while this process holds the relay lock");
    describe_counter!(
        "relay_failed_batches_total",
        "Relay batches not published, by reason"
    );
    describe_counter!(
        "events_processed_total",
        "Consumed events by topic and final outcome"
    );
    describe_counter!(
        "events_failed_total",
        "Failed attempts to process an event, by topic and reason"
    );
    describe_counter!(
        "dlq_messages_total",
        "Messages parked on a dead-letter topic, by origin topic"
    );
    describe_histogram!(
        "event_processing_duration_seconds",
        Unit::Seconds,
        "Message receipt to read-model commit"
    );
    describe_histogram!(
        "command_to_read_model_seconds",
        Unit::Seconds,
        "Event commit in the event store to read-model commit"
    );
    describe_gauge!(
        "consumer_lag_messages",
        "Messages on the broker not yet projected, per partition"
    );
    describe_counter!(
        "events_healed_total",
        "Events read back from the event store to fill gaps"
    );
    describe_counter!(
        "command_conflicts_total",
        "Optimistic-lock conflicts, by aggregate type"
    );
    describe_counter!(
        "command_retries_total",
        "Commands re-run after a conflict, by aggregate type"
    );
}
