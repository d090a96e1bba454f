use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireEvent;

/// Events of the payments topic; `eventType` names the variant, `data`
/// holds its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "eventType", content = "data")]
pub enum PaymentEventV1 {
    PaymentRequested(PaymentRequestedV1),
    PaymentSucceeded(PaymentSucceededV1),
    PaymentFailed(PaymentFailedV1),
}

impl WireEvent for PaymentEventV1 {
    const AGGREGATE_TYPE: &'static str = "Payment";

    fn event_type(&self) -> &'static str {
        match self {
            PaymentEventV1::PaymentRequested(_) => "PaymentRequested",
            PaymentEventV1::PaymentSucceeded(_) => "PaymentSucceeded",
            PaymentEventV1::PaymentFailed(_) => "PaymentFailed",
        }
    }

    fn schema_version(&self) -> &'static str {
        "1.0.0"
    }
}

/// `userId` is charged `amountCents` for `orderId`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequestedV1 {
    pub order_id: String,
    pub user_id: String,
    /// Amount in cents of `currency`.
    pub amount_cents: i64,
    /// ISO 4217, lowercase as Stripe writes it (`usd`).
    pub currency: String,
}

/// The charge went through; `stripeId` is Stripe's charge id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceededV1 {
    pub stripe_id: String,
}

/// The charge was declined or failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailedV1 {
    pub reason: String,
}
