//! The port to the card processor: Stripe in production, a built-in local
//! provider for `make run` without a Stripe key.

use async_trait::async_trait;

/// One charge: `amount_cents` of `currency` from the card behind `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub amount_cents: i64,
    pub currency: String,
    /// The client's card token (e.g. Stripe's `tok_visa`).
    pub token: String,
    /// Sent as Stripe's `Idempotency-Key`: the same key never charges twice.
    pub idempotency_key: String,
    /// Sent as the charge's metadata with `attempt`, so the charge can be
    /// looked up when its own answer is lost.
    pub order_id: String,
    /// The order's payment attempt (from 1).
    pub attempt: u32,
}

/// A charge the processor accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
}

/// A charge found at the processor by its order and attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCharge {
    pub id: String,
    pub state: ChargeState,
}

/// Where a charge found at the processor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeState {
    Succeeded,
    /// Declined: the money did not move.
    Failed,
    /// Not decided yet (rare for cards); look again later.
    Pending,
}

/// Why a charge was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// The card was declined; the message is the processor's, for the buyer.
    #[error("{0}")]
    Declined(String),
    /// The request itself was refused (e.g. an unknown token).
    #[error("{0}")]
    Invalid(String),
    /// The processor could not be reached or failed. `maybe_charged` says
    /// whether the charge may nevertheless have been made (a timeout, a 5xx),
    /// in which case only a retry with the same idempotency key can tell.
    #[error("the payment provider is unavailable: {reason}")]
    Unavailable { reason: String, maybe_charged: bool },
}

impl ChargeError {
    /// Whether this counts against the processor's health (a declined card
    /// does not: the processor answered).
    #[must_use]
    pub fn is_provider_failure(&self) -> bool {
        matches!(self, ChargeError::Unavailable { .. })
    }
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Makes the charge, or returns the outcome of the earlier charge made
    /// with the same idempotency key.
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError>;

    /// The charge made for the order's `attempt`, if any (by the metadata
    /// every charge carries): what settles a charge whose own answer is
    /// lost or replayed as a 5xx under its idempotency key.
    async fn find_charge(
        &self,
        order_id: &str,
        attempt: u32,
    ) -> Result<Option<FoundCharge>, ChargeError>;
}
