use crate::Money;

/// What may be asked of a [`Payment`](crate::Payment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Record the intent to charge `amount` for an order, before calling Stripe.
    Request {
        order_id: String,
        user_id: String,
        amount: Money,
    },
    /// Stripe accepted the charge `stripe_id`.
    Succeed { stripe_id: String },
    /// Stripe declined the charge, or it could not be made.
    Fail { reason: String },
}
