#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! A command of one event with nothing else to write is committed in one
//! statement, outside any explicit transaction, so no transaction id is
//! known before the reply. When that reply is lost, the outcome must still
//! be learned: the command is reported done if and only if its event is
//! stored, and never stored twice, whether the statement had committed,
//! was still running on the server, or lost its key to another writer.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::DomainEvent;
use ticketing_aggregates::{Money, Ticket, TicketCommand, TicketEvent, Title};
use ticketing_eventstore::{connect, CommandExecutor, CommandMetadata, ScratchDatabase};
use ticketing_testkit::{eventually, PgProxy};

const WAIT: Duration = Duration::from_secs(10);

fn create() -> TicketCommand {
    TicketCommand::Create {
        title: Title::parse("Ticket").unwrap(),
        price: Money::from_cents(100).unwrap(),
        user_id: "seller".into(),
    }
}

fn update(title: &str) -> TicketCommand {
    TicketCommand::Update {
        title: Title::parse(title).unwrap(),
        price: Money::from_cents(200).unwrap(),
        user_id: "seller".into(),
    }
}

/// A database, a proxy in front of it, and an executor (group commit on,
/// no effects) whose pool connects through the proxy; ticket `t` exists.
async fn proxied(prefix: &str) -> (ScratchDatabase, PgProxy, Arc<CommandExecutor<Ticket>>) {
    let db = ScratchDatabase::create(prefix, 4).await.unwrap();
    let proxy = PgProxy::start(db.url()).await.unwrap();
    let pool = connect(&proxy.url(db.url()), 4).await.unwrap();
    let tickets = Arc::new(CommandExecutor::<Ticket>::new(pool, ()));
    let _ = tickets
        .execute("t", create(), &CommandMetadata::default())
        .await
        .unwrap();
    (db, proxy, tickets)
}

/// The titles the store holds for `t`, in order; the creation reads "".
async fn titles(db: &ScratchDatabase) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT coalesce(payload -> 'TicketUpdated' ->> 'title', '') \
         FROM events WHERE aggregate_id = 't' ORDER BY sequence",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

/// Backends of this database waiting on a lock.
async fn lock_waiters(db: &ScratchDatabase) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(db.pool())
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_reply_is_lost_after_its_statement_committed_is_done_once() {
    let (db, proxy, tickets) = proxied("one_statement_lost").await;

    proxy.lose_reply_to("INSERT INTO events", 0);
    let executed = tickets
        .execute("t", update("Edition"), &CommandMetadata::default())
        .await
        .expect("a committed update is reported as done");

    assert_eq!(proxy.lost_replies(), 1, "the fault was not injected");
    assert_eq!(executed.aggregate.version(), 1);
    assert_eq!(titles(&db).await, ["", "Edition"]);
    db.remove().await.unwrap();
}

/// Another transaction inserts the key the command will want and stays
/// open; the command's statement waits on it, and its connection is cut
/// meanwhile (the statement goes on running on the server). The other
/// transaction then commits (`keep`) or rolls back.
async fn a_statement_cut_off_while_it_waits(keep: bool) -> (ScratchDatabase, Vec<String>) {
    let (db, proxy, tickets) = proxied("one_statement_waits").await;
    let rival = TicketEvent::TicketUpdated {
        title: "Rival".into(),
        price_cents: 300,
    };
    let mut holder = db.pool().begin().await.unwrap();
    let _ = sqlx::query(
        "INSERT INTO events \
         (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Ticket', 't', 2, $1, $2, $3, '{}')",
    )
    .bind(rival.event_type())
    .bind(rival.event_version())
    .bind(serde_json::to_value(&rival).unwrap())
    .execute(&mut *holder)
    .await
    .unwrap();

    let command = {
        let tickets = Arc::clone(&tickets);
        tokio::spawn(async move {
            tickets
                .execute("t", update("Edition"), &CommandMetadata::default())
                .await
        })
    };
    eventually(WAIT, || async { Ok(lock_waiters(&db).await? == 1) })
        .await
        .unwrap();
    // The statement is on the server, waiting; its client is cut off and
    // cannot reconnect for a while.
    proxy.refuse(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.refuse(false);
    // The read-back waits on the key too, beside the cut-off statement.
    eventually(WAIT, || async { Ok(lock_waiters(&db).await? == 2) })
        .await
        .unwrap();
    if keep {
        holder.commit().await.unwrap();
    } else {
        holder.rollback().await.unwrap();
    }

    let executed = command
        .await
        .unwrap()
        .expect("the update is done, once its outcome is learned");
    let expected_version = if keep { 2 } else { 1 };
    assert_eq!(executed.aggregate.version(), expected_version);
    let stored = titles(&db).await;
    (db, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_off_while_it_waits_is_stored_once_when_the_key_frees_up() {
    let (db, stored) = a_statement_cut_off_while_it_waits(false).await;
    assert_eq!(stored, ["", "Edition"]);
    db.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_off_while_it_waits_loses_to_the_writer_that_took_its_key() {
    // The command lost its key, learned so, and was retried on the new
    // state: stored once, after the rival's event.
    let (db, stored) = a_statement_cut_off_while_it_waits(true).await;
    assert_eq!(stored, ["", "Rival", "Edition"]);
    db.remove().await.unwrap();
}
