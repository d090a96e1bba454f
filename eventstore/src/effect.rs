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

    /// Whether [`CommitEffect::write`] has anything to write for `events`.
    /// Single-event commands for which no effect writes are committed in
    /// one statement, without a transaction held across round trips; an
    /// effect that cannot tell answers `true`.
    fn writes_for(&self, _events: &[EventEnvelope<A>]) -> bool {
        true
    }
}
