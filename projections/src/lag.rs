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
use rdkafka::{Offset, TopicPartitionList};
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

/// The position's floor is the group's committed offset (what a restarted
/// worker resumes from), or the earliest offset if it has none: never the
/// high watermark, so a backlog is reported as soon as it is known.
fn refresh(consumer: &ProjectionConsumer, metrics: &ProjectionMetrics) {
    let committed = match consumer.committed(QUERY_TIMEOUT) {
        Ok(committed) => committed,
        Err(error) => {
            tracing::debug!(error.message = %error, "cannot read committed offsets");
            TopicPartitionList::new()
        }
    };
    for (topic, partition) in metrics.assigned() {
        let committed =
            committed
                .find_partition(&topic, partition)
                .and_then(|p| match p.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
        match consumer.fetch_watermarks(&topic, partition, QUERY_TIMEOUT) {
            Ok((low, high)) => {
                metrics.observe_partition((topic, partition), high, committed.unwrap_or(low));
            }
            Err(error) => {
                tracing::debug!(error.message = %error, topic, partition, "cannot read watermarks");
            }
        }
    }
}
