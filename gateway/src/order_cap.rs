//! A cap on the live orders of one user, so that one account cannot hold
//! every ticket of an on-sale again and again. A placement that won its
//! ticket takes a slot (or gives the ticket back); the slots of a user are
//! counted under a per-user advisory lock
//! (exact across gateways), less the orders the read model already shows
//! ended. An order not yet projected counts as live: the cap errs on the
//! strict side for the milliseconds the projection takes.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::ApiError;

pub(crate) const TOO_MANY: &str = "You have too many open orders; pay for or cancel one first";

/// Takes a slot for `order_id` (already held by a re-run of the same
/// order), or refuses with 400 when `user_id` holds `cap` live orders.
pub(crate) async fn take_slot(
    pool: &PgPool,
    cap: u32,
    user_id: &str,
    order_id: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut tx = pool
        .begin()
        .await
        .context("Failed to start a transaction")?;
    let _ = sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('order-slots:' || $1, 0))")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .context("Failed to lock the user's order slots")?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_slots s LEFT JOIN order_views v ON v.id = s.order_id \
         WHERE s.user_id = $1 AND s.order_id <> $2 AND s.expires_at > now() \
           AND (v.status IS NULL OR v.status IN ('created', 'awaiting:payment'))",
    )
    .bind(user_id)
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await
    .context("Failed to count the user's live orders")?;
    if live >= i64::from(cap) {
        return Err(ApiError::BadRequest(TOO_MANY.to_owned()));
    }
    let _ = sqlx::query(
        "INSERT INTO order_slots (user_id, order_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, order_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(order_id)
    .bind(expires_at)
    .execute(&mut *tx)
    .await
    .context("Failed to take an order slot")?;
    tx.commit()
        .await
        .context("Failed to commit the order slot")?;
    Ok(())
}

/// Gives back the slot of an order that was certainly not placed (best
/// effort: otherwise it lapses at the order's deadline).
pub(crate) async fn give_back(pool: &PgPool, user_id: &str, order_id: &str) {
    if let Err(error) = sqlx::query("DELETE FROM order_slots WHERE user_id = $1 AND order_id = $2")
        .bind(user_id)
        .bind(order_id)
        .execute(pool)
        .await
    {
        tracing::warn!(error.message = %error, order_id, "failed to give back an order slot");
    }
}
