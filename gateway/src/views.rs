//! The JSON shapes the API answers with, as the contract gives them; their
//! OpenAPI schemas are derived from these types.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Number;
use ticketing_aggregates::{Money, Order, OrderStatus, OrderTicket, Ticket};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use ticketing_projections::queries::{OrderRow, TicketRow};

/// A ticket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TicketView {
    #[schema(format = Uuid)]
    id: String,
    #[schema(min_length = 1, max_length = 200, example = "Concert")]
    title: String,
    /// In currency units, with at most 2 decimal places.
    #[schema(value_type = f64, example = 25.5)]
    price: Number,
    /// The seller.
    #[schema(format = Uuid)]
    user_id: String,
    /// 0 after creation, +1 per change.
    #[schema(minimum = 0)]
    version: u64,
    /// Present while a live order holds the ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = Uuid, required = false)]
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

/// An order, with its ticket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderView {
    #[schema(format = Uuid)]
    id: String,
    /// The buyer.
    #[schema(format = Uuid)]
    user_id: String,
    #[schema(schema_with = order_status)]
    status: &'static str,
    /// When an order not paid by then is cancelled (JavaScript's
    /// `toISOString()` format).
    #[schema(format = DateTime, example = "2024-05-01T12:15:00.000Z")]
    expires_at: String,
    /// 0 when placed, +1 per change.
    #[schema(minimum = 0)]
    version: u64,
    ticket: OrderTicketView,
}

/// The ticket an order holds.
#[derive(Debug, Serialize, ToSchema)]
struct OrderTicketView {
    #[schema(format = Uuid)]
    id: String,
    title: String,
    /// In currency units, with at most 2 decimal places.
    #[schema(value_type = f64, example = 25.5)]
    price: Number,
    #[schema(minimum = 0)]
    version: u64,
}

/// The statuses an order can have, as the API spells them.
fn order_status() -> ObjectBuilder {
    let statuses = [
        OrderStatus::Created,
        OrderStatus::Cancelled,
        OrderStatus::AwaitingPayment,
        OrderStatus::Complete,
    ];
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(statuses.map(OrderStatus::as_str)))
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

/// A signed-in user: what signing up and signing in answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    #[schema(format = Uuid)]
    pub(crate) id: String,
    #[schema(format = Email, example = "buyer@example.com")]
    pub(crate) email: String,
}

/// Who the request's session belongs to, if anyone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CurrentUserView {
    /// `null` when signed out.
    pub(crate) current_user: Option<SessionView>,
}

/// The claims of a valid session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    #[schema(format = Uuid)]
    pub(crate) id: String,
    #[schema(format = Email)]
    pub(crate) email: String,
    /// When the session was issued (seconds since the Unix epoch).
    pub(crate) iat: i64,
}

/// An empty JSON object: what signing out answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Empty {}

/// A payment that completed its order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PaymentView {
    pub(crate) id: String,
}
