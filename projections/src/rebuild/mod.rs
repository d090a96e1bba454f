//! Rebuilding read models from the event store, for `ticketing replay
//! rebuild`.
//!
//! Events are read in the relay's publication order (`(transaction_id,
//! global_position)`, only transactions older than every one in flight)
//! and converted exactly as the relay publishes them, old versions upcast
//! ([`ticketing_relay::read_fold_events`]), by a reader task on a
//! connection of its own that keeps a batch or two ahead of the fold.
//!
//! The rows are folded in memory per aggregate (`rows`, as the
//! live projector folds them) and held there
//! across batches, so each row is written to the shadow tables once, by a
//! binary `COPY`, rather than once per batch. What has been folded is
//! committed, its rows with the checkpoint (`replay_checkpoints`) in one
//! transaction, when the caller stops the run (Ctrl-C: a stopped run
//! resumes exactly where it stopped), at least once every
//! [`COMMIT_INTERVAL`] (what a crash can lose), when more than
//! [`RebuildPlan::max_held_rows`] rows are held (they are then dropped from
//! memory, and loaded back from the shadow tables when a later event
//! continues them; rows written before are updated by a multi-row upsert),
//! and at the end. A resumed run starts with nothing in memory.
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

mod shadow;

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{Acquire, PgConnection, PgPool};
use ticketing_relay::{
    clear_checkpoint, count_history, load_checkpoint, read_fold_events, save_checkpoint, Cursor,
    FoldEvent, HistoryFilter, RelayError, ReplayCheckpoint, WirePayload,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::changes;
use crate::decode::AggregateKind;
use crate::rows::store::{self, Lock, NewRows};
use crate::rows::Rows;
use crate::ProjectionError;
use shadow::Shadow;
pub use shadow::SHADOW_SCHEMA;

/// Session advisory lock held by the one rebuild running on a database.
pub const REBUILD_LOCK_KEY: i64 = 0x0072_6562_7569_6c64; // "rebuild"

/// The checkpoint's name in `replay_checkpoints`.
pub const REBUILD_CHECKPOINT: &str = "rebuild";

/// How long the final swap waits for the live projector's transactions to
/// end before giving up (and leaving the shadow to resume from).
const SWAP_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a run folds without committing: what a crash (rather than
/// a stop) can cost.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(60);

/// Rows held in memory before they are committed and dropped: a few
/// hundred bytes each.
pub const MAX_HELD_ROWS: usize = 1_000_000;

/// Batches the reader may have read ahead of the fold.
const READ_AHEAD: usize = 2;

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
    #[error("the event store reader stopped before the end")]
    ReaderStopped,
}

/// What to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildPlan {
    /// The views, by the aggregate type they are built from.
    pub views: Vec<AggregateKind>,
    /// Events read and folded at once (and the progress reported between).
    pub batch_size: u32,
    /// Rows held in memory before they are committed and dropped
    /// ([`MAX_HELD_ROWS`] unless changed).
    pub max_held_rows: usize,
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
            max_held_rows: MAX_HELD_ROWS,
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
    /// Stopped by the caller after `events`, all committed; run again to
    /// resume after them.
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
    /// is cancelled, committing what was folded and leaving the shadow
    /// tables and checkpoint to resume from. Uses two of the pool's
    /// connections (the fold's and the reader's).
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
        // A resumed run's shadow tables have rows it does not hold.
        let (mut checkpoint, rows) = match resumed {
            Some(checkpoint) => {
                tracing::info!(events = checkpoint.done, "resuming the rebuild");
                (checkpoint, Rows::default())
            }
            None => {
                shadow.create(conn).await?;
                let start = ReplayCheckpoint {
                    cursor: Cursor::default(),
                    done: 0,
                };
                (start, Rows::complete())
            }
        };
        let mut reader = Reader::spawn(
            self.pool.clone(),
            checkpoint.cursor,
            self.plan.filter(),
            i64::from(self.plan.batch_size),
        );
        let folded = self
            .fold_all(
                conn,
                &shadow,
                rows,
                &mut reader,
                &mut checkpoint,
                stop,
                progress,
            )
            .await;
        reader.close().await;
        if !folded? {
            return Ok(RebuildOutcome::Interrupted {
                events: checkpoint.done,
            });
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
        let mut rows = Rows::default();
        loop {
            let events = read_fold_events(
                &mut tx,
                caught_up.cursor,
                &self.plan.filter(),
                i64::from(self.plan.batch_size),
            )
            .await?;
            if !fold(&mut tx, shadow, &mut rows, events, &mut caught_up).await? {
                break;
            }
        }
        let _ = store::flush(&mut tx, &shadow.tables(), NewRows::Copy, &mut rows).await?;
        shadow.swap(&mut tx).await?;
        clear_checkpoint(&mut tx, REBUILD_CHECKPOINT).await?;
        tx.commit().await?;
        // Pages kept in memory must not outlive the old views.
        if let Err(error) = changes::announce(&mut *conn).await {
            tracing::warn!(error.message = %error, "the swap was not announced; cached pages expire on their own");
        }
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

    /// Folds every batch the reader sends onto `checkpoint`, committing
    /// as the module docs say; `false` if stopped (what was folded then
    /// committed).
    #[allow(clippy::too_many_arguments)] // each is a different piece of the run
    async fn fold_all(
        &self,
        conn: &mut PgConnection,
        shadow: &Shadow,
        mut rows: Rows,
        reader: &mut Reader,
        checkpoint: &mut ReplayCheckpoint,
        stop: &CancellationToken,
        progress: &mut impl FnMut(u64),
    ) -> Result<bool, RebuildError> {
        let options = self.plan.options();
        let mut committed = checkpoint.clone();
        let mut next_commit = Instant::now() + COMMIT_INTERVAL;
        loop {
            if stop.is_cancelled() {
                commit(
                    conn,
                    shadow,
                    &mut rows,
                    checkpoint,
                    &mut committed,
                    &options,
                )
                .await?;
                return Ok(false);
            }
            let events = reader.next().await?;
            if !fold(conn, shadow, &mut rows, events, checkpoint).await? {
                break;
            }
            progress(checkpoint.done);
            let full = rows.len() > self.plan.max_held_rows;
            if full || Instant::now() >= next_commit {
                commit(
                    conn,
                    shadow,
                    &mut rows,
                    checkpoint,
                    &mut committed,
                    &options,
                )
                .await?;
                next_commit = Instant::now() + COMMIT_INTERVAL;
                if full {
                    rows = Rows::default();
                }
            }
        }
        commit(
            conn,
            shadow,
            &mut rows,
            checkpoint,
            &mut committed,
            &options,
        )
        .await?;
        Ok(true)
    }
}

/// Writes the rows changed since the last commit and `checkpoint` in one
/// transaction, unless nothing was folded since.
async fn commit(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: &mut Rows,
    checkpoint: &ReplayCheckpoint,
    committed: &mut ReplayCheckpoint,
    options: &str,
) -> Result<(), RebuildError> {
    if checkpoint == committed {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    let written = store::flush(&mut tx, &shadow.tables(), NewRows::Copy, rows).await?;
    save_checkpoint(&mut tx, REBUILD_CHECKPOINT, options, checkpoint).await?;
    tx.commit().await?;
    tracing::debug!(
        events = checkpoint.done,
        rows = written,
        "rebuild committed"
    );
    committed.clone_from(checkpoint);
    Ok(())
}

/// Folds `events` onto `rows`, first loading the shadow rows they
/// continue that `rows` does not hold, and moves `checkpoint` past them;
/// `false` if there were none (the end of the history).
async fn fold(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: &mut Rows,
    events: Vec<FoldEvent>,
    checkpoint: &mut ReplayCheckpoint,
) -> Result<bool, RebuildError> {
    let Some(last) = events.last() else {
        return Ok(false);
    };
    let cursor = last.cursor;
    if !rows.complete {
        load_continued(conn, shadow, rows, &events).await?;
    }
    let count = u64::try_from(events.len()).unwrap_or_default();
    for event in events {
        rows.apply(event)?;
    }
    checkpoint.cursor = cursor;
    checkpoint.done += count;
    Ok(true)
}

/// Loads the shadow rows that `events` continue and `rows` does not hold.
async fn load_continued(
    conn: &mut PgConnection,
    shadow: &Shadow,
    rows: &mut Rows,
    events: &[FoldEvent],
) -> Result<(), RebuildError> {
    // An aggregate not held whose first event here is not its first ever
    // has a row in the shadow (a resumed run, or rows dropped from memory).
    let mut seen = HashSet::new();
    let (mut tickets, mut orders, mut payments) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        if !rows.needs_load(event) && event.sequence > 1 {
            continue;
        }
        let (kind, ids) = match event.event {
            WirePayload::Ticket(_) => (0_u8, &mut tickets),
            WirePayload::Order(_) => (1, &mut orders),
            WirePayload::Payment(_) => (2, &mut payments),
        };
        if seen.insert((kind, event.aggregate_id.as_str())) && event.sequence > 1 {
            ids.push(event.aggregate_id.clone());
        }
    }
    if !(tickets.is_empty() && orders.is_empty() && payments.is_empty()) {
        store::load(
            conn,
            &shadow.tables(),
            Lock::None,
            rows,
            &tickets,
            &orders,
            &payments,
        )
        .await?;
    }
    Ok(())
}

/// The task reading the history ahead of the fold, on its own connection.
struct Reader {
    batches: mpsc::Receiver<Result<Vec<FoldEvent>, RelayError>>,
    task: JoinHandle<()>,
}

impl Reader {
    fn spawn(pool: PgPool, after: Cursor, filter: HistoryFilter, batch_size: i64) -> Self {
        let (sender, batches) = mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            let read = async {
                let mut conn = pool.acquire().await?;
                let mut after = after;
                loop {
                    let events = read_fold_events(&mut conn, after, &filter, batch_size).await?;
                    let end = events.is_empty();
                    if let Some(last) = events.last() {
                        after = last.cursor;
                    }
                    // The fold hung up (stopped or failed): nothing to do.
                    if sender.send(Ok(events)).await.is_err() || end {
                        return Ok(());
                    }
                }
            };
            let read: Result<(), RelayError> = read.await;
            if let Err(error) = read {
                let _ = sender.send(Err(error)).await;
            }
        });
        Self { batches, task }
    }

    /// The next batch; an empty one at the end of the history.
    async fn next(&mut self) -> Result<Vec<FoldEvent>, RebuildError> {
        match self.batches.recv().await {
            Some(batch) => Ok(batch?),
            // It sends an empty batch or an error before it ends: a panic.
            None => Err(RebuildError::ReaderStopped),
        }
    }

    /// Hangs up and waits for the task, which ends after its current read.
    async fn close(self) {
        drop(self.batches);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the rebuild's event store reader failed");
        }
    }
}

#[cfg(test)]
mod tests;
