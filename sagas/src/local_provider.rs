//! A built-in payment provider for local runs without a Stripe key. It
//! behaves like Stripe's test mode for its documented test tokens and
//! keeps charges in memory. Local use only: it moves no money.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

use crate::payment_provider::{
    Charge, ChargeError, ChargeRequest, ChargeState, FoundCharge, PaymentProvider,
};

/// `tok_visa` (and the other `tok_` card tokens Stripe documents as
/// succeeding) charge; `tok_chargeDeclined*` decline; anything else is an
/// unknown token.
#[derive(Default)]
pub struct LocalProvider {
    /// Outcome by idempotency key, so a repeated key never charges twice.
    charges: Mutex<HashMap<String, Outcome>>,
}

/// A key's outcome, with the order and attempt it was charged for.
type Outcome = (String, u32, Result<Charge, ChargeError>);

const SUCCEEDING: &[&str] = &[
    "tok_visa",
    "tok_visa_debit",
    "tok_mastercard",
    "tok_mastercard_debit",
    "tok_amex",
    "tok_discover",
    "tok_jcb",
    "tok_unionpay",
    "tok_us",
];

impl LocalProvider {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn decide(request: &ChargeRequest) -> Result<Charge, ChargeError> {
        let token = request.token.as_str();
        if SUCCEEDING.contains(&token) {
            Ok(Charge {
                id: format!("ch_local_{}", Uuid::new_v4().simple()),
            })
        } else if token.starts_with("tok_chargeDeclined") {
            Err(ChargeError::Declined("Your card was declined.".to_owned()))
        } else {
            Err(ChargeError::Invalid(format!("No such token: '{token}'")))
        }
    }
}

#[async_trait]
impl PaymentProvider for LocalProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError> {
        let mut charges = self.charges.lock().map_err(|_| ChargeError::Unavailable {
            reason: "local provider state poisoned".to_owned(),
            maybe_charged: false,
        })?;
        charges
            .entry(request.idempotency_key.clone())
            .or_insert_with(|| {
                (
                    request.order_id.clone(),
                    request.attempt,
                    Self::decide(request),
                )
            })
            .2
            .clone()
    }

    async fn find_charge(
        &self,
        order_id: &str,
        attempt: u32,
    ) -> Result<Option<FoundCharge>, ChargeError> {
        let charges = self.charges.lock().map_err(|_| ChargeError::Unavailable {
            reason: "local provider state poisoned".to_owned(),
            maybe_charged: false,
        })?;
        Ok(charges.values().find_map(|(order, n, outcome)| {
            let charge = outcome.as_ref().ok()?;
            (order == order_id && *n == attempt).then(|| FoundCharge {
                id: charge.id.clone(),
                state: ChargeState::Succeeded,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            amount_cents: 1_000,
            currency: "usd".into(),
            token: token.into(),
            idempotency_key: key.into(),
            order_id: "o".into(),
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn test_tokens_behave_as_stripe_documents() {
        let provider = LocalProvider::new();
        assert!(provider.charge(&request("tok_visa", "a")).await.is_ok());
        assert_eq!(
            provider.charge(&request("tok_chargeDeclined", "b")).await,
            Err(ChargeError::Declined("Your card was declined.".into()))
        );
        assert_eq!(
            provider.charge(&request("asldkfj", "c")).await,
            Err(ChargeError::Invalid("No such token: 'asldkfj'".into()))
        );
    }

    #[tokio::test]
    async fn a_repeated_key_returns_the_first_charge() {
        let provider = LocalProvider::new();
        let first = provider.charge(&request("tok_visa", "k")).await.unwrap();
        let again = provider.charge(&request("tok_visa", "k")).await.unwrap();
        assert_eq!(first, again);
        let other = provider.charge(&request("tok_visa", "l")).await.unwrap();
        assert_ne!(first, other);
    }
}
