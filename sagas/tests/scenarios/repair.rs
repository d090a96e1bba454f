use chrono::{Duration, Utc};
use ticketing_aggregates::TicketCommand;
use ticketing_sagas::reservation_repair;
use uuid::Uuid;

use crate::common::{metadata, Fixture};

#[tokio::test]
async fn a_reservation_whose_order_was_never_recorded_is_released() {
    // The gateway reserved the ticket, then died before placing the order.
    let fixture = Fixture::new().await;
    let ticket = fixture.ticket(1_500).await;
    let lost_order = Uuid::new_v4().to_string();
    let _ = fixture
        .commands
        .tickets
        .execute(
            &ticket,
            TicketCommand::Reserve {
                order_id: lost_order.clone(),
                expires_at: Utc::now() - Duration::minutes(5),
            },
            &metadata(),
        )
        .await
        .unwrap();
    assert_eq!(fixture.reserved_by(&ticket).await, Some(lost_order));

    fixture.drain(&fixture.worker()).await;

    assert_eq!(fixture.reserved_by(&ticket).await, None);
    assert_eq!(fixture.timers().await, 0);
}

#[tokio::test]
async fn a_cancelled_order_whose_release_was_lost_gets_its_ticket_released() {
    let fixture = Fixture::new().await;
    let ticket = fixture.ticket(1_500).await;
    let order = fixture
        .order(&ticket, Utc::now() + Duration::minutes(15))
        .await;
    // Cancelled, and the process died before releasing the ticket.
    fixture.cancel(&order).await;
    assert_eq!(
        fixture.reserved_by(&ticket).await.as_deref(),
        Some(order.as_str())
    );

    fixture.drain(&fixture.worker()).await;

    assert_eq!(fixture.reserved_by(&ticket).await, None);
}

#[tokio::test]
async fn a_live_order_keeps_its_reservation() {
    let fixture = Fixture::new().await;
    let ticket = fixture.ticket(1_500).await;
    let order = fixture
        .order(&ticket, Utc::now() + Duration::minutes(15))
        .await;

    let _ = reservation_repair::check(&fixture.commands, &ticket, &order, &metadata())
        .await
        .unwrap();

    assert_eq!(
        fixture.reserved_by(&ticket).await.as_deref(),
        Some(order.as_str())
    );
}
