use rdkafka::error::KafkaError;

/// Why a relay step failed. Every failure is retried by the run loop; none
/// skips an event.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The event store could not be read or the cursor not written; the
    /// relay gives up its lock, since that connection may be gone.
    #[error("event store query failed")]
    Database(#[from] sqlx::Error),
    /// A stored event this relay does not understand, typically written by a
    /// newer release. The relay stops at it rather than skip it.
    #[error("cannot convert stored event {event_id} ({aggregate_type}/{event_type})")]
    Convert {
        event_id: uuid::Uuid,
        aggregate_type: String,
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no topic for aggregate type {aggregate_type} (event {event_id})")]
    UnknownAggregateType {
        event_id: uuid::Uuid,
        aggregate_type: String,
    },
    #[error("failed to create the Kafka client")]
    Client(#[source] KafkaError),
    #[error("the broker did not acknowledge {failed} of {total} messages")]
    Delivery {
        failed: usize,
        total: usize,
        #[source]
        source: KafkaError,
    },
    #[error("failed to create topic {topic}")]
    Provision {
        topic: String,
        #[source]
        source: KafkaError,
    },
}
