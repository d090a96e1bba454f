//! The projection role: consume, project, commit offsets, until stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use ticketing_eventstore::retry::Backoff;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::consumer::{self, ProjectionConsumer};
use crate::dead_letter::{self, error_chain, DeadLetters};
use crate::reconcile::{follow, sweep};
use crate::step::{Incoming, ProjectOutcome};
use crate::{changes, lag};
use crate::{ProjectionConfig, ProjectionError, ProjectionMetrics};

/// A projection worker. Several may share a consumer group; each partition
/// is projected by one of them at a time.
pub struct Projector {
    pool: PgPool,
    config: ProjectionConfig,
    metrics: Arc<ProjectionMetrics>,
    dead_letters: DeadLetters,
}

impl Projector {
    /// Creates the worker; nothing connects until it runs.
    pub fn new(pool: PgPool, config: ProjectionConfig) -> Result<Self, ProjectionError> {
        // Checked first: its error names a rejected property but, unlike
        // librdkafka's own, never shows a secret value.
        ticketing_relay::check_client_config(&config.brokers, &config.kafka_properties)?;
        let dead_letters = DeadLetters::new(&config)?;
        Ok(Self {
            pool,
            config,
            metrics: Arc::new(ProjectionMetrics::default()),
            dead_letters,
        })
    }

    pub fn metrics(&self) -> Arc<ProjectionMetrics> {
        Arc::clone(&self.metrics)
    }

    pub fn config(&self) -> &ProjectionConfig {
        &self.config
    }

    /// A check for `/readyz`: ready once joined and within the configured
    /// lag bound.
    pub fn readiness_check(
        &self,
    ) -> impl Fn() -> Result<(), String> + Clone + Send + Sync + 'static {
        let metrics = self.metrics();
        let bound = self.config.ready_max_lag;
        move || metrics.readiness(bound)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn metrics_ref(&self) -> &ProjectionMetrics {
        &self.metrics
    }

    pub(crate) fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// Consumes until `shutdown` is cancelled. A batch being projected when
    /// it is cancelled is finished and its offsets committed before this
    /// returns; a batch held up by a database outage is left uncommitted
    /// (the next owner of its partitions projects it again, harmlessly).
    /// Errors are only returned when the consumer cannot be set up.
    pub async fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectionError> {
        self.metrics.register(&self.config.topics.all());
        if !self.provision(&shutdown).await {
            return Ok(());
        }
        let consumer = Arc::new(consumer::create(&self.config, self.metrics())?);
        consumer
            .subscribe(&self.config.topics.all())
            .map_err(ProjectionError::Subscribe)?;
        let stop_monitor = shutdown.child_token();
        // Wakes the follower when the transport is seen losing data.
        let lost = Arc::new(Notify::new());
        let monitor = lag::spawn_monitor(
            Arc::clone(&consumer),
            self.metrics(),
            self.config.statistics_interval,
            Arc::clone(&lost),
            stop_monitor.clone(),
        );
        let follower = follow::spawn(
            self.pool.clone(),
            self.config.follow.clone(),
            self.metrics(),
            Arc::clone(&lost),
            stop_monitor.clone(),
        );
        let sweeper = sweep::spawn(
            self.pool.clone(),
            self.config.sweep.clone(),
            self.metrics(),
            stop_monitor.clone(),
        );
        let announcer =
            changes::spawn_announcer(self.pool.clone(), self.metrics(), stop_monitor.clone());
        tracing::info!(group = %self.config.group_id, "projection worker consuming");
        loop {
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                batch = next_batch(&consumer, self.config.max_batch) => batch,
            };
            if went_backwards(&self.metrics, &batch) {
                lost.notify_one();
            }
            for ((topic, partition), next) in next_offsets(&batch) {
                self.metrics.record_fetched(topic, partition, next);
            }
            if !self.project_until_done(&batch, &shutdown).await {
                break;
            }
            self.commit(&consumer, &batch);
        }
        stop_monitor.cancel();
        let _ = monitor.await;
        let _ = follower.await;
        let _ = announcer.await;
        if let Some(sweeper) = sweeper {
            let _ = sweeper.await;
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(error.message = %error, "final offset commit failed"),
        }
        tracing::info!("projection worker stopped");
        Ok(())
    }

    /// Retries a batch for as long as the failure is transient; `false` if
    /// shut down first.
    async fn project_until_done(&self, batch: &[Incoming], shutdown: &CancellationToken) -> bool {
        let mut attempt = 0u32;
        loop {
            match self.try_project_batch(batch).await {
                Ok(ProjectOutcome::Projected(report)) => {
                    tracing::trace!(?report, "batch projected");
                    return true;
                }
                Ok(ProjectOutcome::Empty) => return true,
                Err(error) => {
                    tracing::warn!(attempt, error.cause_chain = %error_chain(&error), error.message = %error, "batch not projected; retrying");
                    self.metrics.record_retry();
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff(attempt)) => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// Stores the offset after each partition's last message and commits
    /// asynchronously: the database already holds their effects, so a lost
    /// commit only means duplicates, which change nothing.
    fn commit(&self, consumer: &ProjectionConsumer, batch: &[Incoming]) {
        if batch.is_empty() {
            return;
        }
        let next = next_offsets(batch);
        let mut offsets = TopicPartitionList::new();
        for (&(topic, partition), &offset) in &next {
            if let Err(error) =
                offsets.add_partition_offset(topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(error.message = %error, topic, partition, "invalid offset");
            }
            self.metrics.record_position(topic, partition, offset);
        }
        // Fails for partitions revoked meanwhile; their new owner re-projects.
        if let Err(error) = consumer.store_offsets(&offsets) {
            tracing::debug!(error.message = %error, "offsets not stored");
        }
        match consumer.commit_consumer_state(CommitMode::Async) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(error.message = %error, "offset commit not started"),
        }
    }

    /// Provisions the topics, retrying until the broker answers; `false` if
    /// shut down meanwhile.
    async fn provision(&self, shutdown: &CancellationToken) -> bool {
        let mut attempt = 0;
        while let Err(error) = dead_letter::provision(&self.config).await {
            tracing::warn!(error.cause_chain = %error_chain(&error), "cannot provision topics yet");
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff(attempt)) => {}
            }
            attempt += 1;
        }
        true
    }
}

/// Notices a partition that delivered an offset below one the broker had
/// confirmed committing for this worker: its log was lost and started again
/// (the consumer's position fell off its end and was reset). Rebalances do
/// not cause this: a partition resumes at its committed offset. Reported,
/// and `true`, so the read side checks itself against the event store.
fn went_backwards(metrics: &ProjectionMetrics, batch: &[Incoming]) -> bool {
    let mut lost = false;
    for incoming in batch {
        let message = &incoming.message;
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        if let Some(committed) = metrics.below_committed(topic, partition, offset) {
            tracing::error!(
                topic,
                partition,
                offset,
                committed,
                "a partition delivered an offset below one this worker committed: the broker \
                 lost its log; checking the read side against the event store"
            );
            metrics.record_transport_loss(topic, "offset_reset");
            metrics.reset_partition(topic, partition, offset);
            lost = true;
        }
    }
    lost
}

/// The next message, and whatever else is already fetched, up to `max`:
/// batching never waits.
async fn next_batch(consumer: &ProjectionConsumer, max: usize) -> Vec<Incoming> {
    let first = match consumer.recv().await {
        Ok(message) => message.detach(),
        Err(error) => {
            // librdkafka reports and recovers on its own (a missing topic,
            // a lost connection); pause so that a repeating error cannot
            // spin.
            tracing::warn!(error.message = %error, "consumer error");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Vec::new();
        }
    };
    let mut batch = vec![Incoming::new(first)];
    while batch.len() < max.max(1) {
        match consumer.recv().now_or_never() {
            Some(Ok(message)) => batch.push(Incoming::new(message.detach())),
            Some(Err(error)) => {
                tracing::warn!(error.message = %error, "consumer error");
                break;
            }
            None => break,
        }
    }
    batch
}

/// The offset after each partition's last message in `batch`.
fn next_offsets(batch: &[Incoming]) -> HashMap<(&str, i32), i64> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for incoming in batch {
        let message = &incoming.message;
        let offset = next
            .entry((message.topic(), message.partition()))
            .or_default();
        *offset = (*offset).max(message.offset() + 1);
    }
    next
}

/// 50 ms doubling up to 5 s, jittered.
fn backoff(attempt: u32) -> Duration {
    const OUTAGE: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    OUTAGE.delay(attempt)
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("group_id", &self.config.group_id)
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
}
