//! A gap in a topic is healed from the event store.

use std::time::Duration;

use chrono::Utc;
use sqlx::Acquire;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};

use crate::common::{self, eventually, Producer, RunningProjector, TestDb, TestResult};

#[tokio::test]
async fn a_gap_is_healed_from_the_event_store() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    // Three events in the store, through the real write path.
    let tickets = CommandExecutor::<Ticket>::new(db.pool.clone(), ());
    let id = uuid::Uuid::new_v4().to_string();
    let metadata = CommandMetadata::default();
    let commands = [
        TicketCommand::Create {
            title: Title::parse("Circus")?,
            price: Money::from_cents(900)?,
            user_id: "seller".to_owned(),
        },
        TicketCommand::Update {
            title: Title::parse("Circus, front row")?,
            price: Money::from_cents(1900)?,
            user_id: "seller".to_owned(),
        },
        TicketCommand::Reserve {
            order_id: "o-1".to_owned(),
            expires_at: Utc::now(),
        },
    ];
    for command in commands {
        let _ = tickets.execute(&id, command, &metadata).await?;
    }
    // Only 1 and 3 reach the topic, byte for byte as the relay sends them.
    let mut conn = db.pool.acquire().await?;
    let published =
        ticketing_relay::load_envelopes(conn.acquire().await?, "Ticket", &id, 1, 3).await?;
    drop(conn);
    assert_eq!(published.len(), 3);
    for payload in [&published[0], &published[2]] {
        let _ = producer
            .send_raw(&config.topics.tickets, &id, payload)
            .await?;
    }

    let worker = RunningProjector::spawn(&db.pool, &config)?;
    let metrics = worker.metrics.clone();
    eventually(Duration::from_secs(30), || async {
        Ok(db.applied_events().await? == 3)
    })
    .await?;
    worker.stop().await?;

    let view: (String, i64, Option<String>, i64, i64) = sqlx::query_as(
        "SELECT title, price_cents, order_id, version, last_sequence FROM ticket_views WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        view,
        (
            "Circus, front row".to_owned(),
            1900,
            Some("o-1".to_owned()),
            2,
            3
        )
    );
    let snapshot = metrics.snapshot();
    assert_eq!(
        (
            snapshot.gaps_healed,
            snapshot.healed_events,
            snapshot.events_applied
        ),
        (1, 1, 3)
    );
    db.drop().await
}
