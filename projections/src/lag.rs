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
use tokio::sync::Notify;
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
    lost: Arc<Notify>,
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
            match refreshed {
                Ok(true) => lost.notify_one(),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "lag refresh task failed"),
            }
        }
    })
}

/// The position's floor is the group's committed offset (what a restarted
/// worker resumes from), or the earliest offset if it has none: never the
/// high watermark, so a backlog is reported as soon as it is known.
///
/// A log that now ends before an offset this worker committed was lost
/// (a topic recreated, a broker that kept it only in memory restarted):
/// reported, and `true` returned so the read side checks itself against
/// the event store at once.
fn refresh(consumer: &ProjectionConsumer, metrics: &ProjectionMetrics) -> bool {
    let mut lost = false;
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
                if let Some(confirmed) = metrics.below_committed(&topic, partition, high) {
                    tracing::error!(
                        topic,
                        partition,
                        high_watermark = high,
                        committed = confirmed,
                        "the partition's log ends before an offset this worker committed: \
                         the broker lost data; checking the read side against the event store"
                    );
                    metrics.record_transport_loss(&topic, "watermark_below_committed");
                    metrics.reset_partition(&topic, partition, low.max(0));
                    lost = true;
                    // A committed offset past the log's end is void too.
                    metrics.observe_partition((topic, partition), high, low);
                    continue;
                }
                metrics.observe_partition((topic, partition), high, committed.unwrap_or(low));
            }
            Err(error) => {
                tracing::debug!(error.message = %error, topic, partition, "cannot read watermarks");
            }
        }
    }
    lost
}
