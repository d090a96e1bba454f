use chrono::{DateTime, Utc};

use crate::{Money, Title};

/// What may be asked of a [`Ticket`](crate::Ticket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCommand {
    /// List a new ticket owned by `user_id`.
    Create {
        title: Title,
        price: Money,
        user_id: String,
    },
    /// Change title and price; only the owner, and only while unreserved.
    Update {
        title: Title,
        price: Money,
        user_id: String,
    },
    /// Hold the ticket for an order until that order completes or ends.
    Reserve {
        order_id: String,
        expires_at: DateTime<Utc>,
    },
    /// Drop the hold, but only if `order_id` is the one holding it.
    Release { order_id: String },
}
