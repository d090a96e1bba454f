use std::time::Duration;

use ticketing_schemas::topics;

use crate::KafkaProperties;

/// The topic of each aggregate type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub tickets: String,
    pub orders: String,
    pub payments: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            tickets: topics::TICKETS.to_owned(),
            orders: topics::ORDERS.to_owned(),
            payments: topics::PAYMENTS.to_owned(),
        }
    }
}

impl Topics {
    /// Every topic, for provisioning.
    pub fn all(&self) -> [&str; 3] {
        [&self.tickets, &self.orders, &self.payments]
    }
}

/// Everything the relay needs besides the database pool.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Security and pass-through librdkafka properties, applied to every
    /// client after its own settings (see [`crate::client_config`]).
    pub kafka_properties: KafkaProperties,
    pub topics: Topics,
    /// Partitions of each topic created at start-up.
    pub partitions: i32,
    /// Replication factor of each topic created at start-up.
    pub replication_factor: i32,
    /// Most events read and sent at once.
    pub batch_size: u32,
    /// Fallback poll period, should a notification be missed.
    pub poll_interval: Duration,
    /// How long the producer keeps retrying a message before reporting it
    /// failed; the relay then re-sends the whole batch.
    pub message_timeout: Duration,
    /// How often a standby tries to take over the lock.
    pub lock_retry_interval: Duration,
    /// How long the server keeps the lock of a leader whose host stopped
    /// answering (no FIN, no RST: power loss, a partition) before it drops
    /// the session and a standby can take over: TCP keepalives and a user
    /// timeout on the lock connection, set server-side.
    pub leader_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            kafka_properties: KafkaProperties::default(),
            topics: Topics::default(),
            partitions: 6,
            replication_factor: 1,
            batch_size: 2_000,
            poll_interval: Duration::from_millis(10),
            message_timeout: Duration::from_secs(30),
            lock_retry_interval: Duration::from_secs(1),
            leader_timeout: Duration::from_secs(20),
        }
    }
}
