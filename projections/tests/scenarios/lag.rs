//! Lag is measured per partition and drives readiness.

use std::time::Duration;

use sqlx::Connection;

use crate::common::{
    self, eventually, produce, ticket, Producer, RunningProjector, TestDb, TestResult,
};

#[tokio::test]
async fn lag_is_reported_while_the_read_models_are_behind() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    worker.joined().await?;
    let metrics = worker.metrics.clone();
    eventually(Duration::from_secs(10), || async {
        Ok(metrics.readiness(10).is_ok())
    })
    .await?;

    // Hold the tickets view locked: the worker blocks on the first message
    // while the others pile up on the broker.
    let mut blocker = db.pool.acquire().await?;
    let mut lock = blocker.begin().await?;
    let _ = sqlx::query("LOCK TABLE ticket_views IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;
    for n in 0..300 {
        let envelope = produce(&format!("t-{n}"), 1, n + 1, ticket("Lag", 100, "seller"));
        let key = envelope.aggregate_id.clone();
        let _ = producer
            .send_raw(
                &config.topics.tickets,
                &key,
                &serde_json::to_vec(&envelope)?,
            )
            .await?;
    }
    eventually(Duration::from_secs(20), || async {
        // 300 messages over 4 partitions; the one being applied counts too.
        Ok(metrics.total_lag() == 300 && metrics.max_lag() >= 60)
    })
    .await?;
    assert!(metrics.readiness(10).is_err());

    lock.rollback().await?;
    eventually(Duration::from_secs(20), || async {
        Ok(metrics.max_lag() == 0 && db.applied_events().await? == 300)
    })
    .await?;
    assert_eq!(metrics.readiness(10), Ok(()));
    worker.stop().await?;
    db.drop().await
}
