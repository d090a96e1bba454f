//! Shared by the event store's integration tests.

use std::sync::atomic::{AtomicBool, Ordering};

use cqrs_es::EventEnvelope;
use sqlx::PgConnection;
use ticketing_aggregates::Ticket;
use ticketing_eventstore::CommitEffect;
use tokio::sync::Notify;

/// Holds the first commit it is armed for inside its transaction until
/// released, so that the commands queued meanwhile form the next batch.
#[derive(Default)]
pub(crate) struct Gate {
    pub(crate) armed: AtomicBool,
    pub(crate) entered: Notify,
    pub(crate) release: Notify,
}

#[async_trait::async_trait]
impl CommitEffect<Ticket> for Gate {
    async fn write(
        &self,
        _tx: &mut PgConnection,
        _events: &[EventEnvelope<Ticket>],
    ) -> Result<(), sqlx::Error> {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
}
