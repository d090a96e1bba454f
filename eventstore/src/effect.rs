//! Work committed with a command's events: the one type the executor and
//! the group committer both use, kept apart so neither imports the other.

use cqrs_es::{Aggregate, EventEnvelope};
use sqlx::PgConnection;

/// Rows written in the same transaction as a command's events, so that they
/// exist if and only if the events do: the transactional-outbox pattern for
/// follow-up work such as saga timers.
#[async_trait::async_trait]
pub trait CommitEffect<A: Aggregate>: Send + Sync {
    /// Called inside the commit transaction, after the events were inserted.
    async fn write(
        &self,
        tx: &mut PgConnection,
        events: &[EventEnvelope<A>],
    ) -> Result<(), sqlx::Error>;
}
