use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireEvent;

/// Events of the orders topic; `eventType` names the variant, `data` holds
/// its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "eventType", content = "data")]
pub enum OrderEventV1 {
    OrderPlaced(OrderPlacedV1),
    OrderCancelled(OrderCancelledV1),
    OrderExpired(OrderExpiredV1),
    OrderPaymentStarted(OrderPaymentStartedV1),
    OrderPaymentFailed(OrderPaymentFailedV1),
    OrderCompleted(OrderCompletedV1),
}

impl WireEvent for OrderEventV1 {
    const AGGREGATE_TYPE: &'static str = "Order";

    fn event_type(&self) -> &'static str {
        match self {
            OrderEventV1::OrderPlaced(_) => "OrderPlaced",
            OrderEventV1::OrderCancelled(_) => "OrderCancelled",
            OrderEventV1::OrderExpired(_) => "OrderExpired",
            OrderEventV1::OrderPaymentStarted(_) => "OrderPaymentStarted",
            OrderEventV1::OrderPaymentFailed(_) => "OrderPaymentFailed",
            OrderEventV1::OrderCompleted(_) => "OrderCompleted",
        }
    }

    fn schema_version(&self) -> &'static str {
        "1.0.0"
    }
}

/// Where an order stands after the event; an expired order is `cancelled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatusV1 {
    #[default]
    Created,
    Cancelled,
    Complete,
}

/// The ticket as the buyer saw it when ordering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderTicketV1 {
    pub id: String,
    pub title: String,
    /// Price in US cents.
    pub price_cents: i64,
    /// The ticket's version (its `sequence - 1`) the order was placed on.
    pub version: u64,
}

/// `userId` ordered `ticket`; it is reserved until `expiresAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedV1 {
    pub user_id: String,
    /// Always `created` for a new order; carried so consumers need not
    /// know the state machine.
    pub status: OrderStatusV1,
    pub expires_at: DateTime<Utc>,
    pub ticket: OrderTicketV1,
}

/// The buyer cancelled; `ticketId`'s reservation is to be released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelledV1 {
    pub ticket_id: String,
}

/// The order was not paid in time (status `cancelled`); `ticketId`'s
/// reservation is to be released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderExpiredV1 {
    pub ticket_id: String,
}

/// Payment `paymentId` (the order's `attempt`-th) is in flight: status
/// `awaiting:payment`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaymentStartedV1 {
    pub payment_id: String,
    pub attempt: u32,
}

/// Payment `paymentId` failed: status `created` again, payable until it
/// expires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaymentFailedV1 {
    pub payment_id: String,
}

/// Paid by `paymentId`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompletedV1 {
    pub payment_id: String,
}
