//! Projection benchmark against the local PostgreSQL and broker: events per
//! second from a pre-produced backlog (`BENCH_EVENTS`, default 50,000, over
//! `BENCH_EVENTS / 5` tickets of five events each) consumed from offset 0
//! and applied to the read models, for a few batch sizes (`BENCH_BATCHES`,
//! default `500,50,1`); plus the per-event processing time (taken from the
//! consumer to committed in PostgreSQL), p50/p99/max.
//!
//! Run with `cargo bench -p ticketing-bench --bench projection_throughput`
//! (the stack must be up: `make stack`). `DATABASE_URL` must allow CREATE
//! DATABASE.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use ticketing_eventstore::ScratchDatabase;
use ticketing_projections::{ProjectionConfig, Projector};
use ticketing_relay::{provision_topics, RelayConfig, Topics};
use ticketing_schemas::{
    Envelope, TicketCreatedV1, TicketEventV1, TicketReleasedV1, TicketReservedV1, TicketUpdatedV1,
    WireEvent,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The `sequence`-th event (1-based) of ticket `n`.
fn event(n: usize, sequence: usize) -> TicketEventV1 {
    match sequence {
        1 => TicketEventV1::TicketCreated(TicketCreatedV1 {
            title: format!("Bench ticket {n}"),
            price_cents: 2_500,
            user_id: "bench".to_owned(),
            currency: "usd".to_owned(),
        }),
        2 => TicketEventV1::TicketReserved(TicketReservedV1 {
            order_id: format!("order-{n}"),
            expires_at: Utc::now(),
        }),
        3 => TicketEventV1::TicketReleased(TicketReleasedV1 {
            order_id: format!("order-{n}"),
        }),
        _ => TicketEventV1::TicketUpdated(TicketUpdatedV1 {
            title: format!("Bench ticket {n}, edition {sequence}"),
            price_cents: 2_500 + i64::try_from(sequence).unwrap_or(0),
        }),
    }
}

/// Produces `tickets` × 5 envelopes, in per-ticket order, and waits for
/// every acknowledgement.
async fn produce(brokers: &str, topic: &str, tickets: usize) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut deliveries = Vec::new();
    let mut position = 0u64;
    for sequence in 1..=5 {
        for n in 0..tickets {
            position += 1;
            let event = event(n, sequence);
            let envelope = Envelope {
                event_id: Uuid::new_v4(),
                schema_version: event.schema_version().to_owned(),
                aggregate_type: "Ticket".to_owned(),
                aggregate_id: format!("bench-{n}"),
                sequence: u64::try_from(sequence)?,
                global_position: position,
                timestamp: Utc::now(),
                correlation_id: None,
                causation_id: None,
                event,
            };
            let payload = serde_json::to_vec(&envelope)?;
            let record = FutureRecord::to(topic)
                .key(&envelope.aggregate_id)
                .payload(&payload);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
    }
    let count = deliveries.len();
    for delivery in join_all(deliveries).await {
        let _ = delivery?.map_err(|(e, _)| e)?;
    }
    Ok(count)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let events: usize = env_or("BENCH_EVENTS", 50_000);
    let batches: Vec<usize> = std::env::var("BENCH_BATCHES")
        .unwrap_or_else(|_| "500,50,1".to_owned())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let suffix = Uuid::new_v4().simple();
    let topics = Topics {
        tickets: format!("bench.proj.tickets.{suffix}"),
        orders: format!("bench.proj.orders.{suffix}"),
        payments: format!("bench.proj.payments.{suffix}"),
    };
    let partitions = env_or("BENCH_PARTITIONS", 6);
    provision_topics(&RelayConfig {
        brokers: brokers.clone(),
        topics: topics.clone(),
        partitions,
        ..RelayConfig::default()
    })
    .await?;
    let produced = produce(&brokers, &topics.tickets, events / 5).await?;
    println!("projection throughput: {produced} events pre-produced on {partitions} partitions");

    for max_batch in batches {
        let database = ScratchDatabase::create("bench", 48).await?;
        let pool = database.pool().clone();
        let config = ProjectionConfig {
            brokers: brokers.clone(),
            topics: topics.clone(),
            group_id: format!("bench-projections-{}", Uuid::new_v4()),
            partitions,
            max_batch,
            ..ProjectionConfig::default()
        };
        let projector = Projector::new(pool.clone(), config)?;
        let metrics = projector.metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(projector.run_until_stopped(shutdown.clone()));
        // Timed from the first applied event, so that the group join (a few
        // seconds on the local broker) is not counted.
        let target = u64::try_from(produced)?;
        let mut started = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while metrics.snapshot().events_applied < target {
            anyhow::ensure!(Instant::now() < deadline, "projection did not finish");
            if started.is_none() && metrics.snapshot().events_applied > 0 {
                started = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
        shutdown.cancel();
        task.await??;
        let m = metrics.snapshot();
        println!(
            "  batch ≤{max_batch:>4}: {:>8.0} events/s ({} events in {:.2} s); per event receive→commit p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            produced as f64 / elapsed.as_secs_f64().max(1e-9),
            m.events_applied,
            elapsed.as_secs_f64(),
            m.processing_p50.as_secs_f64() * 1e3,
            m.processing_p99.as_secs_f64() * 1e3,
            m.processing_max.as_secs_f64() * 1e3,
        );
        database.remove().await?;
    }
    Ok(())
}
