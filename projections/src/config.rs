use std::time::Duration;

use ticketing_eventstore::retry::Backoff;
use ticketing_relay::{KafkaProperties, Topics};

use crate::reconcile::follow::FollowConfig;
use crate::reconcile::sweep::SweepConfig;

pub use ticketing_schemas::topics::DLQ_SUFFIX;

/// Everything a projection worker needs besides the database pool.
#[derive(Debug, Clone)]
pub struct ProjectionConfig {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Security and pass-through librdkafka properties, applied to every
    /// client after its own settings: the relay's.
    pub kafka_properties: KafkaProperties,
    /// The topics consumed: the relay's.
    pub topics: Topics,
    /// Consumer group; workers sharing it share the partitions.
    pub group_id: String,
    /// Partitions of the topics (and dead-letter topics) created at
    /// start-up when missing; the same setting as the relay's.
    pub partitions: i32,
    pub replication_factor: i32,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// How long the broker may hold a fetch waiting for data; low, since it
    /// adds directly to command-to-read-model latency.
    pub fetch_wait_max: Duration,
    /// How often the high watermarks that lag is computed from are
    /// refreshed (asked of the broker, and reported by librdkafka).
    pub statistics_interval: Duration,
    /// Most messages applied in one database transaction. Only messages
    /// already fetched are batched; the worker never waits to fill a batch.
    pub max_batch: usize,
    /// Lanes a batch is split into by partition, applied concurrently, each
    /// in a transaction of its own (so on a connection of its own): one
    /// aggregate's events are on one partition, so lanes never conflict.
    pub concurrency: usize,
    /// Attempts after the first before an event that fails to apply is
    /// dead-lettered.
    pub max_retries: u32,
    /// First retry delay; doubled on each further attempt.
    pub retry_base: Duration,
    /// Lag (messages, on the worst partition) above which the worker
    /// reports not ready.
    pub ready_max_lag: i64,
    /// How the worker follows the event store behind the relay, to notice
    /// and heal what the topics lost.
    pub follow: FollowConfig,
    /// The anti-entropy sweep comparing the views with the store.
    pub sweep: SweepConfig,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            kafka_properties: KafkaProperties::default(),
            topics: Topics::default(),
            group_id: "ticketing-projections".to_owned(),
            partitions: 6,
            replication_factor: 1,
            session_timeout: Duration::from_millis(6000),
            heartbeat_interval: Duration::from_millis(300),
            fetch_wait_max: Duration::from_millis(10),
            statistics_interval: Duration::from_secs(1),
            max_batch: 1_500,
            concurrency: 3,
            max_retries: 5,
            retry_base: Duration::from_millis(50),
            ready_max_lag: 1000,
            follow: FollowConfig::default(),
            sweep: SweepConfig::default(),
        }
    }
}

impl ProjectionConfig {
    /// The dead-letter topic of `topic`.
    pub fn dead_letter_topic(topic: &str) -> String {
        ticketing_schemas::topics::dead_letter_topic(topic)
    }

    /// Delay before retry number `attempt` (1-based) of a failed apply:
    /// `retry_base` doubling, at most a minute, jittered.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.retry_base, Duration::from_secs(60)).delay(attempt.saturating_sub(1))
    }
}
