use sqlx::PgConnection;
use ticketing_schemas::{Envelope, OrderEventV1, OrderStatusV1};

use super::changed;

/// The API's status strings.
fn status(status: OrderStatusV1) -> &'static str {
    match status {
        OrderStatusV1::Created => "created",
        OrderStatusV1::Cancelled => "cancelled",
        OrderStatusV1::Complete => "complete",
    }
}

pub(super) async fn apply(
    conn: &mut PgConnection,
    envelope: &Envelope<OrderEventV1>,
) -> sqlx::Result<bool> {
    let id = &envelope.aggregate_id;
    let sequence = i64::try_from(envelope.sequence).unwrap_or(i64::MAX);
    let result = match &envelope.event {
        OrderEventV1::OrderPlaced(placed) => {
            if sequence != 1 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO order_views \
                 (id, user_id, status, expires_at, ticket_id, ticket_title, ticket_price_cents, \
                  ticket_version, payment_id, version, last_sequence, placed_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 0, 1, $9) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(&placed.user_id)
            .bind(status(placed.status))
            .bind(placed.expires_at)
            .bind(&placed.ticket.id)
            .bind(&placed.ticket.title)
            .bind(placed.ticket.price_cents)
            .bind(i64::try_from(placed.ticket.version).unwrap_or(i64::MAX))
            .bind(i64::try_from(envelope.global_position).unwrap_or(i64::MAX))
            .execute(conn)
            .await?
        }
        // An expired order is cancelled as far as the API can tell.
        OrderEventV1::OrderCancelled(_) | OrderEventV1::OrderExpired(_) => {
            sqlx::query(
                "UPDATE order_views SET status = 'cancelled', \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .execute(conn)
            .await?
        }
        OrderEventV1::OrderPaymentStarted(_) | OrderEventV1::OrderPaymentFailed(_) => {
            let status = if matches!(envelope.event, OrderEventV1::OrderPaymentStarted(_)) {
                "awaiting:payment"
            } else {
                "created"
            };
            sqlx::query(
                "UPDATE order_views SET status = $3, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(status)
            .execute(conn)
            .await?
        }
        OrderEventV1::OrderCompleted(completed) => {
            sqlx::query(
                "UPDATE order_views SET status = 'complete', payment_id = $3, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(&completed.payment_id)
            .execute(conn)
            .await?
        }
    };
    Ok(changed(result))
}
