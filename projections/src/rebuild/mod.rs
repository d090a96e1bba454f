//! Rebuilding read models from the event store, for `ticketing replay
//! rebuild`.
//!
//! Events are read in the relay's publication order (`(transaction_id,
//! global_position)`, only transactions older than every one in flight)
//! and converted exactly as the relay publishes them, old versions upcast.
//! Each batch is folded in memory per aggregate ([`fold`]), written to
//! shadow tables with one multi-row upsert per table, and committed with
//! the checkpoint (`replay_checkpoints`), so a run stopped by Ctrl-C
//! resumes after its last batch.
//!
//! The live read models keep serving, and the live projector keeps
//! applying, throughout. At the end one short transaction takes every live
//! table at once (`ACCESS EXCLUSIVE NOWAIT`, retried until no reader or
//! writer holds one, so it never waits while holding a lock and cannot
//! deadlock), catches the shadow up to the events committed meanwhile, and
//! swaps the tables. Whatever the live
//! projector applied before the lock came from events the relay had
//! published, which the catch-up reads too (the relay's order is safe for
//! exactly this reason); what it applies after the swap finds the new
//! tables' checkpoints and is a duplicate or the next event. Readers wait
//! only for that last transaction, a few milliseconds.

mod fold;
mod shadow;
mod write;

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{Acquire, PgConnection, PgPool};
use ticketing_relay::{
    clear_checkpoint, count_history, load_checkpoint, read_history, save_checkpoint, Cursor,
    HistoryEvent, HistoryFilter, RelayError, ReplayCheckpoint, WireEnvelope,
};
use tokio_util::sync::CancellationToken;

use crate::decode::AggregateKind;
use crate::ProjectionError;
use fold::Rows;
use shadow::Shadow;
pub use shadow::SHADOW_SCHEMA;

/// Session advisory lock held by the one rebuild running on a database.
pub const REBUILD_LOCK_KEY: i64 = 0x0072_6562_7569_6c64; // "rebuild"

/// The checkpoint's name in `replay_checkpoints`.
pub const REBUILD_CHECKPOINT: &str = "rebuild";

/// How long the final swap waits for the live projector's transactions to
/// end before giving up (and leaving the shadow to resume from).
const SWAP_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between attempts to take the live tables for the swap.
const SWAP_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// SQLSTATE of a `NOWAIT` lock that was not granted.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Why a rebuild failed; it can be run again and resumes.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("another rebuild is running on this database")]
    AlreadyRunning,
    #[error(
        "the live read models stayed in use for {0:?}; the rebuild is saved, run it again to swap"
    )]
    SwapContended(Duration),
    #[error("read-model query failed")]
    Database(#[from] sqlx::Error),
    #[error("cannot read the event store")]
    History(#[from] RelayError),
    #[error("the event store does not fold into the read models")]
    Apply(#[from] ProjectionError),
}

/// What to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildPlan {
    /// The views, by the aggregate type they are built from.
    pub views: Vec<AggregateKind>,
    /// Events read, folded and committed at once.
    pub batch_size: u32,
}

impl RebuildPlan {
    /// `views` deduplicated, in a fixed order.
    pub fn new(views: &[AggregateKind], batch_size: u32) -> Self {
        let views = [
            AggregateKind::Ticket,
            AggregateKind::Order,
            AggregateKind::Payment,
        ]
        .into_iter()
        .filter(|kind| views.contains(kind))
        .collect();
        Self {
            views,
            batch_size: batch_size.max(1),
        }
    }

    /// The read-model table of each view.
    pub fn tables(&self) -> Vec<&'static str> {
        self.views.iter().map(|kind| view_table(*kind)).collect()
    }

    fn filter(&self) -> HistoryFilter {
        HistoryFilter::of_types(
            &self
                .views
                .iter()
                .map(|kind| kind.type_name())
                .collect::<Vec<_>>(),
        )
    }

    /// What a resumed run must have been started with.
    fn options(&self) -> String {
        format!("tables={}", self.tables().join(","))
    }
}

/// The table of `kind`'s read model.
pub fn view_table(kind: AggregateKind) -> &'static str {
    match kind {
        AggregateKind::Ticket => "ticket_views",
        AggregateKind::Order => "order_views",
        AggregateKind::Payment => "payment_views",
    }
}

/// Where a rebuild starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildStart {
    /// Progress of an interrupted run of the same plan whose shadow tables
    /// are still there.
    pub resumed: Option<ReplayCheckpoint>,
    /// Events left to fold (as of now; the catch-up adds the newer ones).
    pub remaining: u64,
}

/// How a rebuild ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// The rebuilt tables are live. `events` counts the whole run, resumed
    /// parts included; `caught_up` of them were folded under the lock.
    Finished { events: u64, caught_up: u64 },
    /// Stopped by the caller after `events`; run again to resume.
    Interrupted { events: u64 },
}

/// Rebuilds a plan's read models.
#[derive(Debug, Clone)]
pub struct Rebuilder {
    pool: PgPool,
    plan: RebuildPlan,
}

impl Rebuilder {
    pub fn new(pool: PgPool, plan: RebuildPlan) -> Self {
        Self { pool, plan }
    }

    /// Where a run would start and how many events it would fold; changes
    /// nothing (so it is also the dry run).
    pub async fn start(&self) -> Result<RebuildStart, RebuildError> {
        let mut conn = self.pool.acquire().await?;
        let resumed = self.resumable(&mut conn).await?;
        let after = resumed.as_ref().map(|c| c.cursor).unwrap_or_default();
        let remaining = count_history(&mut conn, after, &self.plan.filter()).await?;
        Ok(RebuildStart { resumed, remaining })
    }

    /// Runs the rebuild from `start`, calling `progress` with the events
    /// folded so far after each batch; stops between batches once `stop`
    /// is cancelled, leaving the shadow tables and checkpoint to resume.
    pub async fn run(
        &self,
        start: &RebuildStart,
        stop: &CancellationToken,
        mut progress: impl FnMut(u64),
    ) -> Result<RebuildOutcome, RebuildError> {
        // One connection for the whole run: it holds the advisory lock.
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(REBUILD_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Err(RebuildError::AlreadyRunning);
        }
        let outcome = self.run_locked(&mut conn, start, stop, &mut progress).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(REBUILD_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if let Err(error) = unlocked {
            // The lock goes with the connection; make sure it is not reused.
            tracing::warn!(%error, "cannot release the rebuild lock; closing its connection");
            let _ = conn.detach();
        }
        outcome
    }

    async fn run_locked(
        &self,
        conn: &mut PgConnection,
        start: &RebuildStart,
        stop: &CancellationToken,
        progress: &mut impl FnMut(u64),
    ) -> Result<RebuildOutcome, RebuildError> {
        let shadow = Shadow::of(conn, self.plan.tables()).await?;
        // Re-checked under the lock: another run may have finished since.
        let resumed = match &start.resumed {
            Some(_) => self.resumable(conn).await?,
            None => None,
        };
        let mut checkpoint = match resumed {
            Some(checkpoint) => {
                tracing::info!(events = checkpoint.done, "resuming the rebuild");
                checkpoint
            }
            None => {
                shadow.create(conn).await?;
                ReplayCheckpoint {
                    cursor: Cursor::default(),
                    done: 0,
                }
            }
        };
        let options = self.plan.options();
        loop {
            if stop.is_cancelled() {
                return Ok(RebuildOutcome::Interrupted {
                    events: checkpoint.done,
                });
            }
            let mut tx = conn.begin().await?;
            let folded = self.fold_batch(&mut tx, &shadow, &mut checkpoint).await?;
            if folded == 0 {
                break;
            }
            save_checkpoint(&mut tx, REBUILD_CHECKPOINT, &options, &checkpoint).await?;
            tx.commit().await?;
            progress(checkpoint.done);
        }
        shadow.add_indexes(conn).await?;
        let before = checkpoint.done;
        let deadline = tokio::time::Instant::now() + SWAP_LOCK_TIMEOUT;
        while !self.try_swap(conn, &shadow, &mut checkpoint).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(RebuildError::SwapContended(SWAP_LOCK_TIMEOUT));
            }
            tokio::time::sleep(SWAP_RETRY_PAUSE).await;
        }
        progress(checkpoint.done);
        Ok(RebuildOutcome::Finished {
            events: checkpoint.done,
            caught_up: checkpoint.done - before,
        })
    }

    /// Locks every live table at once (`ACCESS EXCLUSIVE NOWAIT`), catches
    /// the shadow up and swaps it in; `false`, with nothing changed, when a
    /// table was in use. Never waiting for a lock while holding one means the
    /// swap can never be part of a deadlock with readers or the projector
    /// (which lock the views in their own order); it retries instead.
    async fn try_swap(
        &self,
        conn: &mut PgConnection,
        shadow: &Shadow,
        checkpoint: &mut ReplayCheckpoint,
    ) -> Result<bool, RebuildError> {
        let mut tx = conn.begin().await?;
        let live = self.plan.tables().join(", ");
        let locked = sqlx::query(&format!(
            "LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE NOWAIT"
        ))
        .execute(&mut *tx)
        .await;
        match locked {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                tx.rollback().await?;
                return Ok(false);
            }
            Err(other) => return Err(other.into()),
        }
        let mut caught_up = checkpoint.clone();
        while self.fold_batch(&mut tx, shadow, &mut caught_up).await? > 0 {}
        shadow.swap(&mut tx).await?;
        clear_checkpoint(&mut tx, REBUILD_CHECKPOINT).await?;
        tx.commit().await?;
        *checkpoint = caught_up;
        Ok(true)
    }

    /// The saved checkpoint of this plan, if its shadow tables survived.
    async fn resumable(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Option<ReplayCheckpoint>, RebuildError> {
        let Some(checkpoint) =
            load_checkpoint(conn, REBUILD_CHECKPOINT, &self.plan.options()).await?
        else {
            return Ok(None);
        };
        let shadow = Shadow::of(conn, self.plan.tables()).await?;
        Ok(shadow.exists(conn).await?.then_some(checkpoint))
    }

    /// Reads, folds and writes the next batch after `checkpoint`, moving it
    /// on; the number of events (0 at the end).
    async fn fold_batch(
        &self,
        conn: &mut PgConnection,
        shadow: &Shadow,
        checkpoint: &mut ReplayCheckpoint,
    ) -> Result<u64, RebuildError> {
        let events = read_history(
            conn,
            checkpoint.cursor,
            &self.plan.filter(),
            i64::from(self.plan.batch_size),
        )
        .await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let cursor = last.cursor;
        let count = u64::try_from(events.len()).unwrap_or_default();
        let rows = fold_onto_shadow(conn, shadow, events).await?;
        write::store(conn, shadow, rows).await?;
        checkpoint.cursor = cursor;
        checkpoint.done += count;
        Ok(count)
    }
}

/// Folds `events` onto the shadow rows they continue (loaded first).
async fn fold_onto_shadow(
    conn: &mut PgConnection,
    shadow: &Shadow,
    events: Vec<HistoryEvent>,
) -> Result<Rows, RebuildError> {
    // Rows whose first event here is not their first ever exist already.
    let mut seen = HashSet::new();
    let (mut tickets, mut orders, mut payments) = (Vec::new(), Vec::new(), Vec::new());
    for event in &events {
        let (id, sequence, ids) = match &event.envelope {
            WireEnvelope::Ticket(e) => (&e.aggregate_id, e.sequence, &mut tickets),
            WireEnvelope::Order(e) => (&e.aggregate_id, e.sequence, &mut orders),
            WireEnvelope::Payment(e) => (&e.aggregate_id, e.sequence, &mut payments),
        };
        let kind = std::mem::discriminant(&event.envelope);
        if seen.insert((kind, id.as_str())) && sequence > 1 {
            ids.push(id.clone());
        }
    }
    let mut rows = Rows::default();
    write::load(conn, shadow, &mut rows, &tickets, &orders, &payments).await?;
    drop(seen);
    for event in events {
        rows.apply(event.envelope)?;
    }
    Ok(rows)
}
