//! Poison messages are dead-lettered with the error and their origin, and
//! the partition moves on.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use ticketing_projections::{dead_letter, ProjectionConfig};
use ticketing_schemas::{TicketEventV1, TicketUpdatedV1};

use crate::common::{
    self, eventually, produce, ticket, Producer, RunningProjector, TestDb, TestResult,
};

/// A dead letter: its key, payload and headers.
struct DeadLetter {
    key: String,
    payload: Vec<u8>,
    headers: HashMap<String, String>,
}

async fn read_dead_letters(
    brokers: &str,
    topic: &str,
    expected: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("dlq-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(partitions > 0, "no dead-letter topic {topic}");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..i32::try_from(partitions)? {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut letters = Vec::new();
    while letters.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await??;
        let headers = message.headers().map_or_else(HashMap::new, |headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        });
        letters.push(DeadLetter {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(letters)
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_later_events_still_apply() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let topic = config.topics.tickets.clone();
    let update = |sequence, title: &str| {
        produce(
            "t-1",
            sequence,
            sequence,
            TicketEventV1::TicketUpdated(TicketUpdatedV1 {
                title: title.to_owned(),
                price_cents: 700,
            }),
        )
    };
    producer
        .send_all(
            &topic,
            &[produce("t-1", 1, 1, ticket("Ballet", 500, "seller"))],
        )
        .await?;
    // Undecodable, an unknown event type, and an update of a ticket that
    // was never created (decodes, but cannot apply, even after retries).
    let not_json = producer.send_raw(&topic, "t-1", b"{not json").await?;
    let unknown = serde_json::to_vec(&serde_json::json!({
        "eventId": uuid::Uuid::new_v4(), "schemaVersion": "1.0.0", "aggregateType": "Ticket",
        "aggregateId": "t-1", "sequence": 2, "globalPosition": 2, "timestamp": chrono::Utc::now(),
        "eventType": "TicketTeleported", "data": {}
    }))?;
    let unknown_at = producer.send_raw(&topic, "t-1", &unknown).await?;
    let ghost = |id: &str, sequence| {
        serde_json::to_vec(&produce(
            id,
            sequence,
            3,
            TicketEventV1::TicketUpdated(TicketUpdatedV1 {
                title: "x".to_owned(),
                price_cents: 1,
            }),
        ))
    };
    let orphan = ghost("t-ghost", 1)?;
    let orphan_at = producer.send_raw(&topic, "t-ghost", &orphan).await?;
    // Sequence 2 of a ticket neither the topic nor the event store knows:
    // a gap that cannot be healed, and is not skipped either.
    let gap = ghost("t-gap", 2)?;
    let gap_at = producer.send_raw(&topic, "t-gap", &gap).await?;
    producer
        .send_all(&topic, &[update(2, "Ballet, matinee")])
        .await?;

    let worker = RunningProjector::spawn(&db.pool, &config)?;
    let metrics = worker.metrics.clone();
    eventually(Duration::from_secs(30), || async {
        Ok(metrics.snapshot().dead_lettered == 4 && db.applied_events().await? == 2)
    })
    .await?;
    worker.stop().await?;

    let title: String = sqlx::query_scalar("SELECT title FROM ticket_views WHERE id = 't-1'")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(title, "Ballet, matinee");
    let ghosts: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_views WHERE id = 't-ghost'")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(ghosts, 0);
    assert_eq!(
        metrics.snapshot().retries,
        2 * u64::from(config.max_retries)
    );

    let letters = read_dead_letters(
        &config.brokers,
        &ProjectionConfig::dead_letter_topic(&topic),
        4,
    )
    .await?;
    let by_offset: HashMap<String, &DeadLetter> = letters
        .iter()
        .map(|letter| {
            let origin = format!(
                "{}@{}",
                letter.headers[dead_letter::HEADER_ORIGIN_PARTITION],
                letter.headers[dead_letter::HEADER_ORIGIN_OFFSET]
            );
            (origin, letter)
        })
        .collect();
    for ((partition, offset), key, payload, error) in [
        (
            not_json,
            "t-1",
            b"{not json".to_vec(),
            "not a Ticket envelope",
        ),
        (unknown_at, "t-1", unknown, "TicketTeleported"),
        (orphan_at, "t-ghost", orphan, "cannot apply to its view"),
        (gap_at, "t-gap", gap, "the event store lacks #1"),
    ] {
        let letter = by_offset
            .get(&format!("{partition}@{offset}"))
            .ok_or_else(|| anyhow::anyhow!("no dead letter for {partition}@{offset}"))?;
        assert_eq!(letter.key, key);
        assert_eq!(letter.payload, payload);
        assert_eq!(letter.headers[dead_letter::HEADER_ORIGIN_TOPIC], topic);
        assert_eq!(
            letter.headers[dead_letter::HEADER_ORIGIN_PARTITION],
            partition.to_string()
        );
        assert!(
            letter.headers[dead_letter::HEADER_ERROR].contains(error),
            "{:?}",
            letter.headers
        );
        assert_eq!(
            letter.headers["event-type"], "whatever",
            "original headers kept"
        );
    }
    db.drop().await
}

/// A batch whose middle message cannot apply (a second creation of a ticket
/// that exists, at the next sequence): only that message is dead-lettered,
/// and the events around it, of the same ticket and of another, before and
/// after it in the same batch, are applied in order.
#[tokio::test]
async fn only_the_failing_message_of_a_batch_is_dead_lettered() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let topic = config.topics.tickets.clone();
    let update = |id: &str, sequence, title: &str| {
        produce(
            id,
            sequence,
            sequence,
            TicketEventV1::TicketUpdated(TicketUpdatedV1 {
                title: title.to_owned(),
                price_cents: 900,
            }),
        )
    };
    producer
        .send_all(
            &topic,
            &[
                produce("t-a", 1, 1, ticket("Opera", 800, "seller")),
                update("t-a", 2, "Opera, evening"),
            ],
        )
        .await?;
    let recreated = serde_json::to_vec(&produce("t-a", 3, 3, ticket("Opera again", 1, "x")))?;
    let poison_at = producer.send_raw(&topic, "t-a", &recreated).await?;
    producer
        .send_all(
            &topic,
            &[
                update("t-a", 3, "Opera, late"),
                update("t-a", 4, "Opera, final"),
                produce("t-b", 1, 5, ticket("Ballet", 500, "seller")),
            ],
        )
        .await?;

    // Everything is on the topic before the worker starts: its first
    // fetches hold the whole batch.
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    let metrics = worker.metrics.clone();
    eventually(Duration::from_secs(30), || async {
        Ok(metrics.snapshot().dead_lettered == 1 && db.applied_events().await? == 5)
    })
    .await?;
    worker.stop().await?;

    let (title, last_sequence, version): (String, i64, i64) =
        sqlx::query_as("SELECT title, last_sequence, version FROM ticket_views WHERE id = 't-a'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(
        (title.as_str(), last_sequence, version),
        ("Opera, final", 4, 3)
    );
    let other: String = sqlx::query_scalar("SELECT title FROM ticket_views WHERE id = 't-b'")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(other, "Ballet");
    let letters = read_dead_letters(
        &config.brokers,
        &ProjectionConfig::dead_letter_topic(&topic),
        1,
    )
    .await?;
    let letter = &letters[0];
    assert_eq!(letter.payload, recreated);
    assert_eq!(
        (
            letter.headers[dead_letter::HEADER_ORIGIN_PARTITION].as_str(),
            letter.headers[dead_letter::HEADER_ORIGIN_OFFSET].as_str()
        ),
        (
            poison_at.0.to_string().as_str(),
            poison_at.1.to_string().as_str()
        )
    );
    assert!(
        letter.headers[dead_letter::HEADER_ERROR].contains("TicketCreated #3"),
        "{:?}",
        letter.headers
    );
    db.drop().await
}

/// An event stored before the gateway refused control characters, with a
/// NUL (which PostgreSQL's `text` cannot hold) in its title: it is applied,
/// the NUL replaced, and the ticket's later events apply after it.
#[tokio::test]
async fn a_stored_title_holding_nul_is_projected_not_dead_lettered() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let topic = config.topics.tickets.clone();
    producer
        .send_all(
            &topic,
            &[
                produce("t-nul", 1, 1, ticket("nul\u{0}title", 500, "seller")),
                produce(
                    "t-nul",
                    2,
                    2,
                    TicketEventV1::TicketUpdated(TicketUpdatedV1 {
                        title: "after\u{0}".to_owned(),
                        price_cents: 700,
                    }),
                ),
            ],
        )
        .await?;

    let worker = RunningProjector::spawn(&db.pool, &config)?;
    let metrics = worker.metrics.clone();
    eventually(Duration::from_secs(30), || async {
        Ok(db.applied_events().await? == 2)
    })
    .await?;
    worker.stop().await?;

    let title: String = sqlx::query_scalar("SELECT title FROM ticket_views WHERE id = 't-nul'")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(title, "after\u{fffd}");
    assert_eq!(metrics.snapshot().dead_lettered, 0);
    db.drop().await
}
