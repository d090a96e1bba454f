//! The event store read back for replays (rebuilding read models,
//! republishing): in the relay's publication order and converted exactly as
//! the relay publishes, old event versions upcast first.

use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use ticketing_aggregates::{OrderEvent, PaymentEvent, TicketEvent};
use ticketing_schemas::{Envelope, OrderEventV1, PaymentEventV1, TicketEventV1, WireEvent};

use crate::encode::{envelope_as, upcast_owned, IntoWire};
use crate::outbox::{publish_horizon, Cursor, StoredEvent};
use crate::RelayError;

/// One published event of any aggregate type, typed; serialises as the
/// message's JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
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

pub(crate) const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
     metadata, global_position, event_id, recorded_at, \
     transaction_id::text::bigint AS transaction_id";

/// Publication order, by the table's columns: a bare `transaction_id`
/// would name the output column of that name (cast to a bigint), which no
/// index has, making every batch a sort of every row after the cursor.
const ORDER_LIMIT: &str = "ORDER BY events.transaction_id, events.global_position LIMIT $6";

/// Only rows of transactions older than every one in flight, as the relay
/// reads (see the crate docs), matching `filter` (`$3` types, `$4` id,
/// `$5` first position). The bound, `$7`, is the relay's own horizon
/// ([`publish_horizon`], taken just before): the server-wide
/// `pg_snapshot_xmin` can lag behind it while another database has a
/// transaction open, and a rebuild's catch-up must read at least every
/// event the relay may have published (and the live projector applied). Only the predicates in use are written out: a
/// generic `$3 IS NULL OR …` form leads the planner away from the
/// `(transaction_id, global_position)` index into a sort of the whole table
/// per batch.
fn safe_after(filter: &HistoryFilter) -> String {
    let mut sql = "(transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
         AND transaction_id < $7::bigint::text::xid8"
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
    let horizon = publish_horizon(&mut *conn).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE {} {ORDER_LIMIT}",
        safe_after(filter)
    );
    sqlx::query_as(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(&filter.aggregate_types)
        .bind(filter.aggregate_id.as_deref())
        .bind(filter.from_position)
        .bind(limit)
        .bind(horizon)
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
    let horizon = publish_horizon(&mut *conn).await?;
    let sql = format!("SELECT count(*) FROM events WHERE {}", safe_after(filter));
    let count: i64 = sqlx::query_scalar(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(&filter.aggregate_types)
        .bind(filter.aggregate_id.as_deref())
        .bind(filter.from_position)
        .bind(0_i64) // $6, the limit, unused
        .bind(horizon)
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// A published event's payload, typed by its aggregate type.
#[derive(Debug, Clone, PartialEq)]
pub enum WirePayload {
    Ticket(TicketEventV1),
    Order(OrderEventV1),
    Payment(PaymentEventV1),
}

/// What a read model keeps of a published event: the envelope without its
/// event id, schema version and metadata ids, which no view stores and
/// which cost a JSON parse and a few allocations per event to build.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldEvent {
    pub cursor: Cursor,
    pub aggregate_id: String,
    pub sequence: u64,
    pub global_position: u64,
    pub timestamp: DateTime<Utc>,
    pub event: WirePayload,
}

/// The columns [`read_fold_events`] decodes, by index (in this order).
const FOLD_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload::text AS payload, global_position, event_id, recorded_at, \
     transaction_id::text::bigint AS transaction_id";

/// [`read_history`] for folding into read models: the same events in the
/// same order with the same payloads (the relay's decoding and mapping,
/// old versions upcast), decoded straight from the stored JSON text
/// (through a `serde_json::Value` only for the old versions an upcaster
/// rewrites) and without what [`FoldEvent`] leaves out.
#[tracing::instrument(skip(conn))]
pub async fn read_fold_events(
    conn: &mut PgConnection,
    after: Cursor,
    filter: &HistoryFilter,
    limit: i64,
) -> Result<Vec<FoldEvent>, RelayError> {
    let horizon = publish_horizon(&mut *conn).await?;
    let sql = format!(
        "SELECT {FOLD_COLUMNS} FROM events WHERE {} {ORDER_LIMIT}",
        safe_after(filter)
    );
    let upcasters = Upcasters::new();
    let mut events = Vec::with_capacity(usize::try_from(limit).unwrap_or_default().min(65_536));
    let mut rows = sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(&filter.aggregate_types)
        .bind(filter.aggregate_id.as_deref())
        .bind(filter.from_position)
        .bind(limit)
        .bind(horizon)
        .fetch(conn);
    // Decoded as the rows arrive, rather than after the last one.
    while let Some(row) = rows.try_next().await? {
        events.push(fold_event(&row, &upcasters)?);
    }
    Ok(events)
}

/// Every aggregate type's upcasters, built once per read.
struct Upcasters {
    ticket: Vec<Box<dyn EventUpcaster>>,
    order: Vec<Box<dyn EventUpcaster>>,
    payment: Vec<Box<dyn EventUpcaster>>,
}

impl Upcasters {
    fn new() -> Self {
        use ticketing_aggregates::upcasting::upcasters_for;
        Self {
            ticket: upcasters_for(TicketEventV1::AGGREGATE_TYPE),
            order: upcasters_for(OrderEventV1::AGGREGATE_TYPE),
            payment: upcasters_for(PaymentEventV1::AGGREGATE_TYPE),
        }
    }
}

/// One row of [`FOLD_COLUMNS`], decoded as [`to_wire`] would.
///
/// The columns' types are the query's own, so they are not checked against
/// the Rust types row by row (`try_get_unchecked`; a NULL still fails).
fn fold_event(row: &PgRow, upcasters: &Upcasters) -> Result<FoldEvent, RelayError> {
    let aggregate_type: &str = row.try_get_unchecked(0)?;
    let aggregate_id: String = row.try_get_unchecked(1)?;
    let sequence: i64 = row.try_get_unchecked(2)?;
    let global_position: i64 = row.try_get_unchecked(6)?;
    let stored = StoredPayload {
        aggregate_type,
        aggregate_id: &aggregate_id,
        sequence,
        event_type: row.try_get_unchecked(3)?,
        event_version: row.try_get_unchecked(4)?,
        payload: row.try_get_unchecked(5)?,
        event_id: row.try_get_unchecked(7)?,
    };
    let event = match aggregate_type {
        TicketEventV1::AGGREGATE_TYPE => {
            WirePayload::Ticket(stored.decode::<TicketEvent>(&upcasters.ticket)?)
        }
        OrderEventV1::AGGREGATE_TYPE => {
            WirePayload::Order(stored.decode::<OrderEvent>(&upcasters.order)?)
        }
        PaymentEventV1::AGGREGATE_TYPE => {
            WirePayload::Payment(stored.decode::<PaymentEvent>(&upcasters.payment)?)
        }
        other => {
            return Err(RelayError::UnknownAggregateType {
                event_id: stored.event_id,
                aggregate_type: other.to_owned(),
            })
        }
    };
    Ok(FoldEvent {
        cursor: Cursor {
            transaction_id: row.try_get_unchecked(9)?,
            global_position,
        },
        aggregate_id,
        // Both are positive in the store (CHECK and identity), as in
        // `envelope_as`.
        sequence: u64::try_from(sequence).unwrap_or_default(),
        global_position: u64::try_from(global_position).unwrap_or_default(),
        timestamp: row.try_get_unchecked(8)?,
        event,
    })
}

/// The stored fields the payload's decoding (and its errors) need,
/// borrowed from the row.
struct StoredPayload<'r> {
    aggregate_type: &'r str,
    aggregate_id: &'r str,
    sequence: i64,
    event_type: &'r str,
    event_version: &'r str,
    payload: &'r str,
    event_id: uuid::Uuid,
}

impl StoredPayload<'_> {
    /// The wire event of the payload, upcast first if an upcaster applies
    /// to its version (if none does, `upcast` would return it unchanged).
    fn decode<E>(&self, upcasters: &[Box<dyn EventUpcaster>]) -> Result<E::Wire, RelayError>
    where
        E: DeserializeOwned + IntoWire,
    {
        let old = upcasters
            .iter()
            .any(|upcaster| upcaster.can_upcast(self.event_type, self.event_version));
        let domain: Result<E, _> = if old {
            serde_json::from_str(self.payload).and_then(|payload| {
                let stored = SerializedEvent::new(
                    self.aggregate_id.to_owned(),
                    usize::try_from(self.sequence).unwrap_or_default(),
                    self.aggregate_type.to_owned(),
                    self.event_type.to_owned(),
                    self.event_version.to_owned(),
                    payload,
                    serde_json::Value::Null,
                );
                serde_json::from_value(ticketing_aggregates::upcasting::upcast(stored).payload)
            })
        } else {
            serde_json::from_str(self.payload)
        };
        domain
            .map(IntoWire::into_wire)
            .map_err(|source| RelayError::Convert {
                event_id: self.event_id,
                aggregate_type: self.aggregate_type.to_owned(),
                event_type: self.event_type.to_owned(),
                source,
            })
    }
}

/// The typed envelope of one stored event (consumed, so its payload is
/// moved rather than copied).
pub(crate) fn to_wire(mut event: StoredEvent) -> Result<HistoryEvent, RelayError> {
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
