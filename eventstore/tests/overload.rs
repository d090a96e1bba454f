#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Overload: when no connection can be had, every caller of a group commit
//! fails within a bound, and the writers do not re-commit a batch command
//! by command (each waiting the pool's whole acquire timeout). A batch the
//! database refused for its data is still split, so that only the command
//! at fault fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::EventEnvelope;
use sqlx::PgConnection;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{
    connect, CommandError, CommandExecutor, CommandMetadata, CommitEffect, GroupCommit,
    ScratchDatabase,
};
use ticketing_testkit::PgProxy;

mod common;
use common::Gate;

/// How long a caller may wait, as configured below.
const WAIT: Duration = Duration::from_secs(1);
/// What the test allows on top of it (scheduling on a busy machine).
const SLACK: Duration = Duration::from_secs(2);

fn create(n: usize) -> TicketCommand {
    TicketCommand::Create {
        title: Title::parse(&format!("Ticket {n}")).unwrap(),
        price: Money::from_cents(100).unwrap(),
        user_id: "seller".into(),
    }
}

fn executor(pool: sqlx::PgPool) -> Arc<CommandExecutor<Ticket>> {
    Arc::new(
        CommandExecutor::<Ticket>::new(pool, ()).with_group_commit(Some(GroupCommit {
            writers: 1,
            wait: WAIT,
            ..GroupCommit::default()
        })),
    )
}

/// Twenty new tickets at once: every one must fail, each within the bound,
/// with the store reported unavailable.
async fn twenty_creations_fail_fast(tickets: &Arc<CommandExecutor<Ticket>>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let tickets = Arc::clone(tickets);
            tokio::spawn(async move {
                let outcome = tickets
                    .execute_new(&format!("t{n}"), create(n), &CommandMetadata::default())
                    .await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    for task in tasks {
        let (outcome, elapsed) = tokio::time::timeout(WAIT + SLACK, task)
            .await
            .expect("a caller waited past the bound")
            .unwrap();
        assert!(
            matches!(outcome, Err(CommandError::Unavailable { .. })),
            "{outcome:?}"
        );
        assert!(elapsed < WAIT + SLACK, "a caller waited {elapsed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_fail_within_the_bound_when_the_pool_is_exhausted() {
    let db = ScratchDatabase::create("overload_pool", 1).await.unwrap();
    let tickets = executor(db.pool().clone());
    // Someone else holds the pool's only connection.
    let held = db.pool().acquire().await.unwrap();

    twenty_creations_fail_fast(&tickets).await;

    // Once a connection is free, the writer commits at once: it is not busy
    // re-committing the failed batch one by one.
    drop(held);
    let started = Instant::now();
    let _ = tickets
        .execute_new("after", create(99), &CommandMetadata::default())
        .await
        .unwrap();
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, 1, "a command reported failed was committed");
    db.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_fail_within_the_bound_when_the_database_is_unreachable() {
    let db = ScratchDatabase::create("overload_unreachable", 2)
        .await
        .unwrap();
    let proxy = PgProxy::start(db.url()).await.unwrap();
    let tickets = executor(connect(&proxy.url(db.url()), 4).await.unwrap());
    proxy.refuse(true);

    twenty_creations_fail_fast(&tickets).await;

    proxy.refuse(false);
    let _ = tickets
        .execute_new("after", create(99), &CommandMetadata::default())
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, 1, "a command reported failed was committed");
    db.remove().await.unwrap();
}

/// Makes the database refuse, with a data error (division by zero), any
/// transaction that writes an event of the ticket `poison`.
struct Poison;

#[async_trait::async_trait]
impl CommitEffect<Ticket> for Poison {
    async fn write(
        &self,
        tx: &mut PgConnection,
        events: &[EventEnvelope<Ticket>],
    ) -> Result<(), sqlx::Error> {
        if events.iter().any(|event| event.aggregate_id == "poison") {
            let _ = sqlx::query("SELECT 1 / 0").execute(&mut *tx).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_error_fails_only_the_command_that_caused_it() {
    let db = ScratchDatabase::create("overload_data_error", 4)
        .await
        .unwrap();
    let gate = Arc::new(Gate::default());
    let tickets = Arc::new(
        CommandExecutor::<Ticket>::new(db.pool().clone(), ())
            .with_effect(Arc::clone(&gate) as Arc<dyn CommitEffect<Ticket>>)
            .with_effect(Arc::new(Poison))
            .with_group_commit(Some(GroupCommit {
                writers: 1,
                ..GroupCommit::default()
            })),
    );
    let spawn = |id: &'static str, n: usize| {
        let tickets = Arc::clone(&tickets);
        tokio::spawn(async move {
            let outcome = tickets
                .execute_new(id, create(n), &CommandMetadata::default())
                .await;
            (id, outcome)
        })
    };

    // The one writer holds a first batch open while the others queue: they
    // form one batch, which the poisoned command makes the database refuse.
    gate.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tasks = vec![spawn("first", 0)];
    gate.entered.notified().await;
    tasks.extend(
        ["a", "b", "poison", "c", "d"]
            .into_iter()
            .zip(1..)
            .map(|(id, n)| spawn(id, n)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.release.notify_one();

    for task in tasks {
        let (id, outcome) = task.await.unwrap();
        if id == "poison" {
            assert!(
                matches!(outcome, Err(CommandError::Store { .. })),
                "{outcome:?}"
            );
        } else {
            assert!(outcome.is_ok(), "{id}: {outcome:?}");
        }
    }
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM events ORDER BY aggregate_id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(stored, ["a", "b", "c", "d", "first"]);
    db.remove().await.unwrap();
}
