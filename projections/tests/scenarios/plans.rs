//! The read side's lookups and ranges stay index scans however the tables
//! grew since the connection first ran them.
//!
//! Seen under load: a worker started on empty views cached a generic plan
//! for its batch lookup (a hash join over a sequential scan: cheapest on an
//! empty table) and kept it as the views grew to 300,000 rows, so every
//! batch, even of one event, scanned the whole table (about 100 ms), until
//! an autoanalyze happened to invalidate the plan.

use ticketing_projections::reconcile::sweep::compare_range;
use ticketing_projections::{apply_events, AggregateKind, ProjectedEvent};
use ticketing_relay::Cursor;

use crate::common::{produce, ticket, TestDb, TestResult};

fn created(n: usize) -> anyhow::Result<ProjectedEvent> {
    let envelope = produce(
        &format!("t-{n:06}"),
        1,
        u64::try_from(n)?,
        ticket("Opera", 2500, "seller"),
    );
    Ok(ProjectedEvent::decode(
        AggregateKind::Ticket,
        &serde_json::to_vec(&envelope)?,
    )?)
}

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
           AND (statement LIKE '%unnest(%' OR statement LIKE '%GROUP BY aggregate_id%' \
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
