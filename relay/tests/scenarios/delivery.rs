use std::time::{Duration, Instant};

use sqlx::Connection;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};
use ticketing_relay::{
    provision_topics, try_publish_batch, PublishOutcome, Publisher, RelayMetrics,
};

use crate::common::{
    assert_consumer_view, eventually, load, read_all, relay_config, shared_brokers, RunningRelay,
    TestDb, TestResult,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_commands_arrive_exactly_once_in_sequence_per_key() -> TestResult {
    // Arrange
    let db = TestDb::create().await?;
    let mut config = relay_config(&shared_brokers());
    config.partitions = 6;
    let relay = RunningRelay::spawn(&db.pool, &config);

    // Act: 1,000 tickets × 10 commands, 32 tickets at a time, while the
    // relay publishes.
    let started = Instant::now();
    let committed = load::ticket_commands(&db.pool, 1_000, 10, 32).await?;
    let written = started.elapsed();
    let metrics = relay.metrics.clone();
    eventually(Duration::from_secs(60), || {
        let published = metrics.snapshot().events_published;
        async move { Ok(published >= 10_000) }
    })
    .await?;
    let topics = [config.topics.tickets.as_str()];
    let received = read_all(&config.brokers, &topics, 10_000, Duration::from_secs(60)).await?;

    // Assert
    assert_eq!(committed, 10_000);
    let stored = db.events().await?;
    assert_eq!(stored.len(), 10_000);
    let duplicates = assert_consumer_view(&received, &stored)?;
    assert_eq!(duplicates, 0, "steady state publishes each event once");
    assert_eq!(received.len(), 10_000);
    let snapshot = relay.metrics.snapshot();
    println!(
        "10,000 commands in {written:?}; commit-to-ack p50 {:?} p99 {:?}",
        snapshot.latency_p50, snapshot.latency_p99
    );
    relay.stop().await?;
    db.drop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_carries_identity_position_causality_and_trace_context() -> TestResult {
    // Arrange
    let db = TestDb::create().await?;
    let config = relay_config(&shared_brokers());
    provision_topics(&config).await?;
    let publisher = Publisher::new(&config)?;
    let metrics = RelayMetrics::default();
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    let executor = CommandExecutor::<Ticket>::new(db.pool.clone(), ());
    let metadata = CommandMetadata {
        correlation_id: "corr-1".into(),
        causation_id: "cause-1".into(),
        user_id: Some("seller".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let create = TicketCommand::Create {
        title: Title::parse("Concert")?,
        price: Money::from_cents(1999)?,
        user_id: "seller".into(),
    };
    let _ = executor.execute("ticket-1", create, &metadata).await?;

    // Act: a write transaction still in flight anywhere on the server (tests
    // run in parallel) holds the event back for a moment, so step until the
    // relay has something to publish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        match try_publish_batch(&mut conn, &publisher, &metrics).await? {
            PublishOutcome::Idle if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            outcome => break outcome,
        }
    };
    let second = try_publish_batch(&mut conn, &publisher, &metrics).await?;
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        1,
        Duration::from_secs(20),
    )
    .await?;

    // Assert
    assert_eq!(first, PublishOutcome::Published(1));
    assert_eq!(second, PublishOutcome::Idle);
    let [message] = received.as_slice() else {
        anyhow::bail!("expected one message, got {}", received.len());
    };
    let (event_id,): (uuid::Uuid,) = sqlx::query_as("SELECT event_id FROM events")
        .fetch_one(&db.pool)
        .await?;
    let envelope = &message.envelope;
    assert_eq!(message.key, "ticket-1");
    assert_eq!(envelope["eventId"], event_id.to_string());
    assert_eq!(envelope["eventType"], "TicketCreated");
    assert_eq!(envelope["schemaVersion"], "1.1.0");
    assert_eq!(envelope["aggregateType"], "Ticket");
    assert_eq!(envelope["aggregateId"], "ticket-1");
    assert_eq!(envelope["sequence"], 1);
    assert_eq!(envelope["globalPosition"], 1);
    assert_eq!(envelope["correlationId"], "corr-1");
    assert_eq!(envelope["causationId"], "cause-1");
    assert!(
        chrono::DateTime::parse_from_rfc3339(envelope["timestamp"].as_str().unwrap_or("")).is_ok()
    );
    assert_eq!(
        envelope["data"],
        serde_json::json!({ "title": "Concert", "priceCents": 1999, "userId": "seller", "currency": "usd" })
    );
    let header = |name: &str| message.headers.get(name).map(String::as_str);
    assert_eq!(header("event-type"), Some("TicketCreated"));
    assert_eq!(header("schema-version"), Some("1.1.0"));
    assert_eq!(header("event-id"), Some(event_id.to_string().as_str()));
    assert_eq!(header("correlation-id"), Some("corr-1"));
    assert_eq!(header("traceparent"), metadata.traceparent.as_deref());
    assert_eq!(metrics.snapshot().events_published, 1);
    conn.close().await?;
    db.drop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_stopped_as_its_last_batch_is_acknowledged_has_saved_its_cursor() -> TestResult {
    // Arrange: a relay publishing a steady stream of commands.
    let db = TestDb::create().await?;
    let config = relay_config(&shared_brokers());
    let relay = RunningRelay::spawn(&db.pool, &config);
    let committed = load::ticket_commands(&db.pool, 200, 5, 16).await?;
    let expected = u64::try_from(committed)?;

    // Act: stopped the moment the broker has acknowledged everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.metrics.snapshot().events_published < expected {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not publish in time"
        );
        tokio::task::yield_now().await;
    }
    relay.stop().await?;

    // Assert: nothing is left after the saved cursor, so a new leader
    // sends nothing again.
    assert_eq!(committed, 1_000);
    assert_eq!(
        db.pending().await?,
        0,
        "every acknowledged event is behind the cursor"
    );
    db.drop().await
}
