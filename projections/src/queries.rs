//! The queries the API answers from the read models (`ticket_views`,
//! `order_views`). This crate defines those tables and writes them, so it
//! alone says how their rows are read: the gateway calls these and never
//! names a view's column.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A query over the read models failed.
#[derive(Debug, thiserror::Error)]
#[error("Failed to {what}")]
pub struct QueryError {
    what: &'static str,
    #[source]
    source: sqlx::Error,
}

fn failed(what: &'static str) -> impl FnOnce(sqlx::Error) -> QueryError {
    move |source| QueryError { what, source }
}

#[derive(Debug, Clone, sqlx::FromRow)]
/// A ticket as the API shows it.
pub struct TicketRow {
    pub id: String,
    pub title: String,
    pub price_cents: i64,
    pub user_id: String,
    pub order_id: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
/// An order as the API shows it, with its ticket.
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub ticket_id: String,
    pub ticket_title: String,
    pub ticket_price_cents: i64,
    pub ticket_version: i64,
    pub version: i64,
}

const TICKET_COLUMNS: &str = "id, title, price_cents, user_id, order_id, version";
/// An order with its ticket as the ticket is now (the contract's orders
/// follow the ticket's later updates, as the original platform's did), or
/// as it was when ordered if the ticket's view is missing.
const ORDER_COLUMNS: &str = "o.id, o.user_id, o.status, o.expires_at, o.ticket_id, \
     coalesce(t.title, o.ticket_title) AS ticket_title, \
     coalesce(t.price_cents, o.ticket_price_cents) AS ticket_price_cents, \
     coalesce(t.version, o.ticket_version) AS ticket_version, o.version";
const ORDERS: &str = "order_views o LEFT JOIN ticket_views t ON t.id = o.ticket_id";

pub async fn ticket(pool: &PgPool, id: &str) -> Result<Option<TicketRow>, QueryError> {
    sqlx::query_as(&format!(
        "SELECT {TICKET_COLUMNS} FROM ticket_views WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(failed("read a ticket view"))
}

/// Unreserved tickets, oldest first (ids are time-ordered UUIDv7), after the
/// `after` cursor.
pub async fn available_tickets(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TicketRow>, QueryError> {
    // Only the columns of `ticket_views_available_page` (order_id is NULL
    // by the filter): an index-only scan.
    sqlx::query_as(
        "SELECT id, title, price_cents, user_id, NULL::text AS order_id, version FROM ticket_views
         WHERE order_id IS NULL AND ($1::text IS NULL OR id > $1)
         ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(failed("list available tickets"))
}

pub async fn order(pool: &PgPool, id: &str) -> Result<Option<OrderRow>, QueryError> {
    sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM {ORDERS} WHERE o.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(failed("read an order view"))
}

/// The user's orders in the order they were placed, after the order `after`.
pub async fn orders_of(
    pool: &PgPool,
    user_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<OrderRow>, QueryError> {
    sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM {ORDERS}
         WHERE o.user_id = $1
           AND ($2::text IS NULL OR o.placed_position >
                (SELECT placed_position FROM order_views WHERE id = $2 AND user_id = $1))
         ORDER BY o.placed_position LIMIT $3"
    ))
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(failed("list orders"))
}
