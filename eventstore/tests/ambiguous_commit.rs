#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! A COMMIT whose reply is lost (the connection breaks after the server
//! committed): the executor must find out what happened instead of calling
//! it a failure, and must not commit the command a second time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{
    connect, CommandExecutor, CommandMetadata, CommitEffect, GroupCommit, ScratchDatabase,
};
use ticketing_testkit::PgProxy;

mod common;
use common::Gate;

fn create(n: u64) -> TicketCommand {
    TicketCommand::Create {
        title: Title::parse(&format!("Ticket {n}")).unwrap(),
        price: Money::from_cents(100).unwrap(),
        user_id: "seller".into(),
    }
}

fn update(n: u64) -> TicketCommand {
    TicketCommand::Update {
        title: Title::parse(&format!("Edition {n}")).unwrap(),
        price: Money::from_cents(200).unwrap(),
        user_id: "seller".into(),
    }
}

/// A database, and a proxy in front of it through which the executor's
/// pool connects.
async fn proxied(prefix: &str) -> (ScratchDatabase, PgProxy, sqlx::PgPool) {
    let db = ScratchDatabase::create(prefix, 4).await.unwrap();
    let proxy = PgProxy::start(db.url()).await.unwrap();
    let pool = connect(&proxy.url(db.url()), 4).await.unwrap();
    (db, proxy, pool)
}

async fn event_types(db: &ScratchDatabase, id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(id)
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// The executor has an effect to write (an unarmed gate), so that the
/// command commits in a transaction of its own with a COMMIT to lose (a
/// lone event with nothing else to write needs none: see
/// `one_statement_commit.rs`).
async fn an_update_whose_commit_reply_is_lost_is_done_once(group_commit: Option<GroupCommit>) {
    let (db, proxy, pool) = proxied("ambiguous_update").await;
    let tickets = CommandExecutor::<Ticket>::new(pool, ())
        .with_effect(Arc::new(Gate::default()) as Arc<dyn CommitEffect<Ticket>>)
        .with_group_commit(group_commit);
    let metadata = CommandMetadata::default();
    let _ = tickets.execute("t", create(0), &metadata).await.unwrap();

    proxy.lose_commit_reply(0);
    let executed = tickets
        .execute("t", update(1), &metadata)
        .await
        .expect("a committed update is reported as done");

    assert_eq!(proxy.lost_replies(), 1, "the fault was not injected");
    assert_eq!(executed.aggregate.version(), 1);
    assert_eq!(
        event_types(&db, "t").await,
        ["TicketCreated", "TicketUpdated"]
    );
    db.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_update_whose_commit_reply_is_lost_is_done_once() {
    an_update_whose_commit_reply_is_lost_is_done_once(Some(GroupCommit::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_committed_alone_whose_commit_reply_is_lost_is_done_once() {
    an_update_whose_commit_reply_is_lost_is_done_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_whose_commit_reply_is_lost_is_not_committed_again() {
    let (db, proxy, pool) = proxied("ambiguous_batch").await;
    let gate = Arc::new(Gate::default());
    let tickets = Arc::new(
        CommandExecutor::<Ticket>::new(pool, ())
            .with_effect(Arc::clone(&gate) as Arc<dyn CommitEffect<Ticket>>)
            .with_group_commit(Some(GroupCommit {
                writers: 1,
                ..GroupCommit::default()
            })),
    );
    let metadata = CommandMetadata::default();
    let ids: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
    for (n, id) in (0..).zip(&ids) {
        let _ = tickets.execute(id, create(n), &metadata).await.unwrap();
    }

    // The one writer holds the first update's batch open while the nine
    // others queue behind it; their batch loses its COMMIT reply.
    gate.armed.store(true, Ordering::SeqCst);
    let spawn = |id: &String, n: u64| {
        let (tickets, metadata, id) = (Arc::clone(&tickets), metadata.clone(), id.clone());
        tokio::spawn(async move { tickets.execute(&id, update(n), &metadata).await })
    };
    let mut tasks = vec![spawn(&ids[0], 0)];
    gate.entered.notified().await;
    tasks.extend((1..).zip(&ids[1..]).map(|(n, id)| spawn(id, n)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.lose_commit_reply(1);
    gate.release.notify_one();

    for (task, id) in tasks.into_iter().zip(&ids) {
        let executed = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{id}: a committed update is reported as done: {e}"));
        assert_eq!(executed.aggregate.version(), 1, "{id} was updated twice");
    }
    assert_eq!(proxy.lost_replies(), 1, "the fault was not injected");
    for id in &ids {
        assert_eq!(
            event_types(&db, id).await,
            ["TicketCreated", "TicketUpdated"],
            "{id}"
        );
    }
    db.remove().await.unwrap();
}
