//! Deletes what the gateway no longer needs: `Idempotency-Key` records past
//! their retention, and order slots past their order's deadline. Every
//! gateway sweeps every [`INTERVAL`] (the deletes are idempotent), in small
//! batches so that no statement holds many row locks on a busy table.

use std::time::Duration;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

const INTERVAL: Duration = Duration::from_secs(10 * 60);
const BATCH: i64 = 1_000;

/// Sweeps in the background until the pool is closed.
pub(crate) fn spawn(pool: PgPool, idempotency_retention: Duration) {
    drop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(INTERVAL).await;
            if pool.is_closed() {
                return;
            }
            match sweep(&pool, idempotency_retention).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::debug!(deleted, "swept expired idempotency keys and order slots")
                }
                Err(error) => {
                    tracing::warn!(error.message = %error, "cannot sweep idempotency keys and order slots")
                }
            }
        }
    }));
}

/// Deletes idempotency keys older than `idempotency_retention` and order
/// slots past their deadline; returns how many rows went.
pub(crate) async fn sweep(pool: &PgPool, idempotency_retention: Duration) -> sqlx::Result<u64> {
    let retention = i64::try_from(idempotency_retention.as_secs()).unwrap_or(i64::MAX);
    let keys = in_batches(pool, || {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
             WHERE created_at < now() - $1 * interval '1 second' LIMIT $2)",
        )
        .bind(retention)
        .bind(BATCH)
    })
    .await?;
    let slots = in_batches(pool, || {
        sqlx::query(
            "DELETE FROM order_slots WHERE ctid IN (SELECT ctid FROM order_slots \
             WHERE expires_at < now() LIMIT $1)",
        )
        .bind(BATCH)
    })
    .await?;
    Ok(keys + slots)
}

/// Runs `delete` (which deletes at most [`BATCH`] rows) until it deletes
/// fewer.
async fn in_batches<'q>(
    pool: &PgPool,
    delete: impl Fn() -> Query<'q, Postgres, PgArguments>,
) -> sqlx::Result<u64> {
    let mut deleted = 0;
    loop {
        let done = delete().execute(pool).await?.rows_affected();
        deleted += done;
        if done < BATCH.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ticketing_eventstore::ScratchDatabase;

    #[tokio::test]
    async fn old_keys_and_lapsed_slots_go_and_the_rest_stay() {
        let db = ScratchDatabase::create("janitor", 2).await.unwrap();
        let pool = db.pool();
        for (key, age) in [("old", "25 hours"), ("fresh", "1 hour")] {
            let _ = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, resource_id, created_at) \
                 VALUES ('u', $1, '\\x00', gen_random_uuid(), now() - $2::interval)",
            )
            .bind(key)
            .bind(age)
            .execute(pool)
            .await
            .unwrap();
        }
        for (order, due) in [("lapsed", "-1 minute"), ("live", "10 minutes")] {
            let _ = sqlx::query(
                "INSERT INTO order_slots (user_id, order_id, expires_at) VALUES ('u', $1, now() + $2::interval)",
            )
            .bind(order)
            .bind(due)
            .execute(pool)
            .await
            .unwrap();
        }

        let deleted = sweep(pool, Duration::from_secs(24 * 60 * 60))
            .await
            .unwrap();

        assert_eq!(deleted, 2);
        let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM idempotency_keys")
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(keys, ["fresh"]);
        let slots: Vec<String> = sqlx::query_scalar("SELECT order_id FROM order_slots")
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(slots, ["live"]);
        db.remove().await.unwrap();
    }
}
