//! Re-reading published events from the event store, for consumers that
//! found a gap in a topic (e.g. after the broker lost data).

use sqlx::PgConnection;

use crate::encode::encode;
use crate::outbox::StoredEvent;
use crate::{RelayError, Topics};

/// The payloads the relay publishes (or published) for events
/// `from_sequence..=to_sequence` of one aggregate, in sequence order: the
/// same envelope bytes a consumer reads from the topic, so it can decode
/// them on the same path. Events missing from the store are simply absent;
/// the caller checks that the sequences it needed are all there.
///
/// Takes a connection so that a consumer can read inside its own
/// transaction.
#[tracing::instrument(skip(conn))]
pub async fn load_envelopes(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    from_sequence: i64,
    to_sequence: i64,
) -> Result<Vec<Vec<u8>>, RelayError> {
    let events: Vec<StoredEvent> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                global_position, event_id, recorded_at, \
                transaction_id::text::bigint AS transaction_id \
         FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence BETWEEN $3 AND $4 \
         ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(from_sequence)
    .bind(to_sequence)
    .fetch_all(conn)
    .await?;
    // Only the payload is returned, so the topic names do not matter here.
    let topics = Topics::default();
    events
        .iter()
        .map(|event| encode(event, &topics).map(|message| message.payload))
        .collect()
}
