//! Relay benchmark against the local PostgreSQL and broker:
//!
//! 1. throughput: events per second from a committed backlog
//!    (`BENCH_EVENTS`, default 50,000) to broker acknowledgement, for a
//!    few batch sizes;
//! 2. latency: commit-to-acknowledgement (measured by the relay) and
//!    commit-to-consumer-receipt (measured by a consumer), p50/p99/max,
//!    under a steady command load (`BENCH_RATE` commands/s, default 500, for
//!    `BENCH_SECONDS`, default 20).
//!
//! Run with `cargo bench -p ticketing-bench` (the stack must be up:
//! `make stack`). `DATABASE_URL` must allow CREATE DATABASE.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sqlx::PgPool;
use ticketing_bench::{consume_latencies, insert_backlog, steady_load};
use ticketing_eventstore::ScratchDatabase;
use ticketing_relay::{provision_topics, Relay, RelayConfig, RelayMetrics, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    brokers: String,
}

/// A relay running in the background on fresh topics.
struct Running {
    config: RelayConfig,
    metrics: std::sync::Arc<RelayMetrics>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Bench {
    async fn start_relay(&self, pool: &PgPool, batch_size: u32) -> anyhow::Result<Running> {
        let suffix = Uuid::new_v4().simple();
        let config = RelayConfig {
            brokers: self.brokers.clone(),
            topics: Topics {
                tickets: format!("bench.tickets.{suffix}"),
                orders: format!("bench.orders.{suffix}"),
                payments: format!("bench.payments.{suffix}"),
            },
            batch_size,
            ..RelayConfig::default()
        };
        // Provisioned up front so that topic creation is not timed.
        provision_topics(&config).await?;
        let relay = Relay::new(pool.clone(), config.clone());
        let metrics = relay.metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(relay.run_until_stopped(shutdown.clone()));
        Ok(Running {
            config,
            metrics,
            shutdown,
            task,
        })
    }

    async fn throughput(&self, events: u64, batch_size: u32) -> anyhow::Result<Duration> {
        let name = ScratchDatabase::create("bench", 48).await?;
        let pool = name.pool().clone();
        insert_backlog(&pool, i64::try_from(events)?).await?;
        let started = Instant::now();
        let relay = self.start_relay(&pool, batch_size).await?;
        wait_published(&relay.metrics, events, Duration::from_secs(600)).await?;
        let elapsed = started.elapsed();
        relay.shutdown.cancel();
        relay.task.await?;
        name.remove().await?;
        Ok(elapsed)
    }

    async fn latency(&self, rate: u32, seconds: u64) -> anyhow::Result<()> {
        let name = ScratchDatabase::create("bench", 48).await?;
        let pool = name.pool().clone();
        let relay = self.start_relay(&pool, 500).await?;
        let consumer_stop = CancellationToken::new();
        let consumer = tokio::spawn(consume_latencies(
            relay.config.brokers.clone(),
            relay.config.topics.tickets.clone(),
            relay.config.partitions,
            consumer_stop.clone(),
        ));
        // Start-up (lock, topic metadata, consumer fetch sessions) is not
        // what this measures: let both sides settle first.
        while !relay.metrics.snapshot().leader {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let commands = steady_load(&pool, rate, Duration::from_secs(seconds)).await?;
        wait_published(&relay.metrics, commands.len(), Duration::from_secs(60)).await?;
        // Let the consumer catch up with the last acknowledgements.
        tokio::time::sleep(Duration::from_secs(1)).await;
        consumer_stop.cancel();
        let received = consumer.await??;
        let relay_metrics = relay.metrics.snapshot();
        relay.shutdown.cancel();
        relay.task.await?;
        name.remove().await?;

        println!(
            "\nLatency under {rate} commands/s for {seconds} s ({} commands):",
            commands.len()
        );
        println!("| measure                         | samples |   p50 ms |   p99 ms |   max ms |");
        println!("|---------------------------------|---------|----------|----------|----------|");
        row("command (client round trip)", &commands);
        println!(
            "| {:<31} | {:>7} | {:>8.2} | {:>8.2} | {:>8.2} |",
            "commit -> broker ack (relay)",
            relay_metrics.latency_samples,
            millis(relay_metrics.latency_p50),
            millis(relay_metrics.latency_p99),
            millis(relay_metrics.latency_max),
        );
        row("commit -> consumer receipt", &received);
        Ok(())
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

#[allow(clippy::cast_precision_loss)]
fn row(name: &str, micros: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1_000.0;
    println!(
        "| {name:<31} | {:>7} | {:>8.2} | {:>8.2} | {:>8.2} |",
        micros.len(),
        ms(micros.value_at_quantile(0.5)),
        ms(micros.value_at_quantile(0.99)),
        ms(micros.max()),
    );
}

async fn wait_published(metrics: &RelayMetrics, count: u64, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while metrics.snapshot().events_published < count {
        anyhow::ensure!(started.elapsed() < limit, "relay stalled below {count}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench {
        brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092".to_owned()),
    };
    let events: u64 = env_or("BENCH_EVENTS", 50_000);
    let rate: u32 = env_or("BENCH_RATE", 500);
    let seconds: u64 = env_or("BENCH_SECONDS", 20);

    println!("Relay throughput, {events} committed events to broker acknowledgement:");
    println!("| batch size |  seconds |   events/s |");
    println!("|------------|----------|------------|");
    for batch_size in [100, 500, 2_000] {
        let elapsed = bench.throughput(events, batch_size).await?;
        #[allow(clippy::cast_precision_loss)]
        let per_second = events as f64 / elapsed.as_secs_f64();
        println!(
            "| {batch_size:>10} | {:>8.2} | {per_second:>10.0} |",
            elapsed.as_secs_f64()
        );
    }
    bench.latency(rate, seconds).await
}
