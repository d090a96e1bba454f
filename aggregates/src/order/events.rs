use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::OrderTicket;

/// What happened to an [`Order`](crate::Order); the stored history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced {
        user_id: String,
        ticket: OrderTicket,
        expires_at: DateTime<Utc>,
    },
    /// Cancelled by its owner; carries the ticket so its reservation can be
    /// released without reading the order.
    OrderCancelled {
        ticket_id: String,
    },
    /// Ended by the expiry timer; the status becomes cancelled too.
    OrderExpired {
        ticket_id: String,
    },
    /// A payment is in flight; `attempt` counts the order's payments from
    /// 1 and keys the charge, so a retried attempt never charges twice.
    OrderPaymentStarted {
        payment_id: String,
        attempt: u32,
    },
    /// The payment in flight failed; the order is payable again.
    OrderPaymentFailed {
        payment_id: String,
    },
    OrderCompleted {
        payment_id: String,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::OrderExpired { .. } => "OrderExpired",
            OrderEvent::OrderPaymentStarted { .. } => "OrderPaymentStarted",
            OrderEvent::OrderPaymentFailed { .. } => "OrderPaymentFailed",
            OrderEvent::OrderCompleted { .. } => "OrderCompleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
