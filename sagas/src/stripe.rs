//! Stripe through `async-stripe`: a Charge with the card token as source
//! (what the original platform did), keyed for idempotency.

use async_trait::async_trait;
use std::str::FromStr;
use std::time::Duration;
use stripe::{
    ChargeSourceParams, ChargeStatus, CreateCharge, Currency, ErrorType, RequestStrategy,
    SearchList, StripeError, TokenId,
};

use crate::payment_provider::{
    Charge, ChargeError, ChargeRequest, ChargeState, FoundCharge, PaymentProvider,
};

/// Stripe's API, at a configurable base URL (a local stand-in in tests).
#[derive(Clone)]
pub struct StripeProvider {
    client: stripe::Client,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid Stripe base URL {url:?}")]
pub struct InvalidStripeUrl {
    url: String,
    #[source]
    source: url::ParseError,
}

impl StripeProvider {
    /// `base_url` is e.g. `https://api.stripe.com/`; every call is bounded
    /// by `timeout`.
    pub fn new(
        base_url: &str,
        secret_key: &str,
        timeout: Duration,
    ) -> Result<Self, InvalidStripeUrl> {
        // async-stripe panics on an unparsable URL; refuse it here instead.
        let _ = url::Url::parse(base_url).map_err(|source| InvalidStripeUrl {
            url: base_url.to_owned(),
            source,
        })?;
        Ok(Self {
            client: stripe::Client::from_url(base_url, secret_key),
            timeout,
        })
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id, idempotency_key = %request.idempotency_key))]
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError> {
        // Never echoed: what was sent may be card data.
        let token = TokenId::from_str(&request.token)
            .map_err(|_| ChargeError::Invalid("The payment token is not valid".to_owned()))?;
        let currency = Currency::from_str(&request.currency).map_err(|_| {
            ChargeError::Invalid(format!("Unsupported currency {}", request.currency))
        })?;
        let client = self
            .client
            .clone()
            .with_strategy(RequestStrategy::Idempotent(request.idempotency_key.clone()));
        let mut metadata = std::collections::HashMap::new();
        let _ = metadata.insert("order_id".to_owned(), request.order_id.clone());
        let _ = metadata.insert("attempt".to_owned(), request.attempt.to_string());
        let mut params = CreateCharge::new();
        params.amount = Some(request.amount_cents);
        params.currency = Some(currency);
        params.source = Some(ChargeSourceParams::Token(token));
        params.metadata = Some(metadata);
        match tokio::time::timeout(self.timeout, stripe::Charge::create(&client, params)).await {
            Err(_elapsed) => Err(ChargeError::Unavailable {
                reason: format!("no answer within {:?}", self.timeout),
                maybe_charged: true,
            }),
            Ok(Ok(charge)) => Ok(Charge {
                id: charge.id.to_string(),
            }),
            Ok(Err(error)) => Err(classify(error)),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id, attempt))]
    async fn find_charge(
        &self,
        order_id: &str,
        attempt: u32,
    ) -> Result<Option<FoundCharge>, ChargeError> {
        let params = SearchCharges {
            query: format!(
                "metadata['order_id']:'{}' AND metadata['attempt']:'{attempt}'",
                order_id.replace('\'', "\\'")
            ),
            limit: 10,
        };
        let search = self
            .client
            .get_query::<SearchList<stripe::Charge>, _>("/charges/search", &params);
        let found = match tokio::time::timeout(self.timeout, search).await {
            Err(_elapsed) => {
                return Err(ChargeError::Unavailable {
                    reason: format!("no answer to a charge search within {:?}", self.timeout),
                    maybe_charged: true,
                })
            }
            Ok(Err(error)) => return Err(classify(error)),
            Ok(Ok(found)) => found,
        };
        // One key per attempt makes at most one charge; a succeeded one
        // wins over anything else listed.
        let state = |charge: &stripe::Charge| match charge.status {
            ChargeStatus::Succeeded => ChargeState::Succeeded,
            ChargeStatus::Failed => ChargeState::Failed,
            ChargeStatus::Pending => ChargeState::Pending,
        };
        Ok(found
            .data
            .iter()
            .map(|charge| FoundCharge {
                id: charge.id.to_string(),
                state: state(charge),
            })
            .min_by_key(|found| match found.state {
                ChargeState::Succeeded => 0,
                ChargeState::Pending => 1,
                ChargeState::Failed => 2,
            }))
    }
}

/// Stripe's `GET /v1/charges/search` parameters (async-stripe 0.41 has no
/// typed charge search).
#[derive(serde::Serialize)]
struct SearchCharges {
    query: String,
    limit: u32,
}

fn classify(error: StripeError) -> ChargeError {
    match error {
        StripeError::Stripe(request) => {
            let status = request.http_status;
            match (status, &request.error_type) {
                // Our key or account is wrong: the provider's problem, not
                // the buyer's, and its message carries the key's tail, so
                // it is reported by status only and never shown.
                (401 | 403, _) | (_, ErrorType::Authentication) => ChargeError::Unavailable {
                    reason: format!("Stripe refused our credentials ({status})"),
                    maybe_charged: false,
                },
                // Another request with this key is still running at Stripe:
                // it may charge.
                (409, _) | (_, ErrorType::IdempotencyError) => ChargeError::Unavailable {
                    reason: format!("Stripe answered {status}: the idempotency key is in use"),
                    maybe_charged: true,
                },
                // Refused before anything ran; a retry may pass.
                (429, _) | (_, ErrorType::RateLimit) => ChargeError::Unavailable {
                    reason: format!("Stripe answered {status}: rate limited"),
                    maybe_charged: false,
                },
                (_, ErrorType::Card) => ChargeError::Declined(message(&request)),
                (..500, ErrorType::InvalidRequest | ErrorType::Validation) => {
                    ChargeError::Invalid(message(&request))
                }
                _ => ChargeError::Unavailable {
                    reason: format!("Stripe answered {status}: {}", message(&request)),
                    // A 5xx may have charged; another 4xx was refused first.
                    maybe_charged: status >= 500,
                },
            }
        }
        StripeError::Timeout => ChargeError::Unavailable {
            reason: "Stripe timed out".to_owned(),
            maybe_charged: true,
        },
        other => ChargeError::Unavailable {
            reason: other.to_string(),
            maybe_charged: true,
        },
    }
}

fn message(request: &stripe::RequestError) -> String {
    request
        .message
        .clone()
        .unwrap_or_else(|| "The payment was refused".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(http_status: u16, error_type: ErrorType, message: &str) -> ChargeError {
        classify(StripeError::Stripe(stripe::RequestError {
            http_status,
            error_type,
            message: Some(message.to_owned()),
            ..stripe::RequestError::default()
        }))
    }

    #[test]
    fn only_card_and_request_errors_are_definite_refusals() {
        let declined = answered(402, ErrorType::Card, "Your card was declined.");
        assert_eq!(
            declined,
            ChargeError::Declined("Your card was declined.".to_owned())
        );
        let invalid = answered(400, ErrorType::InvalidRequest, "No such token: 'tok_x'");
        assert_eq!(
            invalid,
            ChargeError::Invalid("No such token: 'tok_x'".to_owned())
        );
        for (status, kind, charged) in [
            (429, ErrorType::InvalidRequest, false),
            (429, ErrorType::RateLimit, false),
            (409, ErrorType::InvalidRequest, true),
            (409, ErrorType::IdempotencyError, true),
            (401, ErrorType::InvalidRequest, false),
            (500, ErrorType::Api, true),
        ] {
            let label = format!("{status} {kind:?}");
            match answered(status, kind, "Invalid API Key provided: sk_test_****_bad") {
                ChargeError::Unavailable {
                    reason,
                    maybe_charged,
                } => {
                    assert_eq!(maybe_charged, charged, "{label}");
                    if status == 401 {
                        assert!(!reason.contains("sk_"), "{reason}");
                    }
                }
                other => panic!("{label} classified as {other:?}"),
            }
        }
    }
}
