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
    /// The buyer starts paying with payment `payment_id` at `now`. While a
    /// payment is in flight the order can be neither cancelled nor expired,
    /// so a charge never lands on a cancelled order.
    /// At most `max_attempts` payments are started per order, so declined
    /// cards cannot be tried against it without limit.
    StartPayment {
        payment_id: String,
        user_id: String,
        now: DateTime<Utc>,
        max_attempts: u32,
    },
    /// The payment `payment_id` was declined or could not be made; the order
    /// is payable again until it expires.
    FailPayment { payment_id: String },
    /// The order's payment succeeded.
    Complete { payment_id: String },
}
