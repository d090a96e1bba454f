#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Group commit against the real PostgreSQL: concurrent commands share
//! transactions, yet each stays all-or-nothing under its optimistic lock,
//! and commit effects are written exactly for the commands that won.

use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use ticketing_aggregates::{Money, Ticket, TicketCommand, TicketError, Title};
use ticketing_eventstore::{
    CommandError, CommandExecutor, CommandMetadata, CommitEffect, GroupCommit, ScratchDatabase,
};

fn create(n: usize) -> TicketCommand {
    TicketCommand::Create {
        title: Title::parse(&format!("Ticket {n}")).unwrap(),
        price: Money::from_cents(100).unwrap(),
        user_id: "seller".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_share_transactions_and_each_id_is_created_once() {
    let db = ScratchDatabase::create("group_commit_create", 8)
        .await
        .unwrap();
    let tickets = Arc::new(CommandExecutor::<Ticket>::new(db.pool().clone(), ()));
    let metadata = CommandMetadata::default();

    // 300 distinct tickets, plus 20 more attempts at the first ten ids (as a
    // retried request under an Idempotency-Key would make).
    let mut tasks = Vec::new();
    for n in 0..320 {
        let tickets = Arc::clone(&tickets);
        let metadata = metadata.clone();
        let id = format!("ticket-{}", if n < 300 { n } else { n % 10 });
        tasks.push(tokio::spawn(async move {
            tickets.execute_new(&id, create(n), &metadata).await
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(executed) => {
                assert_eq!(executed.aggregate.version(), 0);
                assert_eq!(executed.events.len(), 1);
                created += 1;
            }
            Err(CommandError::Rejected(TicketError::AlreadyExists)) => refused += 1,
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!((created, refused), (300, 20));

    let (events, ids): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'Ticket'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((events, ids), (300, 300));
    // Some transaction carried more than one command's event.
    let (largest,): (i64,) = sqlx::query_as(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM events GROUP BY transaction_id) AS t",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(largest > 1, "no two commands shared a transaction");
    db.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_to_one_ticket_all_land_in_sequence() {
    let db = ScratchDatabase::create("group_commit_race", 8)
        .await
        .unwrap();
    let tickets = Arc::new(CommandExecutor::<Ticket>::new(db.pool().clone(), ()));
    let metadata = CommandMetadata::default();
    let _ = tickets
        .execute("raced", create(0), &metadata)
        .await
        .unwrap();

    // Fewer racers than the executor's attempts: a command only loses a
    // sequence number another one won, so every racer lands.
    let mut tasks = Vec::new();
    for n in 1..=15 {
        let tickets = Arc::clone(&tickets);
        let metadata = metadata.clone();
        tasks.push(tokio::spawn(async move {
            let update = TicketCommand::Update {
                title: Title::parse(&format!("Edition {n}")).unwrap(),
                price: Money::from_cents(100 + n).unwrap(),
                user_id: "seller".into(),
            };
            tickets.execute("raced", update, &metadata).await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().aggregate.version());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=15).collect::<Vec<u64>>());

    let sequences: Vec<(i64,)> = sqlx::query_as(
        "SELECT sequence FROM events WHERE aggregate_id = 'raced' ORDER BY sequence",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let sequences: Vec<i64> = sequences.into_iter().map(|(s,)| s).collect();
    assert_eq!(sequences, (1..=16).collect::<Vec<i64>>());
    db.remove().await.unwrap();
}

/// A minimal aggregate whose one command records two events, to see a
/// command lose only some of its rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pair {
    events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PairEvent {
    First,
    Second,
}

impl DomainEvent for PairEvent {
    fn event_type(&self) -> String {
        format!("{self:?}")
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Pair {
    const TYPE: &'static str = "Pair";
    type Command = ();
    type Event = PairEvent;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        (): (),
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        sink.write(PairEvent::First, self).await;
        sink.write(PairEvent::Second, self).await;
        Ok(())
    }

    fn apply(&mut self, _event: PairEvent) {
        self.events += 1;
    }
}

/// Records every event it is shown in `effect_log`.
struct LogEffect;

#[async_trait::async_trait]
impl CommitEffect<Pair> for LogEffect {
    async fn write(
        &self,
        tx: &mut PgConnection,
        events: &[EventEnvelope<Pair>],
    ) -> Result<(), sqlx::Error> {
        for event in events {
            let _ = sqlx::query("INSERT INTO effect_log (aggregate_id, sequence) VALUES ($1, $2)")
                .bind(&event.aggregate_id)
                .bind(i64::try_from(event.sequence).unwrap())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

async fn sequences(db: &ScratchDatabase, table: &str, id: &str) -> Vec<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as(&format!(
        "SELECT sequence FROM {table} WHERE aggregate_id = $1 ORDER BY sequence"
    ))
    .bind(id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(s,)| s).collect()
}

async fn a_command_that_loses_one_of_its_rows_leaves_none(group_commit: Option<GroupCommit>) {
    let db = ScratchDatabase::create("group_commit_partial", 4)
        .await
        .unwrap();
    let _ = sqlx::query("CREATE TABLE effect_log (aggregate_id text, sequence bigint)")
        .execute(db.pool())
        .await
        .unwrap();
    let pairs = CommandExecutor::<Pair>::new(db.pool().clone(), ())
        .with_effect(Arc::new(LogEffect))
        .with_group_commit(group_commit);
    // Another writer holds sequence 2 of the aggregate that the command,
    // deciding against the empty state, numbers 1 and 2.
    let _ = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Pair', 'p', 2, 'Second', '1.0', '\"Second\"', '{}')",
    )
    .execute(db.pool())
    .await
    .unwrap();

    let executed = pairs
        .execute_new("p", (), &CommandMetadata::default())
        .await
        .unwrap();

    // Its first attempt won sequence 1 but lost 2, so it took 1 back; it
    // then ran against the stored state (one event, at 2) and wrote 3 and 4.
    assert_eq!(executed.aggregate.events, 3);
    assert_eq!(sequences(&db, "events", "p").await, vec![2, 3, 4]);
    assert_eq!(sequences(&db, "effect_log", "p").await, vec![3, 4]);
    db.remove().await.unwrap();
}

#[tokio::test]
async fn a_grouped_command_that_loses_one_of_its_rows_leaves_none() {
    a_command_that_loses_one_of_its_rows_leaves_none(Some(GroupCommit::default())).await;
}

#[tokio::test]
async fn a_command_committed_alone_that_loses_one_of_its_rows_leaves_none() {
    a_command_that_loses_one_of_its_rows_leaves_none(None).await;
}
