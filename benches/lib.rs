//! Helpers of the relay benchmark (`cargo bench -p ticketing-bench`): a fresh
//! database, a pre-committed backlog, a steady command load and a consumer
//! timing every message from commit to receipt.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Commits `count` ticket events over 1,000 tickets, in transactions of
/// 1,000 events, straight into the store (the write path is not measured).
pub async fn insert_backlog(pool: &PgPool, count: i64) -> anyhow::Result<()> {
    let mut start = 0;
    while start < count {
        let end = (start + 1_000).min(count);
        let _ = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT 'Ticket', 'bench-' || (g % 1000), g / 1000 + 1, 'TicketUpdated', '1.0', \
                    json_build_object('TicketUpdated', json_build_object('title', 'Edition ' || g, 'price_cents', 100 + g)), \
                    json_build_object('correlation_id', 'bench', 'causation_id', 'bench-' || g) \
             FROM generate_series($1::bigint, $2::bigint - 1) AS g",
        )
        .bind(start)
        .bind(end)
        .execute(pool)
        .await?;
        start = end;
    }
    Ok(())
}

/// Issues `rate` commands per second for `duration` (each creating a
/// ticket) and returns the command latencies in microseconds.
pub async fn steady_load(
    pool: &PgPool,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let executor = std::sync::Arc::new(CommandExecutor::<Ticket>::new(pool.clone(), ()));
    let in_flight = std::sync::Arc::new(Semaphore::new(64));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = u64::from(rate) * duration.as_secs();
    let mut tasks = Vec::new();
    for n in 0..total {
        let _ = ticks.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let executor = executor.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let started = std::time::Instant::now();
            let id = Uuid::new_v4().to_string();
            let command = TicketCommand::Create {
                title: Title::parse(&format!("Bench ticket {n}"))?,
                price: Money::from_cents(2_500)?,
                user_id: "bench".to_owned(),
            };
            let metadata = CommandMetadata {
                correlation_id: id.clone(),
                causation_id: id.clone(),
                ..CommandMetadata::default()
            };
            let _ = executor.execute(&id, command, &metadata).await?;
            anyhow::Ok(started.elapsed())
        }));
    }
    let mut latencies = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        let elapsed = task.await??;
        latencies.saturating_record(u64::try_from(elapsed.as_micros())?.max(1));
    }
    Ok(latencies)
}

/// Reads `topic` from the beginning until `shutdown`, recording for every
/// message the time from its `timestamp` (commit) to its receipt, in µs.
pub async fn consume_latencies(
    brokers: String,
    topic: String,
    partitions: i32,
    shutdown: CancellationToken,
) -> anyhow::Result<Histogram<u64>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("bench-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut latencies = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    let mut stream = consumer.stream();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(latencies),
            next = stream.next() => next.context("consumer stream ended")??,
        };
        let received = chrono::Utc::now();
        let envelope: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        let committed: chrono::DateTime<chrono::Utc> = envelope["timestamp"]
            .as_str()
            .context("no timestamp")?
            .parse()?;
        let micros = (received - committed).num_microseconds().unwrap_or(0);
        latencies.saturating_record(u64::try_from(micros).unwrap_or(0).max(1));
    }
}
