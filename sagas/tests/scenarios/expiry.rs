use chrono::{Duration, Utc};
use ticketing_aggregates::OrderStatus;
use ticketing_sagas::order_expiry;
use ticketing_sagas::{PayRequest, TaskOutcome};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{metadata, Fixture, BUYER};

#[tokio::test]
async fn an_order_not_paid_in_its_window_is_cancelled_and_its_ticket_released() {
    let fixture = Fixture::new().await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(fixture.worker().run_until_stopped(stop.clone()));
    let ticket = fixture.ticket(2_000).await;
    let order = fixture
        .order(&ticket, Utc::now() + Duration::seconds(2))
        .await;
    assert_eq!(
        fixture.reserved_by(&ticket).await.as_deref(),
        Some(order.as_str())
    );

    let started = std::time::Instant::now();
    while fixture.reserved_by(&ticket).await.is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    let expired = fixture.commands.orders.load(&order).await.unwrap();
    assert_eq!(expired.status(), OrderStatus::Cancelled);
}

#[tokio::test]
async fn a_complete_order_is_never_cancelled_by_its_timer() {
    let fixture = Fixture::new().await;
    let ticket = fixture.ticket(2_000).await;
    let deadline = Utc::now() + Duration::minutes(5);
    let order = fixture.order(&ticket, deadline).await;
    let request = PayRequest {
        order_id: order.clone(),
        user_id: BUYER.to_owned(),
        token: "tok_visa".to_owned(),
        payment_id: Uuid::new_v4().to_string(),
    };
    let _ = fixture.payments.pay(&request, &metadata()).await.unwrap();

    // The timer fires late, long after the deadline.
    let outcome = order_expiry::fire(
        &fixture.commands,
        &order,
        deadline + Duration::hours(1),
        Duration::seconds(30),
        &metadata(),
    )
    .await
    .unwrap();

    assert_eq!(outcome, TaskOutcome::Done);
    let paid = fixture.commands.orders.load(&order).await.unwrap();
    assert_eq!(paid.status(), OrderStatus::Complete);
    assert_eq!(
        fixture.reserved_by(&ticket).await.as_deref(),
        Some(order.as_str())
    );
}

#[tokio::test]
async fn an_expiry_during_a_payment_waits_for_the_payment() {
    let fixture = Fixture::new().await;
    let ticket = fixture.ticket(2_000).await;
    let deadline = Utc::now() + Duration::minutes(5);
    let order = fixture.order(&ticket, deadline).await;
    let _ = fixture
        .commands
        .orders
        .execute(
            &order,
            ticketing_aggregates::OrderCommand::StartPayment {
                payment_id: "payment-1".to_owned(),
                user_id: BUYER.to_owned(),
                now: Utc::now(),
                max_attempts: 1,
            },
            &metadata(),
        )
        .await
        .unwrap();
    let late = deadline + Duration::minutes(1);
    let outcome = order_expiry::fire(
        &fixture.commands,
        &order,
        late,
        Duration::seconds(30),
        &metadata(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, TaskOutcome::Deferred(late + Duration::seconds(30)));
    assert_eq!(
        fixture.commands.orders.load(&order).await.unwrap().status(),
        OrderStatus::AwaitingPayment
    );
}
