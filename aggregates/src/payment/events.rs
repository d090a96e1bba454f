use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// What happened to a [`Payment`](crate::Payment); the stored history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    /// `currency` is always `"usd"`; recorded so the history says what
    /// the cents were.
    PaymentRequested {
        order_id: String,
        user_id: String,
        amount_cents: i64,
        currency: String,
    },
    PaymentSucceeded {
        stripe_id: String,
    },
    PaymentFailed {
        reason: String,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            PaymentEvent::PaymentRequested { .. } => "PaymentRequested",
            PaymentEvent::PaymentSucceeded { .. } => "PaymentSucceeded",
            PaymentEvent::PaymentFailed { .. } => "PaymentFailed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
