//! The read-model rows of a batch of aggregates, folded in memory: the same
//! changes the view SQL of [`crate::views`] makes one statement at a time,
//! made here to a row per aggregate so a rebuild writes each row once per
//! batch. The rebuild test compares the result with live projections, so
//! the two cannot drift apart unnoticed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ticketing_relay::WireEnvelope;
use ticketing_schemas::{
    Envelope, OrderEventV1, OrderStatusV1, PaymentEventV1, TicketEventV1, WireEvent,
};

use crate::decode::AggregateKind;
use crate::ProjectionError;

/// A `ticket_views` row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct TicketRow {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) price_cents: i64,
    pub(crate) user_id: String,
    pub(crate) order_id: Option<String>,
    pub(crate) version: i64,
    pub(crate) last_sequence: i64,
    pub(crate) updated_at: DateTime<Utc>,
}

/// An `order_views` row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) status: String,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) ticket_id: String,
    pub(crate) ticket_title: String,
    pub(crate) ticket_price_cents: i64,
    pub(crate) ticket_version: i64,
    pub(crate) payment_id: Option<String>,
    pub(crate) version: i64,
    pub(crate) last_sequence: i64,
    pub(crate) placed_position: i64,
    pub(crate) updated_at: DateTime<Utc>,
}

/// A `payment_views` row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct PaymentRow {
    pub(crate) id: String,
    pub(crate) order_id: String,
    pub(crate) user_id: String,
    pub(crate) amount_cents: i64,
    pub(crate) currency: String,
    pub(crate) status: String,
    pub(crate) stripe_id: Option<String>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) version: i64,
    pub(crate) last_sequence: i64,
    pub(crate) updated_at: DateTime<Utc>,
}

/// The rows a batch touches, by aggregate id: those already in the shadow
/// tables (loaded first) and those the batch creates.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) tickets: HashMap<String, TicketRow>,
    pub(crate) orders: HashMap<String, OrderRow>,
    pub(crate) payments: HashMap<String, PaymentRow>,
}

impl Rows {
    /// Applies one event to its row, as the view's SQL would. A duplicate
    /// (at or before the row's checkpoint) changes nothing; anything else
    /// that does not follow the checkpoint is an inconsistent store.
    pub(crate) fn apply(&mut self, event: WireEnvelope) -> Result<(), ProjectionError> {
        match event {
            WireEnvelope::Ticket(envelope) => self.apply_ticket(envelope),
            WireEnvelope::Order(envelope) => self.apply_order(envelope),
            WireEnvelope::Payment(envelope) => self.apply_payment(envelope),
        }
    }

    fn apply_ticket(&mut self, envelope: Envelope<TicketEventV1>) -> Result<(), ProjectionError> {
        let sequence = sequence_of(&envelope);
        let at = envelope.timestamp;
        let Some(row) = self.tickets.get_mut(&envelope.aggregate_id) else {
            let TicketEventV1::TicketCreated(created) = envelope.event else {
                return Err(inconsistent(&envelope, 0));
            };
            if sequence != 1 {
                return Err(inconsistent_raw(
                    AggregateKind::Ticket,
                    &envelope.aggregate_id,
                    "TicketCreated",
                    sequence,
                    0,
                ));
            }
            let row = TicketRow {
                id: envelope.aggregate_id.clone(),
                title: created.title,
                price_cents: created.price_cents,
                user_id: created.user_id,
                order_id: None,
                version: 0,
                last_sequence: 1,
                updated_at: at,
            };
            let _ = self.tickets.insert(envelope.aggregate_id, row);
            return Ok(());
        };
        if !follows(row.last_sequence, sequence, &envelope)? {
            return Ok(());
        }
        match envelope.event {
            TicketEventV1::TicketCreated(_) => {
                return Err(inconsistent(&envelope, row.last_sequence))
            }
            TicketEventV1::TicketUpdated(updated) => {
                row.title = updated.title;
                row.price_cents = updated.price_cents;
            }
            TicketEventV1::TicketReserved(reserved) => row.order_id = Some(reserved.order_id),
            // Only the holding order's release frees the ticket.
            TicketEventV1::TicketReleased(released) => {
                if row.order_id.as_deref() == Some(released.order_id.as_str()) {
                    row.order_id = None;
                }
            }
        }
        row.version = sequence - 1;
        row.last_sequence = sequence;
        row.updated_at = at;
        Ok(())
    }

    fn apply_order(&mut self, envelope: Envelope<OrderEventV1>) -> Result<(), ProjectionError> {
        let sequence = sequence_of(&envelope);
        let at = envelope.timestamp;
        let Some(row) = self.orders.get_mut(&envelope.aggregate_id) else {
            let position = i64::try_from(envelope.global_position).unwrap_or(i64::MAX);
            let OrderEventV1::OrderPlaced(placed) = envelope.event else {
                return Err(inconsistent(&envelope, 0));
            };
            if sequence != 1 {
                return Err(inconsistent_raw(
                    AggregateKind::Order,
                    &envelope.aggregate_id,
                    "OrderPlaced",
                    sequence,
                    0,
                ));
            }
            let row = OrderRow {
                id: envelope.aggregate_id.clone(),
                user_id: placed.user_id,
                status: order_status(placed.status).to_owned(),
                expires_at: placed.expires_at,
                ticket_id: placed.ticket.id,
                ticket_title: placed.ticket.title,
                ticket_price_cents: placed.ticket.price_cents,
                ticket_version: i64::try_from(placed.ticket.version).unwrap_or(i64::MAX),
                payment_id: None,
                version: 0,
                last_sequence: 1,
                placed_position: position,
                updated_at: at,
            };
            let _ = self.orders.insert(envelope.aggregate_id, row);
            return Ok(());
        };
        if !follows(row.last_sequence, sequence, &envelope)? {
            return Ok(());
        }
        match envelope.event {
            OrderEventV1::OrderPlaced(_) => return Err(inconsistent(&envelope, row.last_sequence)),
            // An expired order is cancelled as far as the API can tell.
            OrderEventV1::OrderCancelled(_) | OrderEventV1::OrderExpired(_) => {
                "cancelled".clone_into(&mut row.status);
            }
            OrderEventV1::OrderPaymentStarted(_) => {
                "awaiting:payment".clone_into(&mut row.status);
            }
            OrderEventV1::OrderPaymentFailed(_) => {
                "created".clone_into(&mut row.status);
            }
            OrderEventV1::OrderCompleted(completed) => {
                "complete".clone_into(&mut row.status);
                row.payment_id = Some(completed.payment_id);
            }
        }
        row.version = sequence - 1;
        row.last_sequence = sequence;
        row.updated_at = at;
        Ok(())
    }

    fn apply_payment(&mut self, envelope: Envelope<PaymentEventV1>) -> Result<(), ProjectionError> {
        let sequence = sequence_of(&envelope);
        let at = envelope.timestamp;
        let Some(row) = self.payments.get_mut(&envelope.aggregate_id) else {
            let PaymentEventV1::PaymentRequested(requested) = envelope.event else {
                return Err(inconsistent(&envelope, 0));
            };
            if sequence != 1 {
                return Err(inconsistent_raw(
                    AggregateKind::Payment,
                    &envelope.aggregate_id,
                    "PaymentRequested",
                    sequence,
                    0,
                ));
            }
            let row = PaymentRow {
                id: envelope.aggregate_id.clone(),
                order_id: requested.order_id,
                user_id: requested.user_id,
                amount_cents: requested.amount_cents,
                currency: requested.currency,
                status: "pending".to_owned(),
                stripe_id: None,
                failure_reason: None,
                version: 0,
                last_sequence: 1,
                updated_at: at,
            };
            let _ = self.payments.insert(envelope.aggregate_id, row);
            return Ok(());
        };
        if !follows(row.last_sequence, sequence, &envelope)? {
            return Ok(());
        }
        match envelope.event {
            PaymentEventV1::PaymentRequested(_) => {
                return Err(inconsistent(&envelope, row.last_sequence))
            }
            PaymentEventV1::PaymentSucceeded(succeeded) => {
                "succeeded".clone_into(&mut row.status);
                row.stripe_id = Some(succeeded.stripe_id);
            }
            PaymentEventV1::PaymentFailed(failed) => {
                "failed".clone_into(&mut row.status);
                row.failure_reason = Some(failed.reason);
            }
        }
        row.version = sequence - 1;
        row.last_sequence = sequence;
        row.updated_at = at;
        Ok(())
    }
}

/// The API's status strings, as [`crate::views`] writes them.
fn order_status(status: OrderStatusV1) -> &'static str {
    match status {
        OrderStatusV1::Created => "created",
        OrderStatusV1::Cancelled => "cancelled",
        OrderStatusV1::Complete => "complete",
    }
}

fn sequence_of<E>(envelope: &Envelope<E>) -> i64 {
    i64::try_from(envelope.sequence).unwrap_or(i64::MAX)
}

/// Whether an event at `sequence` applies on a row at `last`: `true` if it
/// is the next one, `false` if the row already has it, an error if events
/// are missing in between.
fn follows<E: WireEvent>(
    last: i64,
    sequence: i64,
    envelope: &Envelope<E>,
) -> Result<bool, ProjectionError> {
    if sequence <= last {
        return Ok(false);
    }
    if sequence == last + 1 {
        return Ok(true);
    }
    Err(inconsistent(envelope, last))
}

fn inconsistent<E: WireEvent>(envelope: &Envelope<E>, last: i64) -> ProjectionError {
    ProjectionError::Inconsistent {
        aggregate_type: E::AGGREGATE_TYPE,
        aggregate_id: envelope.aggregate_id.clone(),
        event_type: envelope.event.event_type(),
        sequence: sequence_of(envelope),
        last_sequence: last,
    }
}

fn inconsistent_raw(
    kind: AggregateKind,
    id: &str,
    event_type: &'static str,
    sequence: i64,
    last: i64,
) -> ProjectionError {
    ProjectionError::Inconsistent {
        aggregate_type: kind.type_name(),
        aggregate_id: id.to_owned(),
        event_type,
        sequence,
        last_sequence: last,
    }
}

#[cfg(test)]
mod tests;
