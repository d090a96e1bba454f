//! Queries over the read models the projection workers maintain
//! (`ticket_views`, `order_views`); the gateway never answers a GET from the
//! event store.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TicketRow {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) price_cents: i64,
    pub(crate) user_id: String,
    pub(crate) order_id: Option<String>,
    pub(crate) version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct OrderRow {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) status: String,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) ticket_id: String,
    pub(crate) ticket_title: String,
    pub(crate) ticket_price_cents: i64,
    pub(crate) ticket_version: i64,
    pub(crate) version: i64,
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

pub(crate) async fn ticket(pool: &PgPool, id: &str) -> anyhow::Result<Option<TicketRow>> {
    sqlx::query_as(&format!(
        "SELECT {TICKET_COLUMNS} FROM ticket_views WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("Failed to read a ticket view")
}

/// Unreserved tickets, oldest first (ids are time-ordered UUIDv7), after the
/// `after` cursor.
pub(crate) async fn available_tickets(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<TicketRow>> {
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
    .context("Failed to list available tickets")
}

pub(crate) async fn order(pool: &PgPool, id: &str) -> anyhow::Result<Option<OrderRow>> {
    sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM {ORDERS} WHERE o.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("Failed to read an order view")
}

/// The user's orders in the order they were placed, after the order `after`.
pub(crate) async fn orders_of(
    pool: &PgPool,
    user_id: &str,
    after: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<OrderRow>> {
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
    .context("Failed to list orders")
}
