//! The relay's backlog count stays an index range however `events` grew
//! since the connection first ran it.
//!
//! Seen under load: a prepared count switched to a generic plan while
//! `events` was small (a sequential scan) and kept it at 470,000 rows, so
//! every refresh scanned the whole table (about 80 ms, once a second).

use ticketing_relay::{backlog, Cursor};

use crate::common::{TestDb, TestResult};

#[tokio::test]
async fn the_backlog_count_never_runs_on_a_plan_made_for_another_table_size() -> TestResult {
    let db = TestDb::create().await?;
    let mut conn = db.pool.acquire().await?;
    let start = Cursor {
        transaction_id: 0,
        global_position: 0,
    };
    // More refreshes than PostgreSQL's five custom plans before it may
    // switch a prepared statement to a generic one, as the store grows.
    for round in 1..=8_i64 {
        let _ = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             SELECT 'Ticket', 'r' || $1 || '-' || n, 1, 'TicketCreated', '1', '{}', '{}' \
             FROM generate_series(1, 100) AS n",
        )
        .bind(round)
        .execute(&mut *conn)
        .await?;
        let pending = backlog(&mut conn, start, 1_000_000).await?;
        assert_eq!(pending, round * 100, "every event is after the start");
    }
    let generic: Vec<(String, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans FROM pg_prepared_statements \
         WHERE generic_plans > 0 AND statement NOT LIKE '%pg_prepared_statements%' \
           AND statement LIKE '%count(*) FROM (SELECT 1 FROM events%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    assert!(
        generic.is_empty(),
        "the count is planned for the cursor it is given: {generic:?}"
    );
    drop(conn);
    db.drop().await
}
