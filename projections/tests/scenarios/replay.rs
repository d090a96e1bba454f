//! Re-consuming every partition from offset 0 changes nothing.

use std::time::Duration;

use ticketing_schemas::{TicketEventV1, TicketReleasedV1, TicketReservedV1, TicketUpdatedV1};
use uuid::Uuid;

use crate::common::{
    self, eventually, order_placed, produce, ticket, Producer, RunningProjector, TestDb, TestResult,
};

/// `tickets` tickets with five events each, and an order per ticket.
pub(crate) fn workload(
    tickets: usize,
) -> (
    Vec<ticketing_schemas::Envelope<TicketEventV1>>,
    Vec<ticketing_schemas::Envelope<ticketing_schemas::OrderEventV1>>,
) {
    let mut ticket_events = Vec::new();
    let mut order_events = Vec::new();
    let mut position = 0;
    let mut next = || {
        position += 1;
        position
    };
    for n in 0..tickets {
        let id = format!("t-{n}");
        let order = format!("o-{n}");
        let price = 100 + i64::try_from(n).unwrap();
        ticket_events.push(produce(
            &id,
            1,
            next(),
            ticket(&format!("ticket {n}"), price, "seller"),
        ));
        ticket_events.push(produce(
            &id,
            2,
            next(),
            TicketEventV1::TicketUpdated(TicketUpdatedV1 {
                title: format!("ticket {n}, updated"),
                price_cents: price + 1,
            }),
        ));
        ticket_events.push(produce(
            &id,
            3,
            next(),
            TicketEventV1::TicketReserved(TicketReservedV1 {
                order_id: order.clone(),
                expires_at: chrono::Utc::now(),
            }),
        ));
        order_events.push(produce(
            &order,
            1,
            next(),
            order_placed(&format!("user-{}", n % 7), &id, "t", price + 1),
        ));
        if n % 2 == 0 {
            ticket_events.push(produce(
                &id,
                4,
                next(),
                TicketEventV1::TicketReleased(TicketReleasedV1 { order_id: order }),
            ));
        }
    }
    (ticket_events, order_events)
}

#[tokio::test]
async fn reconsuming_from_offset_zero_leaves_the_read_models_unchanged() -> TestResult {
    let db = TestDb::create().await?;
    let mut config = common::config();
    let producer = Producer::new(&config).await?;
    let (tickets, orders) = workload(200);
    let total = i64::try_from(tickets.len() + orders.len())?;
    producer.send_all(&config.topics.tickets, &tickets).await?;
    producer.send_all(&config.topics.orders, &orders).await?;

    let first = RunningProjector::spawn(&db.pool, &config)?;
    eventually(Duration::from_secs(30), || async {
        Ok(db.applied_events().await? == total)
    })
    .await?;
    let lag = first.metrics.clone();
    eventually(Duration::from_secs(10), || async {
        let partitions = lag.snapshot().partitions;
        Ok(partitions.values().map(|p| p.position).sum::<i64>() == total)
    })
    .await?;
    first.stop().await?;
    let before = db.read_models().await?;

    // A new group has no committed offsets: it starts at offset 0.
    config.group_id = format!("test-projections-{}", Uuid::new_v4());
    let second = RunningProjector::spawn(&db.pool, &config)?;
    let metrics = second.metrics.clone();
    eventually(Duration::from_secs(30), || async {
        Ok(metrics.snapshot().duplicates_skipped == u64::try_from(total)?)
    })
    .await?;
    second.stop().await?;

    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.events_applied, 0);
    assert_eq!(db.read_models().await?, before);
    db.drop().await
}
