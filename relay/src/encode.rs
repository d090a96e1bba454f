//! From a stored event to a Kafka message: the aggregate's event is decoded
//! and mapped onto its wire type, so the published contract changes only
//! when `ticketing-schemas` does.

use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use serde::de::DeserializeOwned;
use serde::Serialize;
use ticketing_aggregates::{Order, OrderEvent, Payment, PaymentEvent, Ticket, TicketEvent};
use ticketing_schemas::{
    Envelope, OrderCancelledV1, OrderCompletedV1, OrderEventV1, OrderExpiredV1,
    OrderPaymentFailedV1, OrderPaymentStartedV1, OrderPlacedV1, OrderStatusV1, OrderTicketV1,
    PaymentEventV1, PaymentFailedV1, PaymentRequestedV1, PaymentSucceededV1, TicketCreatedV1,
    TicketEventV1, TicketReleasedV1, TicketReservedV1, TicketUpdatedV1, WireEvent,
};

use crate::outbox::{Cursor, StoredEvent};
use crate::{RelayError, Topics};

/// An aggregate event's published form. A local trait rather than `From`:
/// both types are foreign to this crate, and neither of their crates may
/// depend on the other.
pub(crate) trait IntoWire {
    type Wire: WireEvent + Serialize;
    fn into_wire(self) -> Self::Wire;
}

/// One message ready to send, and what the relay needs once it is acked.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingMessage {
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
    /// Header name and value, in the order they are set; `traceparent` is
    /// added when sending, from the span of the publication.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The trace context stored with the event (its command's).
    pub(crate) traceparent: Option<String>,
    pub(crate) cursor: Cursor,
    pub(crate) recorded_at: DateTime<Utc>,
}

/// Builds the message of `event`, on the topic of its aggregate type.
pub(crate) fn encode(event: &StoredEvent, topics: &Topics) -> Result<OutgoingMessage, RelayError> {
    match event.aggregate_type.as_str() {
        Ticket::TYPE => encode_as::<TicketEvent>(event, &topics.tickets),
        Order::TYPE => encode_as::<OrderEvent>(event, &topics.orders),
        Payment::TYPE => encode_as::<PaymentEvent>(event, &topics.payments),
        other => Err(RelayError::UnknownAggregateType {
            event_id: event.event_id,
            aggregate_type: other.to_owned(),
        }),
    }
}

fn encode_as<E>(event: &StoredEvent, topic: &str) -> Result<OutgoingMessage, RelayError>
where
    E: DeserializeOwned + IntoWire,
{
    let envelope = envelope_as::<E>(event, upcast_payload(event))?;
    let event_type = envelope.event.event_type();
    let schema_version = envelope.event.schema_version();
    let payload = serde_json::to_vec(&envelope).map_err(|source| convert_error(event, source))?;
    let headers = vec![
        (
            ticketing_schemas::headers::EVENT_TYPE,
            event_type.to_owned(),
        ),
        (
            ticketing_schemas::headers::SCHEMA_VERSION,
            schema_version.to_owned(),
        ),
        (
            ticketing_schemas::headers::EVENT_ID,
            event.event_id.to_string(),
        ),
        (
            ticketing_schemas::headers::CORRELATION_ID,
            envelope.correlation_id.clone().unwrap_or_default(),
        ),
    ];
    Ok(OutgoingMessage {
        topic: topic.to_owned(),
        key: event.aggregate_id.clone(),
        payload,
        headers,
        traceparent: metadata(event, ticketing_eventstore::trace_context::TRACEPARENT),
        cursor: event.cursor(),
        recorded_at: event.recorded_at,
    })
}

/// The typed envelope of `event`, whose (already upcast) payload is
/// `payload`: what [`encode`] serialises, and what a rebuild applies without
/// the round trip through bytes.
pub(crate) fn envelope_as<E>(
    event: &StoredEvent,
    payload: serde_json::Value,
) -> Result<Envelope<E::Wire>, RelayError>
where
    E: DeserializeOwned + IntoWire,
{
    let domain: E =
        serde_json::from_value(payload).map_err(|source| convert_error(event, source))?;
    let wire = domain.into_wire();
    Ok(Envelope {
        event_id: event.event_id,
        schema_version: wire.schema_version().to_owned(),
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        // Both are positive in the store (CHECK and identity), so the
        // conversions cannot fail on real rows.
        sequence: u64::try_from(event.sequence).unwrap_or_default(),
        global_position: u64::try_from(event.global_position).unwrap_or_default(),
        timestamp: event.recorded_at,
        correlation_id: metadata(event, "correlation_id"),
        causation_id: metadata(event, "causation_id"),
        event: wire,
    })
}

fn convert_error(event: &StoredEvent, source: serde_json::Error) -> RelayError {
    RelayError::Convert {
        event_id: event.event_id,
        aggregate_type: event.aggregate_type.clone(),
        event_type: event.event_type.clone(),
        source,
    }
}

/// The payload lifted to its event type's current version (a no-op for
/// events stored at it), so old events publish in the current shape.
fn upcast_payload(event: &StoredEvent) -> serde_json::Value {
    upcast_owned(event, event.payload.clone())
}

/// [`upcast_payload`] of a payload already taken out of `event`, so a bulk
/// reader need not copy it.
pub(crate) fn upcast_owned(event: &StoredEvent, payload: serde_json::Value) -> serde_json::Value {
    let stored = SerializedEvent::new(
        event.aggregate_id.clone(),
        usize::try_from(event.sequence).unwrap_or_default(),
        event.aggregate_type.clone(),
        event.event_type.clone(),
        event.event_version.clone(),
        payload,
        serde_json::Value::Null,
    );
    ticketing_aggregates::upcasting::upcast(stored).payload
}

/// A non-empty string of the event's metadata (written by
/// `CommandMetadata`), if present.
pub(crate) fn metadata(event: &StoredEvent, key: &str) -> Option<String> {
    event
        .metadata
        .get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

impl IntoWire for TicketEvent {
    type Wire = TicketEventV1;

    fn into_wire(self) -> TicketEventV1 {
        match self {
            TicketEvent::TicketCreated {
                title,
                price_cents,
                user_id,
                currency,
            } => TicketEventV1::TicketCreated(TicketCreatedV1 {
                title,
                price_cents,
                user_id,
                currency,
            }),
            TicketEvent::TicketUpdated { title, price_cents } => {
                TicketEventV1::TicketUpdated(TicketUpdatedV1 { title, price_cents })
            }
            TicketEvent::TicketReserved {
                order_id,
                expires_at,
            } => TicketEventV1::TicketReserved(TicketReservedV1 {
                order_id,
                expires_at,
            }),
            TicketEvent::TicketReleased { order_id } => {
                TicketEventV1::TicketReleased(TicketReleasedV1 { order_id })
            }
        }
    }
}

impl IntoWire for OrderEvent {
    type Wire = OrderEventV1;

    fn into_wire(self) -> OrderEventV1 {
        match self {
            OrderEvent::OrderPlaced {
                user_id,
                ticket,
                expires_at,
            } => OrderEventV1::OrderPlaced(OrderPlacedV1 {
                user_id,
                // Placing is what creates an order; later statuses come with
                // their own events.
                status: OrderStatusV1::Created,
                expires_at,
                ticket: OrderTicketV1 {
                    id: ticket.id,
                    title: ticket.title,
                    price_cents: ticket.price_cents,
                    version: ticket.version,
                },
            }),
            OrderEvent::OrderCancelled { ticket_id } => {
                OrderEventV1::OrderCancelled(OrderCancelledV1 { ticket_id })
            }
            OrderEvent::OrderExpired { ticket_id } => {
                OrderEventV1::OrderExpired(OrderExpiredV1 { ticket_id })
            }
            OrderEvent::OrderPaymentStarted {
                payment_id,
                attempt,
            } => OrderEventV1::OrderPaymentStarted(OrderPaymentStartedV1 {
                payment_id,
                attempt,
            }),
            OrderEvent::OrderPaymentFailed { payment_id } => {
                OrderEventV1::OrderPaymentFailed(OrderPaymentFailedV1 { payment_id })
            }
            OrderEvent::OrderCompleted { payment_id } => {
                OrderEventV1::OrderCompleted(OrderCompletedV1 { payment_id })
            }
        }
    }
}

impl IntoWire for PaymentEvent {
    type Wire = PaymentEventV1;

    fn into_wire(self) -> PaymentEventV1 {
        match self {
            PaymentEvent::PaymentRequested {
                order_id,
                user_id,
                amount_cents,
                currency,
            } => PaymentEventV1::PaymentRequested(PaymentRequestedV1 {
                order_id,
                user_id,
                amount_cents,
                currency,
            }),
            PaymentEvent::PaymentSucceeded { stripe_id } => {
                PaymentEventV1::PaymentSucceeded(PaymentSucceededV1 { stripe_id })
            }
            PaymentEvent::PaymentFailed { reason } => {
                PaymentEventV1::PaymentFailed(PaymentFailedV1 { reason })
            }
        }
    }
}

#[cfg(test)]
mod tests;
