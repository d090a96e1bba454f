//! The read models' changes, announced to every process that keeps pages
//! of them in memory (the gateway's page cache, issue 17).
//!
//! Each projection worker counts the commits that changed a view (events
//! applied from the topics or healed from the store). That count is exact
//! and instant, but only in its own process: a gateway deployed alone, or
//! beside a worker that owns only some partitions, needs to hear of the
//! others. So after its commits a worker sends `NOTIFY` on [`CHANNEL`],
//! outside the commits (a NOTIFY inside a transaction serializes commits
//! on a global lock), coalesced to at most one per `ANNOUNCE_INTERVAL` (5 ms)
//! and never dropping the last, and [`Changes`] counts what it hears. A
//! notification is sent after the commit it announces is visible, so a page
//! read after the count moved includes it. `replay rebuild` announces
//! its swap the same way.
//!
//! A listener that lost its connection may have missed notifications: it
//! counts the loss itself as a change, and keeps doing so while it cannot
//! reconnect, so pages are not kept on a count that no longer moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgExecutor, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ticketing_eventstore::retry::Backoff;

use crate::metrics::ProjectionMetrics;

/// The `NOTIFY` channel of view changes.
pub const CHANNEL: &str = "read_models_changed";

/// At most one notification per this, per worker.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(5);

/// Announces the worker's view changes until `shutdown`.
pub(crate) fn spawn_announcer(
    pool: PgPool,
    metrics: Arc<ProjectionMetrics>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = metrics.views_changed_notified() => {}
            }
            // A change made while this one is sent stores a wake-up above,
            // so the last change is always announced.
            if let Err(error) = announce(&pool).await {
                tracing::debug!(error.message = %error, "view change not announced");
            }
            tokio::time::sleep(ANNOUNCE_INTERVAL).await;
        }
    })
}

/// Tells listeners that the read models changed (a commit made outside a
/// worker, e.g. a rebuild's swap).
pub async fn announce<'e>(executor: impl PgExecutor<'e>) -> Result<(), sqlx::Error> {
    let _ = sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(executor)
        .await?;
    Ok(())
}

/// The view changes announced by every worker on the database, counted.
#[derive(Clone, Default)]
pub struct Changes(Arc<AtomicU64>);

impl Changes {
    /// Listens on `pool`'s database until `shutdown`; counting starts once
    /// the first connection listens (an error if it cannot).
    pub async fn listen(
        pool: &PgPool,
        shutdown: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        let changes = Self::default();
        let count = changes.clone();
        let task = tokio::spawn(async move {
            let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
            let mut failures = 0u32;
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                // Each notification, and each loss of the connection (what
                // it would have heard is unknown), is a change.
                count.moved();
                match received {
                    Ok(Some(_)) => failures = 0,
                    Ok(None) => tracing::debug!("view changes: connection lost; reconnecting"),
                    Err(error) => {
                        tracing::warn!(error.message = %error, "view changes: cannot listen; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff.delay(failures)) => {}
                        }
                        failures = failures.saturating_add(1);
                    }
                }
            }
        });
        Ok((changes, task))
    }

    /// Moves whenever a change was announced (or may have been missed).
    pub fn generation(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn moved(&self) {
        let _ = self.0.fetch_add(1, Ordering::AcqRel);
    }
}
