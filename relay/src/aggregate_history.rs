//! One aggregate's audit trail: its events read back from the event store
//! as the relay publishes them (old versions upcast, mapped onto the wire
//! types), for the API's history endpoints and `ticketing history`.
//!
//! Unlike the replays' read (`history`), which walks the whole store in
//! publication order and stops at the relay's horizon, this reads every
//! committed event of one aggregate at once: a history is complete as soon
//! as the command that changed the aggregate has answered.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use ticketing_schemas::{Envelope, OrderEventV1, PaymentEventV1, WireEvent};

use crate::encode::metadata;
use crate::history::{to_wire, COLUMNS};
use crate::outbox::StoredEvent;
use crate::{RelayError, WireEnvelope};

/// Which events of which aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateHistoryQuery<'a> {
    /// `Ticket`, `Order` or `Payment`. An order's history also holds the
    /// events of every payment it started.
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// Only events after this global position (a previous page's last).
    pub after_position: i64,
    /// Only events recorded at or before this moment.
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// One event of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateHistoryEvent {
    /// The event exactly as published.
    pub envelope: WireEnvelope,
    /// The signed-in user whose command recorded it; `None` for the
    /// system's own commands (saga timers).
    pub actor: Option<String>,
}

impl AggregateHistoryEvent {
    /// Its position in the whole store: the order of a history, and the
    /// cursor of its pages.
    #[must_use]
    pub fn global_position(&self) -> u64 {
        match &self.envelope {
            WireEnvelope::Ticket(envelope) => envelope.global_position,
            WireEnvelope::Order(envelope) => envelope.global_position,
            WireEnvelope::Payment(envelope) => envelope.global_position,
        }
    }
}

/// The next at most `query.limit` events of the aggregate after
/// `query.after_position`, in global position order (which is each
/// aggregate's sequence order, and interleaves an order's payments where
/// they happened). An aggregate without events has an empty history.
#[tracing::instrument(skip(conn))]
pub async fn read_aggregate_history(
    conn: &mut PgConnection,
    query: &AggregateHistoryQuery<'_>,
) -> Result<Vec<AggregateHistoryEvent>, RelayError> {
    let payments = if query.aggregate_type == OrderEventV1::AGGREGATE_TYPE {
        payments_of(&mut *conn, query.aggregate_id).await?
    } else {
        Vec::new()
    };
    let rows: Vec<StoredEvent> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
         WHERE ((aggregate_type = $1 AND aggregate_id = $2) \
                OR (aggregate_type = $3 AND aggregate_id = ANY($4))) \
           AND global_position > $5 \
           AND ($6::timestamptz IS NULL OR recorded_at <= $6) \
         ORDER BY global_position LIMIT $7"
    ))
    .bind(query.aggregate_type)
    .bind(query.aggregate_id)
    .bind(PaymentEventV1::AGGREGATE_TYPE)
    .bind(&payments)
    .bind(query.after_position)
    .bind(query.until)
    .bind(query.limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let actor = metadata(&row, "user_id");
            to_wire(row).map(|event| AggregateHistoryEvent {
                envelope: event.envelope,
                actor,
            })
        })
        .collect()
}

/// The payments `order_id` started, found through its own events (its
/// `OrderPaymentStarted`, as published) rather than the stored payloads'
/// internal shape.
async fn payments_of(conn: &mut PgConnection, order_id: &str) -> Result<Vec<String>, RelayError> {
    let started: Vec<StoredEvent> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = 'OrderPaymentStarted' \
         ORDER BY sequence"
    ))
    .bind(OrderEventV1::AGGREGATE_TYPE)
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    let mut payments = Vec::with_capacity(started.len());
    for row in started {
        if let WireEnvelope::Order(Envelope {
            event: OrderEventV1::OrderPaymentStarted(started),
            ..
        }) = to_wire(row)?.envelope
        {
            payments.push(started.payment_id);
        }
    }
    Ok(payments)
}
