use std::time::Duration;

use sqlx::{Connection, PgConnection};
use ticketing_relay::{
    provision_topics, try_publish_batch, PublishOutcome, Publisher, RelayMetrics,
};

use crate::common::{
    assert_consumer_view, load, read_all, relay_config, shared_brokers, TestDb, TestResult,
};

/// A position-only tail would publish the later positions, move past the
/// open transaction's position, and never see that event once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_transaction_commits_late_is_published_not_skipped() -> TestResult {
    // Arrange: one partition, so offsets show the publication order.
    let db = TestDb::create().await?;
    let mut config = relay_config(&shared_brokers());
    config.partitions = 1;
    provision_topics(&config).await?;
    let publisher = Publisher::new(&config)?;
    let metrics = RelayMetrics::default();
    let mut relay_conn = PgConnection::connect(&db.url).await?;
    let mut late = PgConnection::connect(&db.url).await?;
    let mut late_tx = late.begin().await?;
    let (late_position,): (i64,) = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Ticket', 'late-ticket', 1, 'TicketCreated', '1.0', \
                 '{\"TicketCreated\":{\"title\":\"Late\",\"price_cents\":500,\"user_id\":\"u\"}}', '{}') \
         RETURNING global_position",
    )
    .fetch_one(&mut *late_tx)
    .await?;
    let _ = load::ticket_commands(&db.pool, 5, 3, 5).await?;
    let (highest,): (i64,) = sqlx::query_as("SELECT max(global_position) FROM events")
        .fetch_one(&db.pool)
        .await?;
    assert!(highest > late_position, "later positions are committed");

    // Act 1: the open transaction holds everything after it back.
    let while_open = try_publish_batch(&mut relay_conn, &publisher, &metrics).await?;
    late_tx.commit().await?;
    let mut published = 0;
    while published < 16 {
        match try_publish_batch(&mut relay_conn, &publisher, &metrics).await? {
            PublishOutcome::Published(n) => published += n,
            // Another test's transaction, older than ours, may be in flight.
            PublishOutcome::Idle => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        16,
        Duration::from_secs(20),
    )
    .await?;

    // Assert
    assert_eq!(while_open, PublishOutcome::Idle);
    assert_eq!(published, 16);
    let stored = db.events().await?;
    assert_eq!(assert_consumer_view(&received, &stored)?, 0);
    let first = received
        .iter()
        .min_by_key(|m| m.offset)
        .map(|m| m.key.as_str());
    assert_eq!(first, Some("late-ticket"), "published in transaction order");
    relay_conn.close().await?;
    late.close().await?;
    db.drop().await
}
