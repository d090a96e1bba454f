use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{OrderCommand, OrderError, OrderEvent};

/// The ticket as it was when the order reserved it; the order keeps this
/// copy so its price cannot change under the buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTicket {
    pub id: String,
    pub title: String,
    pub price_cents: i64,
    pub version: u64,
}

/// Where an order stands. Expired orders are `Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    #[default]
    Created,
    Cancelled,
    Complete,
}

impl OrderStatus {
    /// The lowercase name used by the API and in serialized form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Complete => "complete",
        }
    }
}

/// An order. The default value is an order that does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    applied_events: u64,
    user_id: String,
    status: OrderStatus,
    ticket: Option<OrderTicket>,
    expires_at: Option<DateTime<Utc>>,
    payment_id: Option<String>,
}

impl Order {
    #[must_use]
    pub fn exists(&self) -> bool {
        self.applied_events > 0
    }

    /// The buyer; empty if the order does not exist.
    #[must_use]
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    #[must_use]
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    #[must_use]
    pub fn ticket(&self) -> Option<&OrderTicket> {
        self.ticket.as_ref()
    }

    #[must_use]
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// The payment that completed the order.
    #[must_use]
    pub fn payment_id(&self) -> Option<&str> {
        self.payment_id.as_deref()
    }

    /// 0 once placed, then +1 for every later event.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.applied_events.saturating_sub(1)
    }

    fn ticket_id(&self) -> String {
        self.ticket
            .as_ref()
            .map(|t| t.id.clone())
            .unwrap_or_default()
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            OrderCommand::Place {
                user_id,
                ticket,
                expires_at,
            } => {
                if self.exists() {
                    return Err(OrderError::AlreadyExists);
                }
                OrderEvent::OrderPlaced {
                    user_id,
                    ticket,
                    expires_at,
                }
            }
            _ if !self.exists() => return Err(OrderError::NotFound),
            OrderCommand::Cancel { user_id } => {
                if user_id != self.user_id {
                    return Err(OrderError::NotOwner);
                }
                match self.status {
                    OrderStatus::Complete => return Err(OrderError::AlreadyComplete),
                    OrderStatus::Cancelled => return Ok(()),
                    OrderStatus::Created => OrderEvent::OrderCancelled {
                        ticket_id: self.ticket_id(),
                    },
                }
            }
            OrderCommand::Expire { now } => {
                // A paid order is never expired, however late the timer fires.
                if self.status != OrderStatus::Created {
                    return Ok(());
                }
                if self.expires_at.is_some_and(|deadline| now < deadline) {
                    return Err(OrderError::NotYetExpired);
                }
                OrderEvent::OrderExpired {
                    ticket_id: self.ticket_id(),
                }
            }
            OrderCommand::Complete { payment_id } => match self.status {
                OrderStatus::Cancelled => return Err(OrderError::Cancelled),
                OrderStatus::Complete if self.payment_id() == Some(payment_id.as_str()) => {
                    return Ok(())
                }
                OrderStatus::Complete => return Err(OrderError::AlreadyPaid),
                OrderStatus::Created => OrderEvent::OrderCompleted { payment_id },
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.applied_events += 1;
        match event {
            OrderEvent::OrderPlaced {
                user_id,
                ticket,
                expires_at,
            } => {
                self.user_id = user_id;
                self.status = OrderStatus::Created;
                self.ticket = Some(ticket);
                self.expires_at = Some(expires_at);
            }
            OrderEvent::OrderCancelled { .. } | OrderEvent::OrderExpired { .. } => {
                self.status = OrderStatus::Cancelled;
            }
            OrderEvent::OrderCompleted { payment_id } => {
                self.status = OrderStatus::Complete;
                self.payment_id = Some(payment_id);
            }
        }
    }
}
