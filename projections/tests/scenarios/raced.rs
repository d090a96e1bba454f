//! A batch that locked no row and writes one view writes it in one
//! statement after its transaction's COMMIT. Another worker inserting one of
//! its rows meanwhile (a rebalance: both hold the partition for a moment)
//! makes that statement raced: the rows it did insert stay, and the retried
//! batch finds them, skips what they hold and applies nothing twice.

use ticketing_projections::{
    apply_events, apply_events_committed, Applied, ProjectedEvent, ProjectionError,
};

use crate::common::{created, wait_for_lock_waiter, TestDb, TestResult};

#[tokio::test]
async fn a_batch_raced_by_another_worker_is_applied_once_when_retried() -> TestResult {
    let db = TestDb::create().await?;
    let events = [created(0)?, created(1)?];
    let batch: Vec<&ProjectedEvent> = events.iter().collect();

    // The other worker has written t-000001's row and not yet committed.
    let mut rival = db.pool.begin().await?;
    let _ = apply_events(&mut rival, &[&events[1]]).await?;
    let racing = {
        let pool = db.pool.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let batch: Vec<&ProjectedEvent> = events.iter().collect();
            let mut conn = pool.acquire().await?;
            anyhow::Ok(apply_events_committed(&mut conn, &batch).await)
        })
    };
    let mut watcher = db.pool.acquire().await?;
    let _ = wait_for_lock_waiter(&mut watcher, "transactionid").await?;
    rival.commit().await?;

    let first = racing.await??;
    assert!(
        matches!(first, Err(ProjectionError::Raced { .. })),
        "the batch must see the race: {first:?}"
    );
    assert!(first.is_err_and(|e| e.is_transient()), "a race is retried");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, last_sequence FROM ticket_views ORDER BY id")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(
        rows,
        [("t-000000".to_owned(), 1), ("t-000001".to_owned(), 1)],
        "the row the batch inserted stays beside the rival's"
    );

    let mut conn = db.pool.acquire().await?;
    let retried = apply_events_committed(&mut conn, &batch).await?;
    assert_eq!(retried, [Applied::Duplicate, Applied::Duplicate]);
    drop((conn, watcher));
    db.drop().await
}
