//! The relay's figures: kept here for [`RelayMetrics::snapshot`] (tests,
//! benchmarks) and recorded through the `metrics` facade for `/metrics`:
//!
//! - `events_published_total{topic}`: events the broker acknowledged;
//! - `relay_publish_latency_seconds`: event commit to broker acknowledgement;
//! - `outbox_backlog_events`: committed events not yet acknowledged;
//! - `relay_leader`: 1 while this process holds the relay lock;
//! - `relay_failed_batches_total{reason}`: batches not published.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

/// Shared by the relay loop (writer) and whoever reports (readers).
#[derive(Debug)]
pub struct RelayMetrics {
    published: AtomicU64,
    backlog: AtomicU64,
    leader: AtomicBool,
    /// Commit (the event's `recorded_at`) to broker acknowledgement, in
    /// microseconds, since start.
    latency_micros: Mutex<Histogram<u64>>,
}

/// A consistent-enough copy of the counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayMetricsSnapshot {
    /// Events acknowledged by the broker since start (re-sends included).
    pub events_published: u64,
    /// Committed events not yet acknowledged, as of the last measurement.
    pub backlog: u64,
    /// Whether this process holds the relay lock.
    pub leader: bool,
    pub latency_samples: u64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self {
            published: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            leader: AtomicBool::new(false),
            latency_micros: Mutex::new(latency_histogram()),
        }
    }
}

/// 1 µs to 1 h at 3 significant digits (about 180 KiB); slower
/// publications count as an hour.
fn latency_histogram() -> Histogram<u64> {
    // Only invalid bounds fail, and these are constants.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl RelayMetrics {
    pub fn snapshot(&self) -> RelayMetricsSnapshot {
        let histogram = self.histogram();
        let micros = |quantile: f64| Duration::from_micros(histogram.value_at_quantile(quantile));
        RelayMetricsSnapshot {
            events_published: self.published.load(Ordering::Relaxed),
            backlog: self.backlog.load(Ordering::Relaxed),
            leader: self.leader.load(Ordering::Relaxed),
            latency_samples: histogram.len(),
            latency_p50: micros(0.5),
            latency_p99: micros(0.99),
            latency_max: Duration::from_micros(histogram.max()),
        }
    }

    /// Records a batch of (topic, commit time) acknowledged at `acked_at`.
    pub(crate) fn record_published<'a>(
        &self,
        published: impl Iterator<Item = (&'a str, DateTime<Utc>)>,
        acked_at: DateTime<Utc>,
    ) {
        let mut histogram = self.histogram();
        let mut count = 0;
        let mut per_topic: Vec<(&str, u64)> = Vec::new();
        for (topic, committed) in published {
            let micros = (acked_at - committed)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            // Clocks may disagree by a little; a negative latency is zero.
            let micros = u64::try_from(micros).unwrap_or(0).max(1);
            histogram.saturating_record(micros);
            metrics::histogram!("relay_publish_latency_seconds").record(micros as f64 / 1e6);
            match per_topic.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, n)) => *n += 1,
                None => per_topic.push((topic, 1)),
            }
            count += 1;
        }
        let _ = self.published.fetch_add(count, Ordering::Relaxed);
        for (topic, n) in per_topic {
            metrics::counter!("events_published_total", "topic" => topic.to_owned()).increment(n);
        }
    }

    /// Exports the counters an alert or dashboard reads, at 0, for
    /// `topics`, so that the first failure is an increase.
    pub(crate) fn register(&self, topics: &[&str]) {
        for &topic in topics {
            metrics::counter!("events_published_total", "topic" => topic.to_owned()).increment(0);
            metrics::counter!("relay_topic_resets_total", "topic" => topic.to_owned()).increment(0);
        }
        for reason in ["delivery", "blocked"] {
            metrics::counter!("relay_failed_batches_total", "reason" => reason).increment(0);
        }
    }

    /// Committed events not yet acknowledged, as last measured (0 until
    /// then, and on a standby).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    pub(crate) fn set_backlog(&self, backlog: u64) {
        self.backlog.store(backlog, Ordering::Relaxed);
        metrics::gauge!("outbox_backlog_events").set(backlog as f64);
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
        metrics::gauge!("relay_leader").set(if leader { 1.0 } else { 0.0 });
    }

    /// A batch that was not published: `delivery` (the broker) or `blocked`
    /// (an event this release cannot convert).
    pub(crate) fn record_failed_batch(&self, reason: &'static str) {
        metrics::counter!("relay_failed_batches_total", "reason" => reason).increment(1);
    }

    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        // A panic while recording cannot leave the histogram unusable.
        self.latency_micros
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The broker acknowledged an offset of `topic` below one it acknowledged
/// before: it lost the topic (see `Publisher`).
pub(crate) fn record_topic_reset(topic: &str) {
    metrics::counter!("relay_topic_resets_total", "topic" => topic.to_owned()).increment(1);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::RelayMetrics;

    #[test]
    fn a_snapshot_reports_counts_and_latency_percentiles() {
        let metrics = RelayMetrics::default();
        let acked = Utc::now();
        let committed = (1..=100).map(|ms| ("topic", acked - TimeDelta::milliseconds(ms)));

        metrics.record_published(committed, acked);
        metrics.set_backlog(7);
        let snapshot = metrics.snapshot();

        assert_eq!(snapshot.events_published, 100);
        assert_eq!(snapshot.backlog, 7);
        assert_eq!(snapshot.latency_samples, 100);
        assert_eq!(snapshot.latency_p50.as_millis(), 50);
        assert_eq!(snapshot.latency_p99.as_millis(), 99);
        assert_eq!(snapshot.latency_max.as_millis(), 100);
    }
}
