//! Counters and consumer lag: kept here for `/readyz` and
//! [`ProjectionMetrics::snapshot`], and recorded through the `metrics`
//! facade for `/metrics`:
//!
//! - `events_processed_total{topic,outcome}`: consumed events by final
//!   outcome (`applied`, `duplicate`, `dead_lettered`);
//! - `events_failed_total{topic,reason}`: failed attempts (`decode`,
//!   `apply`, `transient` for a batch the database did not take);
//! - `dlq_messages_total{topic}`: messages parked on a dead-letter topic;
//! - `event_processing_duration_seconds{topic}`: receive to commit;
//! - `command_to_read_model_seconds{topic}`: event commit (the envelope's
//!   timestamp) to the read model's commit;
//! - `consumer_lag_messages{topic,partition}`: messages not yet projected;
//! - `events_healed_total{topic}`: events read from the store to fill gaps.
//! - `transport_loss_detected_total{topic,reason}`: the topics lost data
//!   (`offset_reset`: a partition delivered an offset below one the broker
//!   had confirmed committing; `watermark_below_committed`: its log now
//!   ends before such an offset);
//! - `read_side_divergences_total{view,source,kind}`: view rows found to
//!   differ from the event store, by the follower (`follow`, kind
//!   `behind`, view `any`) or the anti-entropy sweep (`sweep`, kinds `missing`,
//!   `behind`, `ahead`, `orphan`);
//! - `read_side_healed_events_total`: events applied from the store by the
//!   follower (the read side's own check, not gap healing);
//! - `read_side_checked_events_total`: events the follower compared;
//! - `read_side_sweep_ranges_total{outcome}`: ranges of the anti-entropy
//!   sweep, `swept`, or `deferred` while the consumer lagged (it yields to
//!   live traffic, up to `SweepConfig::max_defer`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::decode::AggregateKind;
use crate::reconcile::follow::FollowReport;
use crate::reconcile::sweep::{Difference, DifferenceKind};

/// Why the topics are known to have lost data.
pub(crate) const LOSS_REASONS: [&str; 2] = ["offset_reset", "watermark_below_committed"];

/// Shared by the worker (writer), its consumer's callbacks, and readers.
#[derive(Debug)]
pub struct ProjectionMetrics {
    applied: AtomicU64,
    duplicates: AtomicU64,
    gaps_healed: AtomicU64,
    healed_events: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    transport_losses: AtomicU64,
    store_divergences: AtomicU64,
    store_healed_events: AtomicU64,
    /// Woken after every commit that changed a view (see `changes`).
    views_changed: Notify,
    /// The highest offset per partition the broker confirmed committing for
    /// this worker, kept across rebalances: a partition's log never
    /// legitimately restarts below it.
    confirmed: Mutex<HashMap<(String, i32), i64>>,
    joined: AtomicBool,
    /// Receive to database commit, per event, in microseconds.
    processing_micros: Mutex<Histogram<u64>>,
    partitions: Mutex<BTreeMap<(String, i32), PartitionLag>>,
}

/// What is known of one assigned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionLag {
    /// The broker's high watermark, as of the last statistics.
    pub high_watermark: i64,
    /// The next offset to project: everything before it is in the database.
    pub position: i64,
    /// Whether the broker has reported the high watermark since the
    /// partition was assigned. Until then the lag is unknown: it is not
    /// exported (a 0 would claim a backlog that may be large is gone), and
    /// the worker is not ready.
    pub measured: bool,
}

impl PartitionLag {
    /// Messages on the broker not yet in the read models.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.position).max(0)
    }
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectionMetricsSnapshot {
    /// Events applied to a view (healed ones included).
    pub events_applied: u64,
    /// Events already applied, skipped.
    pub duplicates_skipped: u64,
    /// Gaps detected and filled from the event store.
    pub gaps_healed: u64,
    /// Events read from the event store to fill gaps.
    pub healed_events: u64,
    pub dead_lettered: u64,
    /// Retries of failed applies (transient or not).
    pub retries: u64,
    /// Losses of transport data noticed on the topics.
    pub transport_losses: u64,
    /// View rows found behind or different from the event store by the
    /// follower or the sweep.
    pub store_divergences: u64,
    /// Events applied from the event store by the follower and the sweep.
    pub store_healed_events: u64,
    /// Whether the consumer has joined its group (had an assignment).
    pub joined: bool,
    pub processing_samples: u64,
    pub processing_p50: Duration,
    pub processing_p99: Duration,
    pub processing_max: Duration,
    /// Lag per assigned (topic, partition).
    pub partitions: BTreeMap<(String, i32), PartitionLag>,
}

impl Default for ProjectionMetrics {
    fn default() -> Self {
        Self {
            applied: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            gaps_healed: AtomicU64::new(0),
            healed_events: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            transport_losses: AtomicU64::new(0),
            store_divergences: AtomicU64::new(0),
            store_healed_events: AtomicU64::new(0),
            views_changed: Notify::new(),
            confirmed: Mutex::new(HashMap::new()),
            joined: AtomicBool::new(false),
            // Bounded (1 µs to 10 min) rather than auto-resizing: a
            // saturating record clamps instead of growing the histogram.
            // Valid bounds and digits, so this cannot panic.
            #[allow(clippy::expect_used)]
            processing_micros: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
            ),
            partitions: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ProjectionMetrics {
    /// Moves after every commit that changed a view (events applied, from
    /// the topics or healed from the store), counted after the commit: the
    /// gateway's page cache keys its entries by it. Cheap: no lock.
    pub fn views_changed(&self) -> u64 {
        self.applied
            .load(Ordering::Acquire)
            .wrapping_add(self.store_healed_events.load(Ordering::Acquire))
            .wrapping_add(self.store_divergences.load(Ordering::Acquire))
    }

    /// Completes after the views changed (at once if they did since the
    /// last call).
    pub(crate) async fn views_changed_notified(&self) {
        self.views_changed.notified().await;
    }

    pub fn snapshot(&self) -> ProjectionMetricsSnapshot {
        let histogram = lock(&self.processing_micros);
        let micros = |quantile: f64| Duration::from_micros(histogram.value_at_quantile(quantile));
        ProjectionMetricsSnapshot {
            events_applied: self.applied.load(Ordering::Relaxed),
            duplicates_skipped: self.duplicates.load(Ordering::Relaxed),
            gaps_healed: self.gaps_healed.load(Ordering::Relaxed),
            healed_events: self.healed_events.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            transport_losses: self.transport_losses.load(Ordering::Relaxed),
            store_divergences: self.store_divergences.load(Ordering::Relaxed),
            store_healed_events: self.store_healed_events.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            processing_samples: histogram.len(),
            processing_p50: micros(0.5),
            processing_p99: micros(0.99),
            processing_max: Duration::from_micros(histogram.max()),
            partitions: lock(&self.partitions).clone(),
        }
    }

    /// Exports every counter an alert rule reads, at 0, for `topics`: an
    /// alert on `increase(...) > 0` cannot fire on a series whose first
    /// sample is already 1.
    pub(crate) fn register(&self, topics: &[&str]) {
        for &topic in topics {
            for outcome in ["applied", "duplicate", "dead_lettered"] {
                metrics::counter!("events_processed_total", "topic" => topic.to_owned(), "outcome" => outcome)
                    .increment(0);
            }
            for reason in ["decode", "apply", "transient"] {
                metrics::counter!("events_failed_total", "topic" => topic.to_owned(), "reason" => reason)
                    .increment(0);
            }
            metrics::counter!("dlq_messages_total", "topic" => topic.to_owned()).increment(0);
            metrics::counter!("events_healed_total", "topic" => topic.to_owned()).increment(0);
            for reason in LOSS_REASONS {
                metrics::counter!("transport_loss_detected_total", "topic" => topic.to_owned(), "reason" => reason)
                    .increment(0);
            }
        }
        metrics::counter!("read_side_divergences_total", "view" => "any", "source" => "follow", "kind" => "behind")
            .increment(0);
        for kind in AggregateKind::ALL {
            for difference in DifferenceKind::ALL {
                metrics::counter!("read_side_divergences_total", "view" => kind.view(), "source" => "sweep", "kind" => difference.label())
                    .increment(0);
            }
        }
        metrics::counter!("read_side_healed_events_total").increment(0);
        metrics::counter!("read_side_checked_events_total").increment(0);
        for outcome in ["swept", "deferred"] {
            metrics::counter!("read_side_sweep_ranges_total", "outcome" => outcome).increment(0);
        }
    }

    /// The topics lost data (`reason`, one of [`LOSS_REASONS`]).
    pub(crate) fn record_transport_loss(&self, topic: &str, reason: &'static str) {
        let _ = self.transport_losses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("transport_loss_detected_total", "topic" => topic.to_owned(), "reason" => reason)
            .increment(1);
    }

    /// A step of the follower.
    pub(crate) fn record_followed(&self, report: &FollowReport) {
        metrics::counter!("read_side_checked_events_total").increment(report.checked);
        if report.behind > 0 {
            let _ = self
                .store_divergences
                .fetch_add(report.behind, Ordering::Relaxed);
            // Which views is in the log line; the alert needs the count.
            metrics::counter!("read_side_divergences_total", "view" => "any", "source" => "follow", "kind" => "behind")
                .increment(report.behind);
        }
        if report.healed > 0 {
            let _ = self
                .store_healed_events
                .fetch_add(report.healed, Ordering::Relaxed);
            metrics::counter!("read_side_healed_events_total").increment(report.healed);
        }
        if report.behind > 0 || report.healed > 0 {
            self.views_changed.notify_one();
        }
    }

    /// A range of the anti-entropy sweep and what differed there.
    pub(crate) fn record_swept(&self, kind: AggregateKind, differences: &[Difference]) {
        metrics::counter!("read_side_sweep_ranges_total", "outcome" => "swept").increment(1);
        for difference in differences {
            let _ = self.store_divergences.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("read_side_divergences_total", "view" => kind.view(), "source" => "sweep", "kind" => difference.kind.label())
                .increment(1);
        }
        if !differences.is_empty() {
            self.views_changed.notify_one();
        }
    }

    /// A range of the sweep waited for the consumer lag to fall.
    pub(crate) fn record_sweep_deferred(&self) {
        metrics::counter!("read_side_sweep_ranges_total", "outcome" => "deferred").increment(1);
    }

    /// The broker confirmed committing `next_offset` for the partition.
    pub(crate) fn record_confirmed_commit(&self, topic: &str, partition: i32, next_offset: i64) {
        let mut confirmed = lock(&self.confirmed);
        let entry = confirmed.entry((topic.to_owned(), partition)).or_default();
        *entry = (*entry).max(next_offset);
    }

    /// If the partition now holds (or starts at) `offset`, below what the
    /// broker confirmed this worker had committed, its log was lost and
    /// started again: the offset confirmed, forgotten from now on (the new
    /// log is the reference).
    pub(crate) fn below_committed(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let mut confirmed = lock(&self.confirmed);
        let entry = confirmed.get_mut(&(topic.to_owned(), partition))?;
        if offset >= *entry {
            return None;
        }
        Some(std::mem::replace(entry, offset))
    }

    /// What was known of a partition is void (its log was lost): it
    /// restarts at `position`, and its lag is unknown until measured again.
    pub(crate) fn reset_partition(&self, topic: &str, partition: i32, position: i64) {
        let mut partitions = lock(&self.partitions);
        if let Some(entry) = partitions.get_mut(&(topic.to_owned(), partition)) {
            *entry = PartitionLag {
                high_watermark: position,
                position,
                measured: false,
            };
        }
    }

    /// The largest lag over the assigned partitions (0 with none).
    pub fn max_lag(&self) -> i64 {
        lock(&self.partitions)
            .values()
            .map(PartitionLag::lag)
            .max()
            .unwrap_or(0)
    }

    /// Messages behind over every assigned partition.
    pub fn total_lag(&self) -> i64 {
        lock(&self.partitions).values().map(PartitionLag::lag).sum()
    }

    /// `Ok` when the worker has joined its group and no partition lags by
    /// more than `max_lag_bound` messages; otherwise why not, for `/readyz`.
    pub fn readiness(&self, max_lag_bound: i64) -> Result<(), String> {
        if !self.joined.load(Ordering::Relaxed) {
            return Err("projection consumer has not joined its group yet".to_owned());
        }
        if lock(&self.partitions).values().any(|p| !p.measured) {
            return Err("projection lag not measured yet".to_owned());
        }
        let lag = self.max_lag();
        if lag > max_lag_bound {
            return Err(format!(
                "projection lag {lag} exceeds the bound {max_lag_bound}"
            ));
        }
        Ok(())
    }

    /// An event of `topic` applied, `since_commit` after its command
    /// committed it, with `healed_events` read from the store before it.
    pub(crate) fn record_applied(
        &self,
        topic: &str,
        healed_events: usize,
        since_commit: Option<Duration>,
    ) {
        let _ = self.applied.fetch_add(1, Ordering::Relaxed);
        self.views_changed.notify_one();
        processed(topic, "applied");
        if let Some(latency) = since_commit {
            metrics::histogram!("command_to_read_model_seconds", "topic" => topic.to_owned())
                .record(latency.as_secs_f64());
        }
        if healed_events > 0 {
            let healed = u64::try_from(healed_events).unwrap_or(u64::MAX);
            let _ = self.applied.fetch_add(healed, Ordering::Relaxed);
            let _ = self.healed_events.fetch_add(healed, Ordering::Relaxed);
            let _ = self.gaps_healed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("events_healed_total", "topic" => topic.to_owned()).increment(healed);
        }
    }

    pub(crate) fn record_duplicate(&self, topic: &str) {
        let _ = self.duplicates.fetch_add(1, Ordering::Relaxed);
        processed(topic, "duplicate");
    }

    pub(crate) fn record_dead_letter(&self, topic: &str) {
        let _ = self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        processed(topic, "dead_lettered");
        metrics::counter!("dlq_messages_total", "topic" => topic.to_owned()).increment(1);
    }

    /// A failed attempt to process `events` events of `topic`: `decode`,
    /// `apply` (retried, then dead-lettered) or `transient` (the whole
    /// batch is retried).
    pub(crate) fn record_failure(&self, topic: &str, reason: &'static str, events: usize) {
        let events = u64::try_from(events).unwrap_or(u64::MAX);
        metrics::counter!("events_failed_total", "topic" => topic.to_owned(), "reason" => reason)
            .increment(events);
    }

    pub(crate) fn record_retry(&self) {
        let _ = self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_processing<'a>(
        &self,
        durations: impl Iterator<Item = (&'a str, Duration)>,
    ) {
        let mut histogram = lock(&self.processing_micros);
        for (topic, duration) in durations {
            let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
            histogram.saturating_record(micros);
            metrics::histogram!("event_processing_duration_seconds", "topic" => topic.to_owned())
                .record(duration.as_secs_f64());
        }
    }

    /// Everything before `next_offset` of the partition is in the database.
    pub(crate) fn record_position(&self, topic: &str, partition: i32, next_offset: i64) {
        let mut partitions = lock(&self.partitions);
        let entry = partitions.entry((topic.to_owned(), partition)).or_default();
        entry.position = entry.position.max(next_offset);
        entry.high_watermark = entry.high_watermark.max(next_offset);
        export_lag(topic, partition, entry);
    }

    /// Messages up to `next_offset` of the partition were fetched, so the
    /// high watermark is at least there (a broker's report can be older, or,
    /// as with some Kafka-compatible brokers, lower).
    pub(crate) fn record_fetched(&self, topic: &str, partition: i32, next_offset: i64) {
        let mut partitions = lock(&self.partitions);
        if let Some(entry) = partitions.get_mut(&(topic.to_owned(), partition)) {
            entry.high_watermark = entry.high_watermark.max(next_offset);
            export_lag(topic, partition, entry);
        }
    }

    /// The assignment changed: partitions no longer ours stop counting.
    pub(crate) fn set_assignment(&self, assigned: &[(String, i32)]) {
        self.joined.store(true, Ordering::Relaxed);
        let mut partitions = lock(&self.partitions);
        partitions.retain(|(topic, partition), _| {
            let kept = assigned.iter().any(|(t, p)| t == topic && p == partition);
            if !kept {
                // Another worker reports it now; this one stops counting it.
                lag_gauge(topic, *partition).set(0.0);
            }
            kept
        });
        for key in assigned {
            let _ = partitions.entry(key.clone()).or_default();
        }
    }

    /// The partitions assigned to this worker.
    pub(crate) fn assigned(&self) -> Vec<(String, i32)> {
        lock(&self.partitions).keys().cloned().collect()
    }

    /// Fresh figures from the broker: the high watermark, and a floor for
    /// the position (the committed or the earliest offset), which counts
    /// when this worker has not projected anything there yet. Watermarks
    /// only grow: two sources report them, each sometimes late.
    pub(crate) fn observe_partition(&self, key: (String, i32), high: i64, floor: i64) {
        if high < 0 {
            return;
        }
        let mut partitions = lock(&self.partitions);
        if let Some(entry) = partitions.get_mut(&key) {
            entry.measured = true;
            entry.high_watermark = entry.high_watermark.max(high);
            if floor >= 0 {
                entry.position = entry.position.max(floor);
            }
            export_lag(&key.0, key.1, entry);
        }
    }
}

fn processed(topic: &str, outcome: &'static str) {
    metrics::counter!("events_processed_total", "topic" => topic.to_owned(), "outcome" => outcome)
        .increment(1);
}

fn lag_gauge(topic: &str, partition: i32) -> metrics::Gauge {
    metrics::gauge!(
        "consumer_lag_messages",
        "topic" => topic.to_owned(),
        "partition" => partition.to_string()
    )
}

fn export_lag(topic: &str, partition: i32, lag: &PartitionLag) {
    if lag.measured {
        lag_gauge(topic, partition).set(lag.lag() as f64);
    }
}

/// A panic while a lock was held cannot leave counters unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
