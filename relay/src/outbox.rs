//! SQL over the `events` table (the outbox) and the relay's cursor.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The `relay_cursor` row of the Kafka relay.
pub const CURSOR_NAME: &str = "kafka";

/// How far the relay got: the last acknowledged event's transaction and
/// position. Events are published in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub transaction_id: i64,
    pub global_position: i64,
}

/// One row of `events`, as the relay publishes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StoredEvent {
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    /// The version the payload was stored at; older ones are upcast first.
    pub(crate) event_version: String,
    pub(crate) payload: serde_json::Value,
    pub(crate) metadata: serde_json::Value,
    pub(crate) global_position: i64,
    pub(crate) event_id: Uuid,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) transaction_id: i64,
}

impl StoredEvent {
    pub(crate) fn cursor(&self) -> Cursor {
        Cursor {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// Where the relay left off; the start of the store if it never ran.
///
/// `xid8` has no sqlx type; it travels as text cast to a bigint, which holds
/// any 64-bit transaction id PostgreSQL will hand out.
#[tracing::instrument(level = "debug", skip(conn))]
pub(crate) async fn load_cursor(conn: &mut PgConnection, name: &str) -> sqlx::Result<Cursor> {
    Ok(find_cursor(conn, name).await?.unwrap_or_default())
}

/// How far the relay has published (every event up to it was acknowledged
/// by the broker); `None` if it never published. For readers that follow
/// the relay, such as the read side checking itself against the store.
pub async fn published_cursor(conn: &mut PgConnection) -> sqlx::Result<Option<Cursor>> {
    find_cursor(conn, CURSOR_NAME).await
}

async fn find_cursor(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<Cursor>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM relay_cursor WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(transaction_id, global_position)| Cursor {
        transaction_id,
        global_position,
    }))
}

/// Lets the cursor's saves on `conn` return before their WAL is flushed.
///
/// The cursor only spares work: a crash of the database that loses its
/// last saves sets it back, and the events after it are published again
/// with the same `eventId`, as after a relay crash between an
/// acknowledgement and its save. Nothing is lost (the events themselves are
/// committed durably by their writers) and no first copy moves out of order.
/// Saved once per batch, waiting for the flush was a tenth of the relay's
/// cycle under load.
pub(crate) async fn save_cursor_without_flush_wait(conn: &mut PgConnection) -> sqlx::Result<()> {
    let _ = sqlx::query("SET synchronous_commit = off")
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(level = "debug", skip(conn))]
pub(crate) async fn save_cursor(
    conn: &mut PgConnection,
    name: &str,
    cursor: Cursor,
) -> sqlx::Result<()> {
    let _ = sqlx::query(
        "INSERT INTO relay_cursor (name, transaction_id, global_position, updated_at) \
         VALUES ($1, $2::bigint::text::xid8, $3, now()) \
         ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
         global_position = EXCLUDED.global_position, updated_at = EXCLUDED.updated_at",
    )
    .bind(name)
    .bind(cursor.transaction_id)
    .bind(cursor.global_position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where rows restored from another cluster are moved: the first normal
/// transaction id, below any id this cluster hands out.
const RESTORED_TRANSACTION_ID: i64 = 3;

/// What [`rebase_restored`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rebased {
    pub(crate) cursor: Cursor,
    /// Rows moved; 0 when nothing was restored.
    pub(crate) moved: u64,
}

/// Puts events restored from another cluster back in publication order.
///
/// A logical restore (pg_dump, then pg_restore into a new cluster) keeps
/// the old cluster's transaction ids in `events` and in the cursor. Ids
/// ahead of this cluster's would sort after everything written here, and a
/// cursor ahead of them all would hide every new event for good. A row with
/// an id this cluster has not handed out yet can only be restored: such
/// rows move to [`RESTORED_TRANSACTION_ID`], ordered among themselves by
/// position (which is each aggregate's order), and the cursor moves to just
/// before the first of them not yet published. Restored events published
/// before the dump and after that one are published again (consumers
/// deduplicate by sequence); none is skipped.
///
/// Cheap when nothing was restored: one index lookup.
#[tracing::instrument(level = "debug", skip(conn))]
pub(crate) async fn rebase_restored(
    conn: &mut PgConnection,
    cursor: Cursor,
) -> sqlx::Result<Rebased> {
    const NEXT_XID: &str = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint";
    let ahead: bool = sqlx::query_scalar(&format!(
        "SELECT coalesce((SELECT max(transaction_id)::text::bigint FROM events), 0) >= {NEXT_XID} \
                OR $1 >= {NEXT_XID}"
    ))
    .bind(cursor.transaction_id)
    .fetch_one(&mut *conn)
    .await?;
    if !ahead {
        return Ok(Rebased { cursor, moved: 0 });
    }
    let mut tx = conn.begin().await?;
    // Writers wait until the move commits: none may take an id between
    // reading the next one and moving the rows at and above it.
    let _ = sqlx::query("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let next: i64 = sqlx::query_scalar(&format!("SELECT {NEXT_XID}"))
        .fetch_one(&mut *tx)
        .await?;
    let (first_unpublished, last): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT min(global_position) FILTER \
                    (WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2)), \
                max(global_position) \
         FROM events WHERE transaction_id >= $3::bigint::text::xid8",
    )
    .bind(cursor.transaction_id)
    .bind(cursor.global_position)
    .bind(next)
    .fetch_one(&mut *tx)
    .await?;
    let moved = sqlx::query(
        "UPDATE events SET transaction_id = $1::bigint::text::xid8 \
         WHERE transaction_id >= $2::bigint::text::xid8",
    )
    .bind(RESTORED_TRANSACTION_ID)
    .bind(next)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let rebased = Cursor {
        transaction_id: RESTORED_TRANSACTION_ID,
        global_position: first_unpublished
            .map(|first| first - 1)
            .or(last)
            .unwrap_or(cursor.global_position),
    };
    save_cursor(&mut tx, CURSOR_NAME, rebased).await?;
    tx.commit().await?;
    Ok(Rebased {
        cursor: rebased,
        moved,
    })
}

/// The next events after `after` that are safe to publish, in publication
/// order.
///
/// Only rows of transactions older than the oldest one still in flight *in
/// this database* are read (see [`publish_horizon`]): those can no longer be
/// joined by a row sorting before them (see the crate docs), whereas a
/// younger committed row could still be overtaken by an older transaction
/// committing late.
#[tracing::instrument(level = "debug", skip(conn))]
pub(crate) async fn fetch_publishable(
    conn: &mut PgConnection,
    after: Cursor,
    limit: u32,
) -> sqlx::Result<Vec<StoredEvent>> {
    let horizon = publish_horizon(conn).await?;
    // A separate statement, so its snapshot is taken after the horizon was
    // computed: every transaction below the horizon has ended by then. The
    // ORDER BY names the table's columns: the bare names would mean the
    // bigint output alias, which no index serves, and every batch would sort
    // the whole backlog.
    sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                global_position, event_id, recorded_at, \
                transaction_id::text::bigint AS transaction_id \
         FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
           AND transaction_id < $4::bigint::text::xid8 \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $3",
    )
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(i64::from(limit))
    .bind(horizon)
    .fetch_all(conn)
    .await
}

/// The id below which every transaction that could write to this
/// database's `events` has ended: the oldest transaction in flight among
/// this database's backends, or the snapshot's `xmax` if none is.
///
/// `pg_snapshot_xmin` alone would be server-wide: a long transaction in any
/// other database of the cluster (a report, a migration, another tenant)
/// would hold back publication here. So the statement takes its snapshot
/// first, then keeps those of its in-flight transactions that belong to
/// this database (`pg_stat_activity`, read after the snapshot). A
/// transaction that ends in between is left out of the horizon, but it has
/// ended before [`fetch_publishable`] takes its own snapshot, so its rows
/// are visible there; one that starts in between has an id above the
/// snapshot's `xmax`. (Prepared two-phase transactions are not backends;
/// the event store does not use them.)
pub(crate) async fn publish_horizon(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT coalesce( \
             (SELECT min(x) FROM pg_snapshot_xip(s.snapshot) AS x \
              WHERE x::xid IN (SELECT backend_xid FROM pg_stat_activity \
                               WHERE datname = current_database() AND backend_xid IS NOT NULL)), \
             pg_snapshot_xmax(s.snapshot))::text::bigint \
         FROM (SELECT pg_current_snapshot() AS snapshot) AS s",
    )
    .fetch_one(conn)
    .await
}

/// Committed events not yet published, counting at most `bound` so that a
/// large backlog stays cheap to measure.
///
/// Planned per execution: seen under load, a generic plan made while
/// `events` was small scanned the whole table (80 ms at 470,000 rows) on
/// every refresh, where the cursor's values select a short index range.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn backlog(conn: &mut PgConnection, after: Cursor, bound: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) LIMIT $3) AS pending",
    )
    .persistent(false)
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(bound)
    .fetch_one(conn)
    .await
}
