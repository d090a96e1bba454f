//! Rebuild benchmark against the local PostgreSQL: events per second of
//! `replay rebuild` (read in the relay's order, upcast, folded, written to
//! shadow tables, swapped in) over `BENCH_EVENTS` stored events (default
//! 1,000,000: tickets of five events each, created, reserved, released,
//! updated twice; half of the creations stored at the old version 1.0 so
//! the upcaster runs), with `BENCH_REPLAY_BATCH` events per read batch
//! (default 20,000; the rebuild holds its rows in memory and commits them
//! once at the end).
//!
//! Run with `cargo bench -p ticketing-bench --bench replay_rebuild`.
//! `DATABASE_URL` must allow CREATE DATABASE. No broker is needed.

use std::time::Instant;

use ticketing_eventstore::ScratchDatabase;
use ticketing_projections::rebuild::{RebuildOutcome, RebuildPlan, Rebuilder};
use ticketing_projections::AggregateKind;
use tokio_util::sync::CancellationToken;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Stores event `sequence` of tickets `from..to` in one statement (one
/// transaction), as postgres-es would have written them.
async fn insert(pool: &sqlx::PgPool, sequence: i64, from: i64, to: i64) -> anyhow::Result<()> {
    let _ = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'Ticket', 'bench-' || g, $1, \
                CASE $1 WHEN 1 THEN 'TicketCreated' WHEN 2 THEN 'TicketReserved' \
                        WHEN 3 THEN 'TicketReleased' ELSE 'TicketUpdated' END, \
                CASE WHEN $1 = 1 AND g % 2 = 0 THEN '1.0' WHEN $1 = 1 THEN '1.1' ELSE '1.0' END, \
                CASE $1 \
                  WHEN 1 THEN CASE WHEN g % 2 = 0 \
                    THEN json_build_object('TicketCreated', json_build_object('title', 'Bench ticket ' || g, 'price_cents', 2500, 'user_id', 'seller-' || (g % 100))) \
                    ELSE json_build_object('TicketCreated', json_build_object('title', 'Bench ticket ' || g, 'price_cents', 2500, 'user_id', 'seller-' || (g % 100), 'currency', 'eur')) END \
                  WHEN 2 THEN json_build_object('TicketReserved', json_build_object('order_id', 'order-' || g, 'expires_at', '2030-01-01T00:00:00Z')) \
                  WHEN 3 THEN json_build_object('TicketReleased', json_build_object('order_id', 'order-' || g)) \
                  ELSE json_build_object('TicketUpdated', json_build_object('title', 'Bench ticket ' || g || ', edition ' || $1, 'price_cents', 2500 + $1)) END, \
                json_build_object('correlation_id', 'bench', 'causation_id', 'bench-' || g) \
         FROM generate_series($2::bigint, $3::bigint - 1) AS g",
    )
    .bind(sequence)
    .bind(from)
    .bind(to)
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: i64 = env_or("BENCH_EVENTS", 1_000_000);
    let batch: u32 = env_or("BENCH_REPLAY_BATCH", 20_000);
    let tickets = (events / 5).max(1);
    let database = ScratchDatabase::create("bench_replay", 4).await?;
    let pool = database.pool().clone();
    let loading = Instant::now();
    // Event 1 of every ticket, then event 2 of every ticket, …: each
    // aggregate's events spread over the whole store, as in real life.
    for sequence in 1..=5 {
        let mut from = 0;
        while from < tickets {
            let to = (from + 50_000).min(tickets);
            insert(&pool, sequence, from, to).await?;
            from = to;
        }
    }
    let _ = sqlx::query("ANALYZE events").execute(&pool).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    println!(
        "replay rebuild: {stored} events stored over {tickets} tickets in {:.1}s",
        loading.elapsed().as_secs_f64()
    );

    let rebuilder = Rebuilder::new(
        pool.clone(),
        RebuildPlan::new(&[AggregateKind::Ticket], batch),
    );
    let start = rebuilder.start().await?;
    let started = Instant::now();
    let outcome = rebuilder
        .run(&start, &CancellationToken::new(), |_| {})
        .await?;
    let elapsed = started.elapsed();
    let RebuildOutcome::Finished { events, .. } = outcome else {
        anyhow::bail!("the rebuild did not finish: {outcome:?}");
    };
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_views")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(rows == tickets, "{rows} ticket views for {tickets} tickets");
    #[allow(clippy::cast_precision_loss)] // a rate to print
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "replay rebuild: {events} events in {:.2}s = {rate:.0} events/s (batch {batch}, {rows} views)",
        elapsed.as_secs_f64()
    );
    database.remove().await?;
    Ok(())
}
