//! What firing a timer came to.

use chrono::{DateTime, Utc};
use ticketing_aggregates::{OrderError, PaymentError, TicketError};
use ticketing_eventstore::CommandError;

/// The result of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Done: the timer is removed.
    Done,
    /// Not yet decidable: fire again at this time.
    Deferred(DateTime<Utc>),
}

/// A task that could not run (the event store or the payment provider
/// failed); the timer fires again after its lease.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("order command failed")]
    Order(#[source] CommandError<OrderError>),
    #[error("ticket command failed")]
    Ticket(#[source] CommandError<TicketError>),
    #[error("payment command failed")]
    Payment(#[source] CommandError<PaymentError>),
    #[error("timer store failed")]
    Timers(#[from] sqlx::Error),
    #[error("the order's price cannot be charged")]
    Amount(#[from] ticketing_aggregates::PriceError),
}
