//! The JSON shapes of tickets and orders, as the contract gives them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Number;
use ticketing_aggregates::{Money, Order, OrderStatus, OrderTicket, Ticket};

use crate::read_models::{OrderRow, TicketRow};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TicketView {
    id: String,
    title: String,
    price: Number,
    user_id: String,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
}

impl TicketView {
    pub(crate) fn new(id: &str, ticket: &Ticket) -> Self {
        Self {
            id: id.to_owned(),
            title: ticket.title().to_owned(),
            price: ticket.price().to_json_number(),
            user_id: ticket.user_id().to_owned(),
            version: ticket.version(),
            order_id: ticket.order_id().map(str::to_owned),
        }
    }
}

impl From<TicketRow> for TicketView {
    fn from(row: TicketRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            price: price_json(row.price_cents),
            user_id: row.user_id,
            version: u64::try_from(row.version).unwrap_or_default(),
            order_id: row.order_id,
        }
    }
}

/// Read models hold prices the aggregates validated; one that no longer
/// parses is reported as its raw cents rather than failing the whole list.
fn price_json(cents: i64) -> Number {
    Money::from_cents(cents).map_or_else(|_| Number::from(cents), Money::to_json_number)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderView {
    id: String,
    user_id: String,
    status: &'static str,
    expires_at: String,
    version: u64,
    ticket: OrderTicketView,
}

#[derive(Debug, Serialize)]
struct OrderTicketView {
    id: String,
    title: String,
    price: Number,
    version: u64,
}

impl From<OrderRow> for OrderView {
    fn from(row: OrderRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            status: match row.status.as_str() {
                "cancelled" => OrderStatus::Cancelled.as_str(),
                "complete" => OrderStatus::Complete.as_str(),
                "awaiting:payment" => OrderStatus::AwaitingPayment.as_str(),
                _ => OrderStatus::Created.as_str(),
            },
            expires_at: iso_timestamp(row.expires_at),
            version: u64::try_from(row.version).unwrap_or_default(),
            ticket: OrderTicketView {
                id: row.ticket_id,
                title: row.ticket_title,
                price: price_json(row.ticket_price_cents),
                version: u64::try_from(row.ticket_version).unwrap_or_default(),
            },
        }
    }
}

/// JavaScript's `toISOString()` format, which the original platform sent.
fn iso_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl OrderView {
    /// With its ticket as `ticket` has it: a past moment's order shows the
    /// ticket as it was then, as the normal GET shows it as it is now.
    pub(crate) fn with_ticket(mut self, ticket: &Ticket) -> Self {
        self.ticket.title = ticket.title().to_owned();
        self.ticket.price = ticket.price().to_json_number();
        self.ticket.version = ticket.version();
        self
    }

    pub(crate) fn new(id: &str, order: &Order) -> anyhow::Result<Self> {
        let ticket: &OrderTicket = order
            .ticket()
            .ok_or_else(|| anyhow::anyhow!("order {id} has no ticket"))?;
        let expires_at = order
            .expires_at()
            .ok_or_else(|| anyhow::anyhow!("order {id} has no expiry"))?;
        let price = Money::from_cents(ticket.price_cents)
            .map_err(|e| anyhow::anyhow!("order {id} holds an invalid price: {e}"))?;
        Ok(Self {
            id: id.to_owned(),
            user_id: order.user_id().to_owned(),
            status: order.status().as_str(),
            expires_at: iso_timestamp(expires_at),
            version: order.version(),
            ticket: OrderTicketView {
                id: ticket.id.clone(),
                title: ticket.title.clone(),
                price: price.to_json_number(),
                version: ticket.version,
            },
        })
    }
}
