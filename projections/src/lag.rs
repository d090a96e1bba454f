//! Keeps each assigned partition's high watermark fresh, for lag.
//!
//! librdkafka's statistics also carry high watermarks, but they reach the
//! application through the consumer's queue, behind every message already
//! fetched, so a worker with a backlog (or stuck on the database) would
//! learn its lag only once it had caught up. The broker is therefore also
//! asked directly (ListOffsets), on its own task.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer::ProjectionConsumer;
use crate::ProjectionMetrics;

const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Refreshes the high watermarks every `interval` until `shutdown`.
pub(crate) fn spawn_monitor(
    consumer: Arc<ProjectionConsumer>,
    metrics: Arc<ProjectionMetrics>,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let consumer = Arc::clone(&consumer);
            let metrics = Arc::clone(&metrics);
            // The client call blocks on a broker round trip.
            let refreshed = tokio::task::spawn_blocking(move || refresh(&consumer, &metrics)).await;
            if let Err(error) = refreshed {
                tracing::warn!(%error, "lag refresh task failed");
            }
        }
    })
}

fn refresh(consumer: &ProjectionConsumer, metrics: &ProjectionMetrics) {
    for (topic, partition) in metrics.assigned() {
        match consumer.fetch_watermarks(&topic, partition, QUERY_TIMEOUT) {
            Ok((low, high)) => metrics.observe_partition((topic, partition), high, low),
            Err(error) => {
                tracing::debug!(error.message = %error, topic, partition, "cannot read watermarks");
            }
        }
    }
}
