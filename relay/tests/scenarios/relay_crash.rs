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
