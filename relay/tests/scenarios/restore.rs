//! A logical restore (pg_dump, then pg_restore into another cluster) keeps
//! the old cluster's transaction ids in `events.transaction_id` and in the
//! relay cursor. The new cluster hands out its own, usually lower, ids: new
//! events would sort below restored ones and below the cursor.

use std::time::Duration;

use crate::common::{
    assert_consumer_view, load, read_all, relay_config, shared_brokers, RunningRelay, TestDb,
    TestResult,
};

/// What a dump from a cluster a billion transactions older looks like once
/// restored here: the same rows, their ids far ahead of this cluster's.
async fn as_if_restored_from_an_older_cluster(db: &TestDb) -> TestResult {
    for table in ["events", "relay_cursor"] {
        let _ = sqlx::query(&format!(
            "UPDATE {table} SET transaction_id = \
             (transaction_id::text::bigint + 1000000000)::text::xid8"
        ))
        .execute(&db.pool)
        .await?;
    }
    Ok(())
}

async fn aggregate_ids(db: &TestDb) -> anyhow::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events ORDER BY 1")
            .fetch_all(&db.pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_logical_restore_every_event_is_published_in_order() -> TestResult {
    // Arrange: events published before the dump, and some committed while
    // the relay was down (unpublished in the dump).
    let db = TestDb::create().await?;
    let config = relay_config(&shared_brokers());
    let relay = RunningRelay::spawn(&db.pool, &config);
    let _ = load::ticket_commands(&db.pool, 10, 2, 4).await?;
    db.drained(Duration::from_secs(30)).await?;
    relay.stop().await?;
    let _ = load::ticket_commands(&db.pool, 5, 2, 4).await?;
    let restored = aggregate_ids(&db).await?;
    as_if_restored_from_an_older_cluster(&db).await?;

    // Act: the restored system goes on: new tickets, and restored ones
    // changed again, before and after the relay starts.
    let _ = load::ticket_commands(&db.pool, 5, 2, 4).await?;
    load::continue_tickets(&db.pool, &restored[..3], 2, 1).await?;
    let relay = RunningRelay::spawn(&db.pool, &config);
    let _ = load::ticket_commands(&db.pool, 5, 2, 4).await?;
    load::continue_tickets(&db.pool, &restored[..3], 3, 1).await?;

    // Assert: every stored event reaches the topic, in order per ticket.
    let stored = db.events().await?;
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        stored.len(),
        Duration::from_secs(30),
    )
    .await?;
    let duplicates = assert_consumer_view(&received, &stored)?;
    println!(
        "restore: {} events stored, {} received ({duplicates} re-sent)",
        stored.len(),
        received.len()
    );
    relay.stop().await?;
    db.drop().await
}
