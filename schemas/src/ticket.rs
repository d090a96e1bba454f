use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireEvent;

/// Events of the tickets topic; `eventType` names the variant, `data` holds
/// its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "eventType", content = "data")]
pub enum TicketEventV1 {
    TicketCreated(TicketCreatedV1),
    TicketUpdated(TicketUpdatedV1),
    TicketReserved(TicketReservedV1),
    TicketReleased(TicketReleasedV1),
}

impl WireEvent for TicketEventV1 {
    const AGGREGATE_TYPE: &'static str = "Ticket";

    fn event_type(&self) -> &'static str {
        match self {
            TicketEventV1::TicketCreated(_) => "TicketCreated",
            TicketEventV1::TicketUpdated(_) => "TicketUpdated",
            TicketEventV1::TicketReserved(_) => "TicketReserved",
            TicketEventV1::TicketReleased(_) => "TicketReleased",
        }
    }

    fn version_of(event_type: &str) -> &'static str {
        match event_type {
            // 1.1.0 added `currency`.
            "TicketCreated" => "1.1.0",
            _ => "1.0.0",
        }
    }
}

/// A ticket was listed for resale by `userId`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketCreatedV1 {
    pub title: String,
    /// Price in US cents.
    pub price_cents: i64,
    /// The owner; it never changes, so later events do not repeat it.
    pub user_id: String,
    /// ISO 4217, lowercase, of `priceCents` (since 1.1.0; absent means
    /// `usd`, the only currency before).
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_currency() -> String {
    "usd".to_owned()
}

/// The owner changed title and price.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdatedV1 {
    pub title: String,
    /// Price in US cents.
    pub price_cents: i64,
}

/// The ticket is held for `orderId` until it completes, is cancelled or
/// expires (`expiresAt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketReservedV1 {
    pub order_id: String,
    pub expires_at: DateTime<Utc>,
}

/// The hold of `orderId` was dropped; the ticket is available again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketReleasedV1 {
    pub order_id: String,
}
