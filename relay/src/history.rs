//! The event store read back for replays (rebuilding read models,
//! republishing): in the relay's publication order and converted exactly as
//! the relay publishes, old event versions upcast first.

use sqlx::PgConnection;
use ticketing_aggregates::{OrderEvent, PaymentEvent, TicketEvent};
use ticketing_schemas::{Envelope, OrderEventV1, PaymentEventV1, TicketEventV1, WireEvent};

use crate::encode::{envelope_as, upcast_owned};
use crate::outbox::{Cursor, StoredEvent};
use crate::RelayError;

/// One published event of any aggregate type, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum WireEnvelope {
    Ticket(Envelope<TicketEventV1>),
    Order(Envelope<OrderEventV1>),
    Payment(Envelope<PaymentEventV1>),
}

/// An event and where it stands in the publication order.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub cursor: Cursor,
    pub envelope: WireEnvelope,
}

/// Which events a replay reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only these aggregate types (`Ticket`, …); every type when empty.
    pub aggregate_types: Vec<String>,
    /// Only this aggregate (with exactly one type in `aggregate_types`).
    pub aggregate_id: Option<String>,
    /// Only events at or after this global position.
    pub from_position: i64,
}

impl HistoryFilter {
    /// Every event of `aggregate_types`.
    pub fn of_types<S: ToString>(aggregate_types: &[S]) -> Self {
        Self {
            aggregate_types: aggregate_types.iter().map(ToString::to_string).collect(),
            ..Self::default()
        }
    }
}

const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
     metadata, global_position, event_id, recorded_at, \
     transaction_id::text::bigint AS transaction_id";

/// Only rows of transactions older than every one in flight, as the relay
/// reads (see the crate docs), matching `filter` (`$3` types, `$4` id,
/// `$5` first position). Only the predicates in use are written out: a
/// generic `$3 IS NULL OR …` form leads the planner away from the
/// `(transaction_id, global_position)` index into a sort of the whole table
/// per batch.
fn safe_after(filter: &HistoryFilter) -> String {
    let mut sql = "(transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
         AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
        .to_owned();
    if !filter.aggregate_types.is_empty() {
        sql.push_str(" AND aggregate_type = ANY($3)");
    }
    if filter.aggregate_id.is_some() {
        sql.push_str(" AND aggregate_id = $4");
    }
    if filter.from_position > 0 {
        sql.push_str(" AND global_position >= $5");
    }
    sql
}

/// The next at most `limit` stored events after `after` that match
/// `filter`, in publication order.
pub(crate) async fn fetch_stored(
    conn: &mut PgConnection,
    after: Cursor,
    filter: &HistoryFilter,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE {} \
         ORDER BY transaction_id, global_position LIMIT $6",
        safe_after(filter)
    );
    sqlx::query_as(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(&filter.aggregate_types)
        .bind(filter.aggregate_id.as_deref())
        .bind(filter.from_position)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The next at most `limit` events after `after` that match `filter`, in
/// publication order, typed as the relay publishes them.
#[tracing::instrument(skip(conn))]
pub async fn read_history(
    conn: &mut PgConnection,
    after: Cursor,
    filter: &HistoryFilter,
    limit: i64,
) -> Result<Vec<HistoryEvent>, RelayError> {
    fetch_stored(conn, after, filter, limit)
        .await?
        .into_iter()
        .map(to_wire)
        .collect()
}

/// How many events after `after` match `filter` and are safe to read now:
/// the length of a replay, for its progress bar.
#[tracing::instrument(skip(conn))]
pub async fn count_history(
    conn: &mut PgConnection,
    after: Cursor,
    filter: &HistoryFilter,
) -> Result<u64, RelayError> {
    let sql = format!("SELECT count(*) FROM events WHERE {}", safe_after(filter));
    let count: i64 = sqlx::query_scalar(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(&filter.aggregate_types)
        .bind(filter.aggregate_id.as_deref())
        .bind(filter.from_position)
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// The typed envelope of one stored event (consumed, so its payload is
/// moved rather than copied).
fn to_wire(mut event: StoredEvent) -> Result<HistoryEvent, RelayError> {
    let stored = std::mem::take(&mut event.payload);
    let payload = upcast_owned(&event, stored);
    let envelope = match event.aggregate_type.as_str() {
        TicketEventV1::AGGREGATE_TYPE => {
            WireEnvelope::Ticket(envelope_as::<TicketEvent>(&event, payload)?)
        }
        OrderEventV1::AGGREGATE_TYPE => {
            WireEnvelope::Order(envelope_as::<OrderEvent>(&event, payload)?)
        }
        PaymentEventV1::AGGREGATE_TYPE => {
            WireEnvelope::Payment(envelope_as::<PaymentEvent>(&event, payload)?)
        }
        other => {
            return Err(RelayError::UnknownAggregateType {
                event_id: event.event_id,
                aggregate_type: other.to_owned(),
            })
        }
    };
    Ok(HistoryEvent {
        cursor: event.cursor(),
        envelope,
    })
}
