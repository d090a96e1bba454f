use chrono::{DateTime, Utc};

use super::OrderTicket;

/// What may be asked of an [`Order`](crate::Order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// Open an order for `ticket` (as read when it was reserved) that lapses
    /// at `expires_at` unless paid.
    Place {
        user_id: String,
        ticket: OrderTicket,
        expires_at: DateTime<Utc>,
    },
    /// The buyer gives up the order.
    Cancel { user_id: String },
    /// The expiry timer fired at `now`; passed in so the rule stays pure.
    Expire { now: DateTime<Utc> },
    /// The order's payment succeeded.
    Complete { payment_id: String },
}
