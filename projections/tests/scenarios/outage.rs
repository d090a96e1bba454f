//! A database failure is not a poison message: the batch is retried until
//! the database is back, and nothing is dead-lettered.

use std::time::Duration;

use sqlx::Connection;

use crate::common::{
    self, eventually, produce, ticket, Producer, RunningProjector, TestDb, TestResult,
};

#[tokio::test]
async fn a_lost_database_connection_is_retried_not_dead_lettered() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    worker.joined().await?;

    // Block the worker inside its transaction, then cut every connection
    // but this one, as a database restart would.
    let mut blocker = db.pool.acquire().await?;
    let mut lock = blocker.begin().await?;
    let _ = sqlx::query("LOCK TABLE ticket_views IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;
    let tickets: Vec<_> = (0..10)
        .map(|n| produce(&format!("t-{n}"), 1, n + 1, ticket("Outage", 100, "seller")))
        .collect();
    producer.send_all(&config.topics.tickets, &tickets).await?;
    eventually(Duration::from_secs(20), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.pool)
        .await?;
        Ok(waiting > 0)
    })
    .await?;
    let _ = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *lock)
    .await?;
    lock.rollback().await?;

    let metrics = worker.metrics.clone();
    eventually(Duration::from_secs(30), || async {
        Ok(db.applied_events().await? == 10)
    })
    .await?;
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.dead_lettered, 0);
    assert!(snapshot.retries >= 1, "the failure was not retried");
    worker.stop().await?;
    db.drop().await
}
