//! Rebuilds against a scratch database (no broker): the live projector's
//! statements applied to the same history are the reference.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use chrono::{TimeZone, Utc};
use serde::Serialize;
use sqlx::PgPool;
use ticketing_aggregates::{OrderEvent, OrderTicket, PaymentEvent, TicketEvent};
use ticketing_eventstore::ScratchDatabase;
use ticketing_relay::{
    read_fold_events, read_history, Cursor, HistoryFilter, WireEnvelope, WirePayload,
};
use tokio_util::sync::CancellationToken;

use super::{RebuildOutcome, RebuildPlan, Rebuilder};
use crate::{apply_event, AggregateKind, ProjectedEvent};

const ALL: [AggregateKind; 3] = [
    AggregateKind::Ticket,
    AggregateKind::Order,
    AggregateKind::Payment,
];

type TestResult = anyhow::Result<()>;

/// One event to store: aggregate type and id, sequence, and the event.
struct Stored {
    aggregate_type: &'static str,
    id: String,
    sequence: i64,
    event_type: String,
    version: String,
    payload: serde_json::Value,
}

/// `event` as postgres-es stores it: `{"Type": {...}}`, at the current
/// version (1.1 for `TicketCreated`, 1.0 for the others).
fn stored<E: Serialize>(
    aggregate_type: &'static str,
    id: &str,
    sequence: i64,
    event: &E,
) -> Stored {
    let payload = serde_json::to_value(event).unwrap();
    let event_type = payload.as_object().unwrap().keys().next().unwrap().clone();
    let version = if event_type == "TicketCreated" {
        "1.1"
    } else {
        "1.0"
    };
    Stored {
        aggregate_type,
        id: id.to_owned(),
        sequence,
        event_type,
        version: version.to_owned(),
        payload,
    }
}

/// `n` tickets, each bought or abandoned in its own way, written a few
/// events per transaction in an interleaved order; every third ticket
/// created at the old version 1.0 (no currency), so the upcaster runs.
async fn store_history(pool: &PgPool, n: usize) -> anyhow::Result<u64> {
    let expires = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let mut rounds: Vec<Vec<Stored>> = (0..6).map(|_| Vec::new()).collect();
    for i in 0..n {
        let (ticket, order, payment) = (format!("t-{i}"), format!("o-{i}"), format!("p-{i}"));
        let price = 1_000 + i64::try_from(i)?;
        let created = if i % 3 == 0 {
            let mut old = stored(
                "Ticket",
                &ticket,
                1,
                &TicketEvent::TicketCreated {
                    title: format!("Ticket {i}"),
                    price_cents: price,
                    user_id: format!("seller-{}", i % 4),
                    currency: String::new(),
                },
            );
            let _ = old.payload["TicketCreated"]
                .as_object_mut()
                .unwrap()
                .remove("currency");
            old.version = "1.0".to_owned();
            old
        } else {
            stored(
                "Ticket",
                &ticket,
                1,
                &TicketEvent::TicketCreated {
                    title: format!("Ticket \"{i}\"\n\t\\ é"),
                    price_cents: price,
                    user_id: format!("seller-{}", i % 4),
                    currency: "eur".to_owned(),
                },
            )
        };
        rounds[0].push(created);
        rounds[1].push(stored(
            "Ticket",
            &ticket,
            2,
            &TicketEvent::TicketUpdated {
                title: format!("Ticket {i}, second edition"),
                price_cents: price + 1,
            },
        ));
        if i % 5 == 4 {
            continue; // never ordered
        }
        rounds[1].push(stored(
            "Order",
            &order,
            1,
            &OrderEvent::OrderPlaced {
                user_id: format!("buyer-{}", i % 7),
                ticket: OrderTicket {
                    id: ticket.clone(),
                    title: format!("Ticket {i}, second edition"),
                    price_cents: price + 1,
                    version: 1,
                },
                expires_at: expires,
            },
        ));
        rounds[2].push(stored(
            "Ticket",
            &ticket,
            3,
            &TicketEvent::TicketReserved {
                order_id: order.clone(),
                expires_at: expires,
            },
        ));
        if i % 5 == 3 {
            rounds[3].push(stored(
                "Order",
                &order,
                2,
                &OrderEvent::OrderExpired {
                    ticket_id: ticket.clone(),
                },
            ));
            rounds[4].push(stored(
                "Ticket",
                &ticket,
                4,
                &TicketEvent::TicketReleased { order_id: order },
            ));
            continue;
        }
        rounds[2].push(stored(
            "Order",
            &order,
            2,
            &OrderEvent::OrderPaymentStarted {
                payment_id: payment.clone(),
                attempt: 1,
            },
        ));
        rounds[3].push(stored(
            "Payment",
            &payment,
            1,
            &PaymentEvent::PaymentRequested {
                order_id: order.clone(),
                user_id: format!("buyer-{}", i % 7),
                amount_cents: price + 1,
                currency: "usd".to_owned(),
            },
        ));
        if i % 5 == 2 {
            rounds[4].push(stored(
                "Payment",
                &payment,
                2,
                &PaymentEvent::PaymentFailed {
                    reason: "card declined".to_owned(),
                },
            ));
            rounds[5].push(stored(
                "Order",
                &order,
                3,
                &OrderEvent::OrderPaymentFailed {
                    payment_id: payment,
                },
            ));
        } else {
            rounds[4].push(stored(
                "Payment",
                &payment,
                2,
                &PaymentEvent::PaymentSucceeded {
                    stripe_id: format!("ch_{i}"),
                },
            ));
            rounds[5].push(stored(
                "Order",
                &order,
                3,
                &OrderEvent::OrderCompleted {
                    payment_id: payment,
                },
            ));
        }
    }
    let mut total = 0;
    for round in rounds {
        for chunk in round.chunks(7) {
            let mut tx = pool.begin().await?;
            for event in chunk {
                let _ = sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                     event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, '{}')",
                )
                .bind(event.aggregate_type)
                .bind(&event.id)
                .bind(event.sequence)
                .bind(&event.event_type)
                .bind(&event.version)
                .bind(&event.payload)
                .execute(&mut *tx)
                .await?;
                total += 1;
            }
            tx.commit().await?;
        }
    }
    Ok(total)
}

/// The read models as the live projector leaves them after every stored
/// event, converted as the relay publishes it.
async fn project_live(pool: &PgPool) -> TestResult {
    let mut conn = pool.acquire().await?;
    let filter = HistoryFilter::default();
    let mut after = Cursor::default();
    loop {
        let events = read_history(&mut conn, after, &filter, 100).await?;
        let Some(last) = events.last() else {
            return Ok(());
        };
        after = last.cursor;
        for event in events {
            let event = match event.envelope {
                WireEnvelope::Ticket(e) => ProjectedEvent::Ticket(e),
                WireEnvelope::Order(e) => ProjectedEvent::Order(e),
                WireEnvelope::Payment(e) => ProjectedEvent::Payment(e),
            };
            let _ = apply_event(&mut conn, &event).await?;
        }
    }
}

/// Every row of every read model, but for `updated_at`, which the live
/// projector sets to when it applied the event (a rebuild: to when the
/// event was recorded).
async fn read_models(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    rows_of(pool, "(to_jsonb(t) - 'updated_at')").await
}

/// Every row of every read model, in full.
async fn full_rows(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    rows_of(pool, "to_jsonb(t)").await
}

async fn rows_of(pool: &PgPool, row: &str) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::new();
    for table in ["ticket_views", "order_views", "payment_views"] {
        rows.extend(
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT '{table} ' || {row}::text FROM {table} t ORDER BY id"
            ))
            .fetch_all(pool)
            .await?,
        );
    }
    Ok(rows)
}

/// Asserts `rebuilt == live`, showing the rows that differ.
fn assert_same(rebuilt: &[String], live: &[String], context: &str) {
    let differ: Vec<_> = rebuilt
        .iter()
        .zip(live)
        .filter(|(rebuilt, live)| rebuilt != live)
        .take(3)
        .collect();
    assert!(
        differ.is_empty() && rebuilt.len() == live.len(),
        "{context}: {} rows rebuilt, {} live; first differences (rebuilt, live): {differ:#?}",
        rebuilt.len(),
        live.len()
    );
}

async fn rebuild(pool: &PgPool, plan: RebuildPlan) -> anyhow::Result<RebuildOutcome> {
    let rebuilder = Rebuilder::new(pool.clone(), plan);
    let start = rebuilder.start().await?;
    Ok(rebuilder
        .run(&start, &CancellationToken::new(), |_| {})
        .await?)
}

fn plan(batch_size: u32, max_held_rows: usize) -> RebuildPlan {
    RebuildPlan {
        max_held_rows,
        ..RebuildPlan::new(&ALL, batch_size)
    }
}

async fn live_history(tickets: usize) -> anyhow::Result<(ScratchDatabase, u64, Vec<String>)> {
    let db = ScratchDatabase::create("rebuild_test", 4).await?;
    let events = store_history(db.pool(), tickets).await?;
    project_live(db.pool()).await?;
    let live = read_models(db.pool()).await?;
    assert!(
        live.len() > 2 * tickets,
        "a real workload: {} rows",
        live.len()
    );
    Ok((db, events, live))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_history_is_the_published_one_without_ids_and_metadata() -> TestResult {
    let db = ScratchDatabase::create("rebuild_test", 2).await?;
    let _ = store_history(db.pool(), 30).await?;
    let mut conn = db.pool().acquire().await?;
    let filter = HistoryFilter::default();
    let full = read_history(&mut conn, Cursor::default(), &filter, 10_000).await?;
    let lean = read_fold_events(&mut conn, Cursor::default(), &filter, 10_000).await?;
    assert_eq!(full.len(), lean.len());
    for (full, lean) in full.into_iter().zip(lean) {
        assert_eq!(full.cursor, lean.cursor);
        let (id, sequence, position, timestamp, event) = match full.envelope {
            WireEnvelope::Ticket(e) => (
                e.aggregate_id,
                e.sequence,
                e.global_position,
                e.timestamp,
                WirePayload::Ticket(e.event),
            ),
            WireEnvelope::Order(e) => (
                e.aggregate_id,
                e.sequence,
                e.global_position,
                e.timestamp,
                WirePayload::Order(e.event),
            ),
            WireEnvelope::Payment(e) => (
                e.aggregate_id,
                e.sequence,
                e.global_position,
                e.timestamp,
                WirePayload::Payment(e.event),
            ),
        };
        assert_eq!(
            (id, sequence, position, timestamp, event),
            (
                lean.aggregate_id,
                lean.sequence,
                lean.global_position,
                lean.timestamp,
                lean.event
            )
        );
    }
    drop(conn);
    db.remove().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_writes_what_the_live_projector_wrote_held_in_memory_or_not() -> TestResult {
    let (db, events, live) = live_history(60).await?;
    // Everything held until the end; then rows dropped from memory every
    // few batches, so later events load them back and update them: the
    // same rows, timestamps included.
    let mut reference = None;
    for plan in [plan(50, usize::MAX), plan(7, 12), plan(1, 1)] {
        let outcome = rebuild(db.pool(), plan.clone()).await?;
        assert_eq!(
            outcome,
            RebuildOutcome::Finished {
                events,
                caught_up: 0
            },
            "{plan:?}"
        );
        assert_same(&read_models(db.pool()).await?, &live, &format!("{plan:?}"));
        let full = full_rows(db.pool()).await?;
        assert_same(
            &full,
            reference.get_or_insert_with(|| full.clone()),
            "again",
        );
    }
    db.remove().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_rebuild_commits_what_it_folded_and_resumes_after_it() -> TestResult {
    let (db, events, live) = live_history(40).await?;
    let _ = rebuild(db.pool(), plan(100, usize::MAX)).await?;
    let reference = full_rows(db.pool()).await?;
    for (stop_after, max_held_rows) in [(1_u64, usize::MAX), (3, usize::MAX), (4, 10)] {
        let rebuilder = Rebuilder::new(db.pool().clone(), plan(9, max_held_rows));
        let start = rebuilder.start().await?;
        assert_eq!((start.resumed.clone(), start.remaining), (None, events));
        let stop = CancellationToken::new();
        let mut batches = 0;
        let outcome = rebuilder
            .run(&start, &stop, |_| {
                batches += 1;
                if batches == stop_after {
                    stop.cancel();
                }
            })
            .await?;
        let done = 9 * stop_after;
        assert_eq!(outcome, RebuildOutcome::Interrupted { events: done });
        assert_same(
            &read_models(db.pool()).await?,
            &live,
            "live tables untouched",
        );
        let shadow_rows: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM replay_shadow.ticket_views) \
                  + (SELECT count(*) FROM replay_shadow.order_views) \
                  + (SELECT count(*) FROM replay_shadow.payment_views)",
        )
        .fetch_one(db.pool())
        .await?;
        assert!(shadow_rows > 0, "the folded rows were committed");

        // Resumed twice: once stopped again at once, then to the end.
        let start = rebuilder.start().await?;
        assert_eq!(start.resumed.as_ref().map(|c| c.done), Some(done));
        assert_eq!(start.remaining, events - done);
        let stopped = CancellationToken::new();
        stopped.cancel();
        let outcome = rebuilder.run(&start, &stopped, |_| {}).await?;
        assert_eq!(outcome, RebuildOutcome::Interrupted { events: done });
        let start = rebuilder.start().await?;
        assert_eq!(start.resumed.as_ref().map(|c| c.done), Some(done));
        let outcome = rebuilder
            .run(&start, &CancellationToken::new(), |_| {})
            .await?;
        assert_eq!(
            outcome,
            RebuildOutcome::Finished {
                events,
                caught_up: 0
            }
        );
        assert_same(&read_models(db.pool()).await?, &live, "rebuilt");
        assert_same(&full_rows(db.pool()).await?, &reference, "resumed");
        let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM replay_checkpoints")
            .fetch_one(db.pool())
            .await?;
        assert_eq!(checkpoints, 0);
    }
    db.remove().await?;
    Ok(())
}
