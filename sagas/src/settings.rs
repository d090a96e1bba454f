//! How the payment provider is chosen and tuned.

use std::sync::Arc;
use std::time::Duration;

use crate::circuit_breaker::{BreakerSettings, CircuitBreaker, GuardedProvider};
use crate::local_provider::LocalProvider;
use crate::payment_provider::PaymentProvider;
use crate::stripe::{InvalidStripeUrl, StripeProvider};

#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// Without a key, the built-in local provider is used (local runs only).
    pub stripe_secret_key: Option<String>,
    pub stripe_api_base: String,
    /// Bound on every call to Stripe.
    pub stripe_timeout: Duration,
    pub breaker: BreakerSettings,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            stripe_secret_key: None,
            stripe_api_base: "https://api.stripe.com/".to_owned(),
            stripe_timeout: Duration::from_secs(10),
            breaker: BreakerSettings::default(),
        }
    }
}

impl PaymentSettings {
    /// The provider these settings describe, behind its circuit breaker.
    pub fn provider(
        &self,
    ) -> Result<(Arc<dyn PaymentProvider>, Arc<CircuitBreaker>), InvalidStripeUrl> {
        let inner: Arc<dyn PaymentProvider> = match &self.stripe_secret_key {
            Some(key) if !key.is_empty() => {
                tracing::info!(api = %self.stripe_api_base, "payments go to Stripe");
                Arc::new(StripeProvider::new(
                    &self.stripe_api_base,
                    key,
                    self.stripe_timeout,
                )?)
            }
            _ => {
                tracing::warn!(
                    "STRIPE_SECRET_KEY is not set: using the built-in local payment provider \
                     (Stripe test tokens, no money moves; local use only)"
                );
                Arc::new(LocalProvider::new())
            }
        };
        let breaker = Arc::new(CircuitBreaker::new("stripe", self.breaker));
        Ok((
            Arc::new(GuardedProvider::new(inner, Arc::clone(&breaker))),
            breaker,
        ))
    }
}
