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
    #[serde(rename = "awaiting:payment")]
    AwaitingPayment,
    Complete,
}

impl OrderStatus {
    /// The lowercase name used by the API and in serialized form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::AwaitingPayment => "awaiting:payment",
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
    #[serde(default)]
    payment_attempts: u32,
    /// Payments that failed: over for good, never started again (a retry
    /// of one would charge under a new attempt's key a payment already
    /// recorded as failed, which nothing could then settle).
    #[serde(default)]
    failed_payments: Vec<String>,
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

    /// The payment in flight (`awaiting:payment`) or that completed the
    /// order (`complete`).
    #[must_use]
    pub fn payment_id(&self) -> Option<&str> {
        self.payment_id.as_deref()
    }

    /// Payments started so far; the latest one is attempt number this.
    #[must_use]
    pub fn payment_attempts(&self) -> u32 {
        self.payment_attempts
    }

    /// 0 once placed, then +1 for every later event.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.applied_events.saturating_sub(1)
    }

    fn is_paying_with(&self, payment_id: &str) -> bool {
        self.payment_id.as_deref() == Some(payment_id)
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
                    OrderStatus::AwaitingPayment => return Err(OrderError::PaymentInProgress),
                    OrderStatus::Cancelled => return Ok(()),
                    OrderStatus::Created => OrderEvent::OrderCancelled {
                        ticket_id: self.ticket_id(),
                    },
                }
            }
            OrderCommand::Expire { now } => {
                // A paid order is never expired, however late the timer fires;
                // one being paid waits for the payment's outcome.
                match self.status {
                    OrderStatus::Created => {}
                    OrderStatus::AwaitingPayment => return Err(OrderError::PaymentInProgress),
                    OrderStatus::Cancelled | OrderStatus::Complete => return Ok(()),
                }
                if self.expires_at.is_some_and(|deadline| now < deadline) {
                    return Err(OrderError::NotYetExpired);
                }
                OrderEvent::OrderExpired {
                    ticket_id: self.ticket_id(),
                }
            }
            OrderCommand::StartPayment {
                payment_id,
                user_id,
                now,
                max_attempts,
            } => {
                if user_id != self.user_id {
                    return Err(OrderError::NotOwner);
                }
                match self.status {
                    OrderStatus::Cancelled => return Err(OrderError::Cancelled),
                    OrderStatus::Complete => return Err(OrderError::AlreadyPaid),
                    OrderStatus::AwaitingPayment if self.is_paying_with(&payment_id) => {
                        return Ok(())
                    }
                    OrderStatus::AwaitingPayment => return Err(OrderError::PaymentInProgress),
                    // A failed payment is over; a new one needs a new id.
                    OrderStatus::Created if self.failed_payments.contains(&payment_id) => {
                        return Err(OrderError::PaymentNotInFlight)
                    }
                    // Past its deadline the order is as good as cancelled,
                    // even if the expiry timer has not fired yet.
                    OrderStatus::Created if self.expires_at.is_some_and(|d| now >= d) => {
                        return Err(OrderError::Cancelled)
                    }
                    OrderStatus::Created if self.payment_attempts >= max_attempts => {
                        return Err(OrderError::TooManyPaymentAttempts)
                    }
                    OrderStatus::Created => OrderEvent::OrderPaymentStarted {
                        payment_id,
                        attempt: self.payment_attempts + 1,
                    },
                }
            }
            OrderCommand::FailPayment { payment_id } => {
                if self.status != OrderStatus::AwaitingPayment || !self.is_paying_with(&payment_id)
                {
                    return Ok(());
                }
                OrderEvent::OrderPaymentFailed { payment_id }
            }
            OrderCommand::Complete { payment_id } => match self.status {
                OrderStatus::Cancelled => return Err(OrderError::Cancelled),
                OrderStatus::Complete if self.is_paying_with(&payment_id) => return Ok(()),
                OrderStatus::Complete => return Err(OrderError::AlreadyPaid),
                OrderStatus::AwaitingPayment if !self.is_paying_with(&payment_id) => {
                    return Err(OrderError::PaymentInProgress)
                }
                // Once a payment was started, only the one in flight can
                // complete the order: a failed attempt's late success must
                // not (orders from before payments were started, with no
                // attempt, still can).
                OrderStatus::Created if self.payment_attempts > 0 => {
                    return Err(OrderError::PaymentNotInFlight)
                }
                OrderStatus::AwaitingPayment | OrderStatus::Created => {
                    OrderEvent::OrderCompleted { payment_id }
                }
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
            OrderEvent::OrderPaymentStarted {
                payment_id,
                attempt,
            } => {
                self.status = OrderStatus::AwaitingPayment;
                self.payment_id = Some(payment_id);
                self.payment_attempts = attempt;
            }
            OrderEvent::OrderPaymentFailed { payment_id } => {
                self.status = OrderStatus::Created;
                self.payment_id = None;
                self.failed_payments.push(payment_id);
            }
            OrderEvent::OrderCompleted { payment_id } => {
                self.status = OrderStatus::Complete;
                self.payment_id = Some(payment_id);
            }
        }
    }
}
