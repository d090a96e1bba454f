//! The read models and the SQL that applies one event to them.
//!
//! Every statement is conditional on the row's checkpoint: a creation
//! inserts only if the row is missing and the event is sequence 1; any
//! other event updates only the row whose `last_sequence` is the event's
//! predecessor, and moves `last_sequence` (and the API's `version`) on in
//! the same statement. So applying an event either changes exactly one row
//! or nothing at all, and the caller decides what "nothing" meant.

mod order;
mod payment;
mod ticket;

use sqlx::PgConnection;

use crate::decode::{AggregateKind, ProjectedEvent};

/// Applies `event` if it directly follows the view's checkpoint (or
/// creates the view). `false` when no row matched: a duplicate, a gap, or
/// an event that makes no sense for the view.
#[tracing::instrument(skip_all, fields(aggregate_id = event.aggregate_id(), sequence = event.sequence(), event_type = event.event_type()))]
pub(crate) async fn apply(conn: &mut PgConnection, event: &ProjectedEvent) -> sqlx::Result<bool> {
    match event {
        ProjectedEvent::Ticket(envelope) => ticket::apply(conn, envelope).await,
        ProjectedEvent::Order(envelope) => order::apply(conn, envelope).await,
        ProjectedEvent::Payment(envelope) => payment::apply(conn, envelope).await,
    }
}

/// Locks the view row of an aggregate until the transaction ends and
/// returns its checkpoint; `None` if it has no view yet.
#[tracing::instrument(skip(conn))]
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    kind: AggregateKind,
    aggregate_id: &str,
) -> sqlx::Result<Option<i64>> {
    let sql = match kind {
        AggregateKind::Ticket => "SELECT last_sequence FROM ticket_views WHERE id = $1 FOR UPDATE",
        AggregateKind::Order => "SELECT last_sequence FROM order_views WHERE id = $1 FOR UPDATE",
        AggregateKind::Payment => {
            "SELECT last_sequence FROM payment_views WHERE id = $1 FOR UPDATE"
        }
    };
    sqlx::query_scalar(sql)
        .bind(aggregate_id)
        .fetch_optional(conn)
        .await
}

/// Whether a statement changed the one row it targets.
fn changed(result: sqlx::postgres::PgQueryResult) -> bool {
    result.rows_affected() == 1
}
