use sqlx::PgConnection;
use ticketing_schemas::{Envelope, PaymentEventV1};

use super::changed;

pub(super) async fn apply(
    conn: &mut PgConnection,
    envelope: &Envelope<PaymentEventV1>,
) -> sqlx::Result<bool> {
    let id = &envelope.aggregate_id;
    let sequence = i64::try_from(envelope.sequence).unwrap_or(i64::MAX);
    let result = match &envelope.event {
        PaymentEventV1::PaymentRequested(requested) => {
            if sequence != 1 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO payment_views \
                 (id, order_id, user_id, amount_cents, currency, status, version, last_sequence) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, 1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(&requested.order_id)
            .bind(&requested.user_id)
            .bind(requested.amount_cents)
            .bind(&requested.currency)
            .execute(conn)
            .await?
        }
        PaymentEventV1::PaymentSucceeded(succeeded) => {
            sqlx::query(
                "UPDATE payment_views SET status = 'succeeded', stripe_id = $3, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(&succeeded.stripe_id)
            .execute(conn)
            .await?
        }
        PaymentEventV1::PaymentFailed(failed) => {
            sqlx::query(
                "UPDATE payment_views SET status = 'failed', failure_reason = $3, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(&failed.reason)
            .execute(conn)
            .await?
        }
    };
    Ok(changed(result))
}
