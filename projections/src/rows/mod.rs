//! How an event changes its read-model row: the one place that decides it,
//! for the live projector and for `replay rebuild` alike.
//!
//! Rows are folded in memory, a row per aggregate, so that a batch of
//! events costs one load and one write per table ([`store`]) rather than a
//! statement per event. Every row carries its checkpoint, `last_sequence`:
//! an event applies only if it is the next one, a repeat changes nothing,
//! and anything else is an inconsistency the caller handles (the live
//! projector heals gaps from the event store first).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ticketing_relay::{FoldEvent, WirePayload};
use ticketing_schemas::{OrderEventV1, OrderStatusV1, PaymentEventV1, TicketEventV1, WireEvent};

use crate::{AggregateKind, ProjectionError};

pub(crate) mod store;

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
    #[sqlx(skip)]
    pub(crate) written: Written,
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
    #[sqlx(skip)]
    pub(crate) written: Written,
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
    #[sqlx(skip)]
    pub(crate) written: Written,
}

/// Where a folded row stands against its shadow table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// The shadow table has a version of the row (so writing it updates).
    pub(crate) stored: bool,
    /// Changed since it was last written or loaded.
    pub(crate) dirty: bool,
}

impl Written {
    /// A row as loaded from its shadow table.
    pub(crate) const LOADED: Self = Self {
        stored: true,
        dirty: false,
    };
    /// A row the fold just created.
    const CREATED: Self = Self {
        stored: false,
        dirty: true,
    };
}

/// The rows folded so far, by aggregate id: those loaded from the shadow
/// tables and those the fold created, each marked with whether it still
/// has to be written.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) tickets: HashMap<String, TicketRow>,
    pub(crate) orders: HashMap<String, OrderRow>,
    pub(crate) payments: HashMap<String, PaymentRow>,
    /// Every row of the shadow tables is held here (a run from empty
    /// shadow tables that dropped none), so none needs loading.
    pub(crate) complete: bool,
    /// What `updated_at` is set to: when the live projector applies the
    /// batch, or (`None`, a rebuild) when each event was recorded.
    pub(crate) applied_at: Option<DateTime<Utc>>,
}

impl Rows {
    /// The rows of empty shadow tables: all of them.
    pub(crate) fn complete() -> Self {
        Self {
            complete: true,
            ..Self::default()
        }
    }

    /// The checkpoint of an aggregate's row held here.
    pub(crate) fn last_sequence(&self, kind: AggregateKind, id: &str) -> Option<i64> {
        match kind {
            AggregateKind::Ticket => self.tickets.get(id).map(|row| row.last_sequence),
            AggregateKind::Order => self.orders.get(id).map(|row| row.last_sequence),
            AggregateKind::Payment => self.payments.get(id).map(|row| row.last_sequence),
        }
    }

    /// Rows held, of every table.
    pub(crate) fn len(&self) -> usize {
        self.tickets.len() + self.orders.len() + self.payments.len()
    }

    /// Whether `event`'s row must be loaded from its shadow table before
    /// it applies: not held here, and not created by it.
    pub(crate) fn needs_load(&self, event: &FoldEvent) -> bool {
        !self.complete
            && event.sequence > 1
            && !match event.event {
                WirePayload::Ticket(_) => self.tickets.contains_key(&event.aggregate_id),
                WirePayload::Order(_) => self.orders.contains_key(&event.aggregate_id),
                WirePayload::Payment(_) => self.payments.contains_key(&event.aggregate_id),
            }
    }

    /// Applies one event to its row, as the view's SQL would. A duplicate
    /// (at or before the row's checkpoint) changes nothing; anything else
    /// that does not follow the checkpoint is an inconsistent store.
    pub(crate) fn apply(&mut self, event: FoldEvent) -> Result<(), ProjectionError> {
        let at = Applying {
            id: event.aggregate_id,
            sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
            position: i64::try_from(event.global_position).unwrap_or(i64::MAX),
            timestamp: self.applied_at.unwrap_or(event.timestamp),
        };
        match event.event {
            WirePayload::Ticket(e) => self.apply_ticket(at, e),
            WirePayload::Order(e) => self.apply_order(at, e),
            WirePayload::Payment(e) => self.apply_payment(at, e),
        }
    }

    fn apply_ticket(&mut self, at: Applying, event: TicketEventV1) -> Result<(), ProjectionError> {
        let Some(row) = self.tickets.get_mut(&at.id) else {
            let TicketEventV1::TicketCreated(created) = event else {
                return Err(at.inconsistent(&event, 0));
            };
            if at.sequence != 1 {
                return Err(at.inconsistent_as::<TicketEventV1>("TicketCreated", 0));
            }
            let row = TicketRow {
                id: at.id.clone(),
                title: storable(created.title),
                price_cents: created.price_cents,
                user_id: created.user_id,
                order_id: None,
                version: 0,
                last_sequence: 1,
                updated_at: at.timestamp,
                written: Written::CREATED,
            };
            let _ = self.tickets.insert(at.id, row);
            return Ok(());
        };
        if !at.follows(row.last_sequence, &event)? {
            return Ok(());
        }
        match event {
            TicketEventV1::TicketCreated(_) => {
                return Err(at.inconsistent(&event, row.last_sequence))
            }
            TicketEventV1::TicketUpdated(updated) => {
                row.title = storable(updated.title);
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
        row.version = at.sequence - 1;
        row.last_sequence = at.sequence;
        row.updated_at = at.timestamp;
        row.written.dirty = true;
        Ok(())
    }

    fn apply_order(&mut self, at: Applying, event: OrderEventV1) -> Result<(), ProjectionError> {
        let Some(row) = self.orders.get_mut(&at.id) else {
            let OrderEventV1::OrderPlaced(placed) = event else {
                return Err(at.inconsistent(&event, 0));
            };
            if at.sequence != 1 {
                return Err(at.inconsistent_as::<OrderEventV1>("OrderPlaced", 0));
            }
            let row = OrderRow {
                id: at.id.clone(),
                user_id: placed.user_id,
                status: order_status(placed.status).to_owned(),
                expires_at: placed.expires_at,
                ticket_id: placed.ticket.id,
                ticket_title: storable(placed.ticket.title),
                ticket_price_cents: placed.ticket.price_cents,
                ticket_version: i64::try_from(placed.ticket.version).unwrap_or(i64::MAX),
                payment_id: None,
                version: 0,
                last_sequence: 1,
                placed_position: at.position,
                updated_at: at.timestamp,
                written: Written::CREATED,
            };
            let _ = self.orders.insert(at.id, row);
            return Ok(());
        };
        if !at.follows(row.last_sequence, &event)? {
            return Ok(());
        }
        match event {
            OrderEventV1::OrderPlaced(_) => return Err(at.inconsistent(&event, row.last_sequence)),
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
        row.version = at.sequence - 1;
        row.last_sequence = at.sequence;
        row.updated_at = at.timestamp;
        row.written.dirty = true;
        Ok(())
    }

    fn apply_payment(
        &mut self,
        at: Applying,
        event: PaymentEventV1,
    ) -> Result<(), ProjectionError> {
        let Some(row) = self.payments.get_mut(&at.id) else {
            let PaymentEventV1::PaymentRequested(requested) = event else {
                return Err(at.inconsistent(&event, 0));
            };
            if at.sequence != 1 {
                return Err(at.inconsistent_as::<PaymentEventV1>("PaymentRequested", 0));
            }
            let row = PaymentRow {
                id: at.id.clone(),
                order_id: requested.order_id,
                user_id: requested.user_id,
                amount_cents: requested.amount_cents,
                currency: requested.currency,
                status: "pending".to_owned(),
                stripe_id: None,
                failure_reason: None,
                version: 0,
                last_sequence: 1,
                updated_at: at.timestamp,
                written: Written::CREATED,
            };
            let _ = self.payments.insert(at.id, row);
            return Ok(());
        };
        if !at.follows(row.last_sequence, &event)? {
            return Ok(());
        }
        match event {
            PaymentEventV1::PaymentRequested(_) => {
                return Err(at.inconsistent(&event, row.last_sequence))
            }
            PaymentEventV1::PaymentSucceeded(succeeded) => {
                "succeeded".clone_into(&mut row.status);
                row.stripe_id = Some(succeeded.stripe_id);
            }
            PaymentEventV1::PaymentFailed(failed) => {
                "failed".clone_into(&mut row.status);
                row.failure_reason = Some(storable(failed.reason));
            }
        }
        row.version = at.sequence - 1;
        row.last_sequence = at.sequence;
        row.updated_at = at.timestamp;
        row.written.dirty = true;
        Ok(())
    }
}

/// The envelope fields of the event being applied.
struct Applying {
    id: String,
    sequence: i64,
    position: i64,
    timestamp: DateTime<Utc>,
}

impl Applying {
    /// Whether the event applies on a row at `last`: `true` if it is the
    /// next one, `false` if the row already has it, an error if events are
    /// missing in between.
    fn follows<E: WireEvent>(&self, last: i64, event: &E) -> Result<bool, ProjectionError> {
        if self.sequence <= last {
            return Ok(false);
        }
        if self.sequence == last + 1 {
            return Ok(true);
        }
        Err(self.inconsistent(event, last))
    }

    fn inconsistent<E: WireEvent>(&self, event: &E, last: i64) -> ProjectionError {
        self.inconsistent_as::<E>(event.event_type(), last)
    }

    fn inconsistent_as<E: WireEvent>(
        &self,
        event_type: &'static str,
        last: i64,
    ) -> ProjectionError {
        ProjectionError::Inconsistent {
            aggregate_type: E::AGGREGATE_TYPE,
            aggregate_id: self.id.clone(),
            event_type,
            sequence: self.sequence,
            last_sequence: last,
        }
    }
}

/// The API's status strings.
fn order_status(status: OrderStatusV1) -> &'static str {
    match status {
        OrderStatusV1::Created => "created",
        OrderStatusV1::Cancelled => "cancelled",
        OrderStatusV1::Complete => "complete",
    }
}

/// Free text from an event, as a read model can store it: PostgreSQL's
/// `text` refuses NUL, and one such event must not stop its aggregate's
/// projection. The gateway refuses control characters in new input; this
/// covers events stored before it did, and whatever a provider answered.
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
