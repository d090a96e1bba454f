use std::time::Duration;

use crate::common::{
    assert_consumer_view, eventually, load, read_all, relay_config, shared_brokers, RunningRelay,
    TestDb, TestResult,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_and_restarted_loses_nothing_and_resends_same_ids() -> TestResult {
    // Arrange: a backlog to publish in small batches, so the kill lands
    // while a batch is in flight.
    let db = TestDb::create().await?;
    let mut config = relay_config(&shared_brokers());
    config.batch_size = 50;
    let _ = load::ticket_commands(&db.pool, 300, 10, 32).await?;
    let first = RunningRelay::spawn(&db.pool, &config);
    let metrics = first.metrics.clone();
    eventually(Duration::from_secs(60), || {
        let published = metrics.snapshot().events_published;
        async move { Ok(published >= 500) }
    })
    .await?;

    // Act: the task and its lock connection vanish mid-flight.
    first.abort().await;
    let pending_after_kill = db.pending().await?;
    let second = RunningRelay::spawn(&db.pool, &config);
    db.drained(Duration::from_secs(60)).await?;
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        3_000,
        Duration::from_secs(30),
    )
    .await?;

    // Assert
    assert!(pending_after_kill > 0 && pending_after_kill < 3_000);
    let duplicates = assert_consumer_view(&received, &db.events().await?)?;
    assert!(duplicates <= 50, "at most the interrupted batch is re-sent");
    println!("relay killed with {pending_after_kill} pending; {duplicates} re-sent with the same eventId");
    second.stop().await?;
    db.drop().await
}

/// The leader saves its cursor without waiting for the WAL flush, so a
/// database crash may lose its last saves: the cursor is then behind events
/// already published. They are published again with the same `eventId`;
/// none is lost and no first copy moves out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_set_back_by_a_lost_save_republishes_what_follows_and_loses_nothing() -> TestResult
{
    // Arrange: everything published once.
    let db = TestDb::create().await?;
    let config = relay_config(&shared_brokers());
    let _ = load::ticket_commands(&db.pool, 60, 5, 16).await?;
    let first = RunningRelay::spawn(&db.pool, &config);
    db.drained(Duration::from_secs(60)).await?;
    first.stop().await?;

    // Act: the cursor back at the 100th event, as if the saves after it
    // had been lost; a relay leads again.
    let _ = sqlx::query(
        "UPDATE relay_cursor SET (transaction_id, global_position) = \
         (SELECT transaction_id, global_position FROM events \
          ORDER BY transaction_id, global_position OFFSET 99 LIMIT 1) \
         WHERE name = 'kafka'",
    )
    .execute(&db.pool)
    .await?;
    let behind = usize::try_from(db.pending().await?)?;
    let second = RunningRelay::spawn(&db.pool, &config);
    db.drained(Duration::from_secs(60)).await?;
    let stored = db.events().await?;
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        stored.len() + behind,
        Duration::from_secs(30),
    )
    .await?;

    // Assert
    assert_eq!(behind, stored.len() - 100);
    let duplicates = assert_consumer_view(&received, &stored)?;
    assert_eq!(
        duplicates, behind,
        "exactly the events after the cursor, again"
    );
    second.stop().await?;
    db.drop().await
}
