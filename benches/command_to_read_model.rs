//! Command-to-read-model latency: how long after a command is acknowledged
//! its effect is visible to a query, through the whole pipeline (event
//! store, relay, broker, projection worker, read model), under a steady load
//! of `BENCH_RATE` ticket creations per second (default 1,000) for
//! `BENCH_SECONDS` (default 20).
//!
//! Visibility time is the read-model row's `updated_at`, taken by the
//! projection's transaction (the row is visible when it commits, under a
//! millisecond later); acknowledgement time is taken by the client right
//! after the command's commit. Both clocks are this machine's.
//!
//! Run with `cargo bench -p ticketing-bench --bench command_to_read_model`
//! (the stack must be up: `make stack`). `DATABASE_URL` must allow CREATE
//! DATABASE.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use sqlx::PgPool;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata, ScratchDatabase};
use ticketing_projections::{ProjectionConfig, Projector};
use ticketing_relay::{provision_topics, Relay, RelayConfig, Topics};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Creates tickets at `rate` per second; returns each one's acknowledgement
/// time and the command latency histogram.
async fn load(
    pool: &PgPool,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<(HashMap<String, DateTime<Utc>>, Histogram<u64>)> {
    let executor = Arc::new(CommandExecutor::<Ticket>::new(pool.clone(), ()));
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let in_flight = Arc::new(Semaphore::new(128));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..u64::from(rate) * seconds {
        let _ = ticks.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (executor, acknowledged) = (executor.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let id = Uuid::now_v7().to_string();
            let command = TicketCommand::Create {
                title: Title::parse(&format!("Bench ticket {n}"))?,
                price: Money::from_cents(10_000)?,
                user_id: "bench".to_owned(),
            };
            let started = std::time::Instant::now();
            let _ = executor
                .execute(&id, command, &CommandMetadata::default())
                .await?;
            let elapsed = started.elapsed();
            let _ = acknowledged.lock().await.insert(id, Utc::now());
            anyhow::Ok(elapsed)
        }));
    }
    let mut commands = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        commands.saturating_record(u64::try_from(task.await??.as_micros())?.max(1));
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().await);
    Ok((acknowledged, commands))
}

async fn wait_for_views(pool: &PgPool, expected: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_views")
            .fetch_one(pool)
            .await?;
        if usize::try_from(visible)? >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {visible} of {expected} visible"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row(name: &str, h: &Histogram<u64>) {
    #[allow(clippy::cast_precision_loss)]
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "| {name:<28} | {:>8} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} |",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092".to_owned());
    let rate: u32 = env_or("BENCH_RATE", 1_000);
    let seconds: u64 = env_or("BENCH_SECONDS", 20);

    let database = ScratchDatabase::create("bench", 48).await?;
    let pool = database.pool().clone();
    let suffix = Uuid::new_v4().simple();
    let topics = Topics {
        tickets: format!("bench.c2r.tickets.{suffix}"),
        orders: format!("bench.c2r.orders.{suffix}"),
        payments: format!("bench.c2r.payments.{suffix}"),
    };
    let relay_config = RelayConfig {
        brokers: brokers.clone(),
        topics: topics.clone(),
        ..RelayConfig::default()
    };
    provision_topics(&relay_config).await?;
    let projector = Projector::new(
        pool.clone(),
        ProjectionConfig {
            brokers,
            topics,
            group_id: format!("bench-c2r-{suffix}"),
            ..ProjectionConfig::default()
        },
    )?;
    let ready = projector.readiness_check();
    let shutdown = CancellationToken::new();
    let relay_task =
        tokio::spawn(Relay::new(pool.clone(), relay_config).run_until_stopped(shutdown.clone()));
    let projector_task = tokio::spawn(projector.run_until_stopped(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ready().is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "projector never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (acknowledged, commands) = load(&pool, rate, seconds).await?;
    wait_for_views(&pool, acknowledged.len()).await?;
    let visible: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM ticket_views")
            .fetch_all(&pool)
            .await?;
    let mut to_view = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for (id, at) in visible {
        if let Some(acked) = acknowledged.get(&id) {
            let micros = (at - *acked).num_microseconds().unwrap_or(0);
            to_view.saturating_record(u64::try_from(micros).unwrap_or(0).max(1));
        }
    }
    shutdown.cancel();
    let _ = relay_task.await;
    let _ = projector_task.await;
    database.remove().await?;

    println!("Command to read model, {rate} ticket creations/s for {seconds} s:");
    println!("| measure                      |    count | p50 ms  | p95 ms  | p99 ms  | max ms  |");
    println!("|------------------------------|----------|---------|---------|---------|---------|");
    row("command (commit) latency", &commands);
    row("acknowledged -> in read model", &to_view);
    Ok(())
}
