use rdkafka::error::KafkaError;
use ticketing_relay::{KafkaConfigError, RelayError};

use crate::decode::DecodeError;

/// Why a message could not be projected.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Not an event this worker understands; final, so dead-lettered at once.
    #[error("cannot decode the message")]
    Decode(#[from] DecodeError),
    #[error("read-model query failed")]
    Database(#[from] sqlx::Error),
    /// The operator's Kafka settings are rejected; fails start-up.
    #[error("invalid Kafka client settings")]
    KafkaConfig(#[from] KafkaConfigError),
    /// The event neither follows, repeats nor skips ahead of its view, e.g.
    /// an update of a ticket that was never created.
    #[error("{event_type} #{sequence} of {aggregate_type} {aggregate_id} cannot apply to its view (at #{last_sequence})")]
    Inconsistent {
        aggregate_type: &'static str,
        aggregate_id: String,
        event_type: &'static str,
        sequence: i64,
        last_sequence: i64,
    },
    /// A gap the event store cannot fill either.
    #[error(
        "gap before {aggregate_type} {aggregate_id} #{sequence}: the event store lacks #{missing}"
    )]
    Unhealable {
        aggregate_type: &'static str,
        aggregate_id: String,
        sequence: i64,
        missing: i64,
    },
    #[error(
        "cannot read the missing events of {aggregate_type} {aggregate_id} from the event store"
    )]
    Heal {
        aggregate_type: &'static str,
        aggregate_id: String,
        // Boxed: relay errors are large and this path is rare.
        #[source]
        source: Box<RelayError>,
    },
    /// Another worker wrote a row this batch was about to create (the
    /// partitions moved during the batch); applying it again sees that row.
    #[error(
        "{table}: {written} of {expected} rows written; another worker wrote the rest meanwhile"
    )]
    Raced {
        table: String,
        expected: usize,
        written: u64,
    },
    #[error("failed to create the Kafka client")]
    Client(#[source] KafkaError),
    #[error("failed to subscribe to the topics")]
    Subscribe(#[source] KafkaError),
    #[error("failed to provision the topics")]
    Provision(#[source] RelayError),
    #[error("the broker did not accept the dead letter for {topic}/{partition}@{offset}")]
    DeadLetter {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: KafkaError,
    },
}

impl ProjectionError {
    /// Whether the failure says nothing about the message: PostgreSQL is
    /// unreachable or asked us to retry. Such failures are retried for as
    /// long as they last and never dead-letter a message.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Database(error) => is_transient_sql(error),
            ProjectionError::Heal { source, .. } => match source.as_ref() {
                RelayError::Database(error) => is_transient_sql(error),
                _ => false,
            },
            ProjectionError::DeadLetter { .. } | ProjectionError::Raced { .. } => true,
            _ => false,
        }
    }
}

fn is_transient_sql(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: the server is shutting down
            // or starting; 53: out of resources; 40001/40P01: retry.
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_transient_and_a_bad_event_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(ProjectionError::Database(sqlx::Error::Io(refused)).is_transient());
        assert!(ProjectionError::Database(sqlx::Error::PoolTimedOut).is_transient());
        let inconsistent = ProjectionError::Inconsistent {
            aggregate_type: "Ticket",
            aggregate_id: "t".to_owned(),
            event_type: "TicketUpdated",
            sequence: 1,
            last_sequence: 0,
        };
        assert!(!inconsistent.is_transient());
        assert!(!ProjectionError::Database(sqlx::Error::RowNotFound).is_transient());
    }
}
