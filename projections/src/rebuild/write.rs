//! Moving folded rows in and out of the shadow tables: one `SELECT … =
//! ANY` per table to load the rows a batch continues, one multi-row upsert
//! (`UNNEST` of column arrays) per table to write them back.

use sqlx::PgConnection;

use super::fold::{OrderRow, PaymentRow, Rows, TicketRow};
use super::shadow::Shadow;

/// Loads the shadow rows of the given aggregates into `rows`.
pub(crate) async fn load(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: &mut Rows,
    tickets: &[String],
    orders: &[String],
    payments: &[String],
) -> sqlx::Result<()> {
    if !tickets.is_empty() {
        let sql = format!(
            "SELECT id, title, price_cents, user_id, order_id, version, last_sequence, updated_at \
             FROM {} WHERE id = ANY($1)",
            shadow.table("ticket_views")
        );
        for row in sqlx::query_as::<_, TicketRow>(&sql)
            .bind(tickets)
            .fetch_all(&mut *conn)
            .await?
        {
            let _ = rows.tickets.insert(row.id.clone(), row);
        }
    }
    if !orders.is_empty() {
        let sql = format!(
            "SELECT id, user_id, status, expires_at, ticket_id, ticket_title, ticket_price_cents, \
                    ticket_version, payment_id, version, last_sequence, placed_position, updated_at \
             FROM {} WHERE id = ANY($1)",
            shadow.table("order_views")
        );
        for row in sqlx::query_as::<_, OrderRow>(&sql)
            .bind(orders)
            .fetch_all(&mut *conn)
            .await?
        {
            let _ = rows.orders.insert(row.id.clone(), row);
        }
    }
    if !payments.is_empty() {
        let sql = format!(
            "SELECT id, order_id, user_id, amount_cents, currency, status, stripe_id, \
                    failure_reason, version, last_sequence, updated_at \
             FROM {} WHERE id = ANY($1)",
            shadow.table("payment_views")
        );
        for row in sqlx::query_as::<_, PaymentRow>(&sql)
            .bind(payments)
            .fetch_all(&mut *conn)
            .await?
        {
            let _ = rows.payments.insert(row.id.clone(), row);
        }
    }
    Ok(())
}

/// Writes every row of `rows` to the shadow tables (insert or replace).
pub(crate) async fn store(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: Rows,
) -> sqlx::Result<()> {
    store_tickets(conn, shadow, rows.tickets.into_values()).await?;
    store_orders(conn, shadow, rows.orders.into_values()).await?;
    store_payments(conn, shadow, rows.payments.into_values()).await
}

async fn store_tickets(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: impl ExactSizeIterator<Item = TicketRow>,
) -> sqlx::Result<()> {
    if rows.len() == 0 {
        return Ok(());
    }
    let n = rows.len();
    let (mut id, mut title, mut price, mut user, mut order) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut version, mut last, mut at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in rows {
        id.push(row.id);
        title.push(row.title);
        price.push(row.price_cents);
        user.push(row.user_id);
        order.push(row.order_id);
        version.push(row.version);
        last.push(row.last_sequence);
        at.push(row.updated_at);
    }
    let sql = format!(
        "INSERT INTO {} (id, title, price_cents, user_id, order_id, version, last_sequence, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                              $6::bigint[], $7::bigint[], $8::timestamptz[]) \
         ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price_cents = EXCLUDED.price_cents, \
         user_id = EXCLUDED.user_id, order_id = EXCLUDED.order_id, version = EXCLUDED.version, \
         last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at",
        shadow.table("ticket_views")
    );
    let _ = sqlx::query(&sql)
        .bind(id)
        .bind(title)
        .bind(price)
        .bind(user)
        .bind(order)
        .bind(version)
        .bind(last)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

async fn store_orders(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: impl ExactSizeIterator<Item = OrderRow>,
) -> sqlx::Result<()> {
    if rows.len() == 0 {
        return Ok(());
    }
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut ticket = Vec::with_capacity(n);
    let mut title = Vec::with_capacity(n);
    let mut price = Vec::with_capacity(n);
    let mut ticket_version = Vec::with_capacity(n);
    let mut payment = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut placed = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    for row in rows {
        id.push(row.id);
        user.push(row.user_id);
        status.push(row.status);
        expires.push(row.expires_at);
        ticket.push(row.ticket_id);
        title.push(row.ticket_title);
        price.push(row.ticket_price_cents);
        ticket_version.push(row.ticket_version);
        payment.push(row.payment_id);
        version.push(row.version);
        last.push(row.last_sequence);
        placed.push(row.placed_position);
        at.push(row.updated_at);
    }
    let sql = format!(
        "INSERT INTO {} (id, user_id, status, expires_at, ticket_id, ticket_title, \
                         ticket_price_cents, ticket_version, payment_id, version, last_sequence, \
                         placed_position, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], \
                              $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], \
                              $11::bigint[], $12::bigint[], $13::timestamptz[]) \
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, status = EXCLUDED.status, \
         expires_at = EXCLUDED.expires_at, ticket_id = EXCLUDED.ticket_id, \
         ticket_title = EXCLUDED.ticket_title, ticket_price_cents = EXCLUDED.ticket_price_cents, \
         ticket_version = EXCLUDED.ticket_version, payment_id = EXCLUDED.payment_id, \
         version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, \
         placed_position = EXCLUDED.placed_position, updated_at = EXCLUDED.updated_at",
        shadow.table("order_views")
    );
    let _ = sqlx::query(&sql)
        .bind(id)
        .bind(user)
        .bind(status)
        .bind(expires)
        .bind(ticket)
        .bind(title)
        .bind(price)
        .bind(ticket_version)
        .bind(payment)
        .bind(version)
        .bind(last)
        .bind(placed)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

async fn store_payments(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: impl ExactSizeIterator<Item = PaymentRow>,
) -> sqlx::Result<()> {
    if rows.len() == 0 {
        return Ok(());
    }
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut order = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut currency = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut stripe = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    for row in rows {
        id.push(row.id);
        order.push(row.order_id);
        user.push(row.user_id);
        amount.push(row.amount_cents);
        currency.push(row.currency);
        status.push(row.status);
        stripe.push(row.stripe_id);
        reason.push(row.failure_reason);
        version.push(row.version);
        last.push(row.last_sequence);
        at.push(row.updated_at);
    }
    let sql = format!(
        "INSERT INTO {} (id, order_id, user_id, amount_cents, currency, status, stripe_id, \
                         failure_reason, version, last_sequence, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                              $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], \
                              $11::timestamptz[]) \
         ON CONFLICT (id) DO UPDATE SET order_id = EXCLUDED.order_id, user_id = EXCLUDED.user_id, \
         amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency, \
         status = EXCLUDED.status, stripe_id = EXCLUDED.stripe_id, \
         failure_reason = EXCLUDED.failure_reason, version = EXCLUDED.version, \
         last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at",
        shadow.table("payment_views")
    );
    let _ = sqlx::query(&sql)
        .bind(id)
        .bind(order)
        .bind(user)
        .bind(amount)
        .bind(currency)
        .bind(status)
        .bind(stripe)
        .bind(reason)
        .bind(version)
        .bind(last)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}
