//! The read side's lookups and ranges stay index scans however the tables
//! grew since the connection first ran them.
//!
//! Seen under load: a worker started on empty views cached a generic plan
//! for its batch lookup (a hash join over a sequential scan: cheapest on an
//! empty table) and kept it as the views grew to 300,000 rows, so every
//! batch, even of one event, scanned the whole table (about 100 ms), until
//! an autoanalyze happened to invalidate the plan.

use ticketing_projections::reconcile::follow::follow_step;
use ticketing_projections::reconcile::sweep::compare_range;
use ticketing_projections::{apply_events, AggregateKind, ProjectedEvent};
use ticketing_relay::Cursor;

use crate::common::{created, TestDb, TestResult};

#[tokio::test]
async fn a_batch_lookup_never_runs_on_a_plan_made_for_another_table_size() -> TestResult {
    let db = TestDb::create().await?;
    let mut conn = db.pool.acquire().await?;
    // Batches as under load, from an empty table: PostgreSQL switches a
    // prepared statement to a generic plan after five executions.
    let mut n = 0;
    for _ in 0..8 {
        let events = (n..n + 500)
            .map(created)
            .collect::<anyhow::Result<Vec<_>>>()?;
        n += 500;
        let batch: Vec<&ProjectedEvent> = events.iter().collect();
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let _ = apply_events(&mut tx, &batch).await?;
        tx.commit().await?;
    }
    // And the sweep's ranges, as often as it compares them.
    for _ in 0..8 {
        let _ = compare_range(
            &mut conn,
            AggregateKind::Ticket,
            "",
            1_000,
            Cursor {
                transaction_id: i64::MAX,
                global_position: i64::MAX,
            },
        )
        .await?;
    }
    let generic: Vec<(String, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans FROM pg_prepared_statements \
         WHERE generic_plans > 0 AND statement NOT LIKE '%pg_prepared_statements%' \
           AND (statement LIKE '%unnest(%' OR statement LIKE '%WITH RECURSIVE ids%' \
                OR statement LIKE '%last_sequence FROM ticket_views WHERE id >%')",
    )
    .fetch_all(&mut *conn)
    .await?;
    assert!(
        generic.is_empty(),
        "lookups planned once for every table size: {generic:?}"
    );
    drop(conn);
    db.drop().await
}

/// Many aggregates of one event each, written straight into the store.
pub(crate) async fn store_aggregates(
    conn: &mut sqlx::PgConnection,
    count: i64,
) -> anyhow::Result<()> {
    let _ = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT 'Ticket', 't-' || lpad(n::text, 7, '0'), 1, 'TicketCreated', '1', '{}', '{}' \
         FROM generate_series(1, $1) AS n",
    )
    .bind(count)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A view row, at sequence 1, for every ticket in the store.
pub(crate) async fn project_every_ticket(conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let _ = sqlx::query(
        "INSERT INTO ticket_views (id, title, price_cents, user_id, version, last_sequence) \
         SELECT aggregate_id, 'Opera', 2500, 'seller', 0, 1 FROM events",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_sweep_range_reads_its_own_aggregates_and_not_the_rest_of_the_store() -> TestResult {
    let db = TestDb::create().await?;
    let mut conn = db.pool.acquire().await?;
    // As on a server whose autovacuum has not analyzed `events` since it
    // was small: the planner knows nothing of its 20,000 aggregates.
    let _ = sqlx::query("ALTER TABLE events SET (autovacuum_enabled = false)")
        .execute(&mut *conn)
        .await?;
    store_aggregates(&mut conn, 20_000).await?;
    let limit = 100;
    for after in ["", "t-0010000"] {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let report = compare_range(
            &mut tx,
            AggregateKind::Ticket,
            after,
            limit,
            Cursor {
                transaction_id: i64::MAX,
                global_position: i64::MAX,
            },
        )
        .await?;
        // This transaction's reads of the store, so far.
        let (sequential, by_index): (i64, i64) = sqlx::query_as(
            "SELECT seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables \
             WHERE relname = 'events'",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        assert_eq!(
            report.compared,
            u64::try_from(limit)?,
            "after {after:?}: {report:?}"
        );
        assert_eq!(
            report.differences.len(),
            usize::try_from(limit)?,
            "every aggregate is missing from the empty view"
        );
        assert!(
            sequential + by_index <= 10 * limit,
            "after {after:?}: a range of {limit} aggregates read {sequential} rows by scan \
             and {by_index} by index"
        );
    }
    drop(conn);
    db.drop().await
}

/// Sequential scans of `ticket_views` so far, this connection's included.
async fn view_scans(conn: &mut sqlx::PgConnection) -> sqlx::Result<i64> {
    // The connection's counts reach the shared statistics at the end of
    // the statement that asks for it.
    let _ = sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'ticket_views'")
        .fetch_one(&mut *conn)
        .await
}

#[tokio::test]
async fn the_follower_looks_up_the_views_of_its_events_and_not_the_whole_view() -> TestResult {
    let db = TestDb::create().await?;
    // One connection, so that the statistics read below are its own.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*db.pool.connect_options()).clone())
        .await?;
    let mut conn = pool.acquire().await?;
    let _ = sqlx::query("ALTER TABLE ticket_views SET (autovacuum_enabled = false)")
        .execute(&mut *conn)
        .await?;
    // 20,000 tickets, each projected, written in one transaction.
    store_aggregates(&mut conn, 20_000).await?;
    project_every_ticket(&mut conn).await?;
    let (transaction_id,): (i64,) =
        sqlx::query_as("SELECT min(transaction_id::text::bigint) FROM events")
            .fetch_one(&mut *conn)
            .await?;
    let at = |global_position| Cursor {
        transaction_id,
        global_position,
    };
    let before = view_scans(&mut conn).await?;
    drop(conn);

    let report = follow_step(&pool, at(2_000), at(20_000), 5_000).await?;

    let mut conn = pool.acquire().await?;
    let after = view_scans(&mut conn).await?;
    assert_eq!((report.checked, report.behind), (2_000, 0), "{report:?}");
    assert_eq!(
        after - before,
        0,
        "2,000 events were checked by scanning the view"
    );
    drop(conn);
    pool.close().await;
    db.drop().await
}
