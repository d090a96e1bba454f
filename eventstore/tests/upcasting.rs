#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! A ticket whose creation was stored at event version 1.0 (before tickets
//! had a currency) still loads and takes commands, through the upcasters
//! the executor installs.

use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata, ScratchDatabase};

#[tokio::test]
async fn a_ticket_stored_at_version_1_0_loads_with_the_default_currency() {
    let db = ScratchDatabase::create("upcasting", 4).await.unwrap();
    let _ = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Ticket', 'old-ticket', 1, 'TicketCreated', '1.0', \
                 '{\"TicketCreated\":{\"title\":\"Old\",\"price_cents\":500,\"user_id\":\"u-1\"}}', '{}')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let tickets = CommandExecutor::<Ticket>::new(db.pool().clone(), ());

    let loaded = tickets.load("old-ticket").await.unwrap();
    assert_eq!((loaded.title(), loaded.currency()), ("Old", "usd"));

    let update = TicketCommand::Update {
        title: Title::parse("Newer").unwrap(),
        price: Money::from_cents(700).unwrap(),
        user_id: "u-1".into(),
    };
    let executed = tickets
        .execute("old-ticket", update, &CommandMetadata::default())
        .await
        .unwrap();
    assert_eq!(executed.aggregate.version(), 1);
    assert_eq!(executed.aggregate.currency(), "usd");
    db.remove().await.unwrap();
}
