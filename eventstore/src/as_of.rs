//! Time travel: an aggregate as it was at a past moment, its events
//! recorded until then folded by its own `apply` (the one place that
//! decides state), old event versions upcast as on every load.

use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use sqlx::PgPool;

/// Why an aggregate could not be loaded as of a moment.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error("failed to read the events of {aggregate_type} {aggregate_id}")]
    Database {
        aggregate_type: &'static str,
        aggregate_id: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot decode event {sequence} of {aggregate_type} {aggregate_id}")]
    Decode {
        aggregate_type: &'static str,
        aggregate_id: String,
        sequence: i64,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(sqlx::FromRow)]
struct Row {
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
}

/// The aggregate `aggregate_id` after every event recorded at or before
/// `at`; `None` if it did not exist yet (or never did).
#[tracing::instrument(skip(pool), fields(aggregate_type = A::TYPE))]
pub async fn load_as_of<A: Aggregate>(
    pool: &PgPool,
    aggregate_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<A>, AsOfError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT sequence, event_type, event_version, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3 \
         ORDER BY sequence",
    )
    .bind(A::TYPE)
    .bind(aggregate_id)
    .bind(at)
    .fetch_all(pool)
    .await
    .map_err(|source| AsOfError::Database {
        aggregate_type: A::TYPE,
        aggregate_id: aggregate_id.to_owned(),
        source,
    })?;
    let mut aggregate: Option<A> = None;
    // Only an unbroken prefix of the stream is a state the aggregate was
    // in: should the clock have stepped back between two commits, a later
    // event recorded "earlier" than its predecessor is not folded alone.
    for (row, expected) in rows.into_iter().zip(1_i64..) {
        if row.sequence != expected {
            break;
        }
        let stored = SerializedEvent::new(
            aggregate_id.to_owned(),
            usize::try_from(row.sequence).unwrap_or_default(),
            A::TYPE.to_owned(),
            row.event_type,
            row.event_version,
            row.payload,
            serde_json::Value::Null,
        );
        let event: A::Event =
            serde_json::from_value(ticketing_aggregates::upcasting::upcast(stored).payload)
                .map_err(|source| AsOfError::Decode {
                    aggregate_type: A::TYPE,
                    aggregate_id: aggregate_id.to_owned(),
                    sequence: row.sequence,
                    source,
                })?;
        aggregate.get_or_insert_with(A::default).apply(event);
    }
    Ok(aggregate)
}
