use sqlx::PgConnection;
use ticketing_schemas::{Envelope, TicketEventV1};

use super::changed;

pub(super) async fn apply(
    conn: &mut PgConnection,
    envelope: &Envelope<TicketEventV1>,
) -> sqlx::Result<bool> {
    let id = &envelope.aggregate_id;
    let sequence = i64::try_from(envelope.sequence).unwrap_or(i64::MAX);
    let result = match &envelope.event {
        TicketEventV1::TicketCreated(created) => {
            if sequence != 1 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO ticket_views \
                 (id, title, price_cents, user_id, order_id, version, last_sequence) \
                 VALUES ($1, $2, $3, $4, NULL, 0, 1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(&created.title)
            .bind(created.price_cents)
            .bind(&created.user_id)
            .execute(conn)
            .await?
        }
        TicketEventV1::TicketUpdated(updated) => {
            sqlx::query(
                "UPDATE ticket_views SET title = $3, price_cents = $4, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(&updated.title)
            .bind(updated.price_cents)
            .execute(conn)
            .await?
        }
        TicketEventV1::TicketReserved(reserved) => {
            sqlx::query(
                "UPDATE ticket_views SET order_id = $3, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(&reserved.order_id)
            .execute(conn)
            .await?
        }
        // Only the holding order's release frees the ticket; the version
        // moves on either way, as the aggregate's did.
        TicketEventV1::TicketReleased(released) => {
            sqlx::query(
                "UPDATE ticket_views SET \
                 order_id = CASE WHEN order_id = $3 THEN NULL ELSE order_id END, \
                 version = $2 - 1, last_sequence = $2, updated_at = now() \
                 WHERE id = $1 AND last_sequence = $2 - 1",
            )
            .bind(id)
            .bind(sequence)
            .bind(&released.order_id)
            .execute(conn)
            .await?
        }
    };
    Ok(changed(result))
}
