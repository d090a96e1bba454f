use chrono::{Duration, Utc};
use std::time::Duration as StdDuration;
use ticketing_aggregates::{OrderError, OrderStatus, PaymentStatus};
use ticketing_eventstore::CommandError;
use ticketing_sagas::{BreakerSettings, PayError, PayRequest};
use uuid::Uuid;

use crate::common::{metadata, Fixture, BUYER};

fn pay_with(order_id: &str, token: &str) -> PayRequest {
    PayRequest {
        order_id: order_id.to_owned(),
        user_id: BUYER.to_owned(),
        token: token.to_owned(),
        payment_id: Uuid::new_v4().to_string(),
    }
}

async fn open_order(fixture: &Fixture, price_cents: i64) -> (String, String) {
    let ticket = fixture.ticket(price_cents).await;
    let order = fixture
        .order(&ticket, Utc::now() + Duration::minutes(15))
        .await;
    (ticket, order)
}

async fn status(fixture: &Fixture, order: &str) -> OrderStatus {
    fixture.commands.orders.load(order).await.unwrap().status()
}

#[tokio::test]
async fn a_successful_charge_completes_the_order() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture, 1_999).await;

    let payment = fixture
        .payments
        .pay(&pay_with(&order, "tok_visa"), &metadata())
        .await
        .unwrap();

    let completed = fixture.commands.orders.load(&order).await.unwrap();
    assert_eq!(completed.status(), OrderStatus::Complete);
    assert_eq!(payment.order_version, completed.version());
    let recorded = fixture
        .commands
        .payments
        .load(&payment.payment_id)
        .await
        .unwrap();
    assert_eq!(recorded.status(), PaymentStatus::Succeeded);
    assert_eq!(recorded.order_id(), order);
    let charges = fixture.stripe.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["amount"], 1_999);
    assert_eq!(charges[0]["currency"], "usd");
    assert_eq!(recorded.stripe_id(), charges[0]["id"].as_str());
    // The order id keys the charge; the recovery timer is gone.
    assert_eq!(
        fixture.stripe.idempotency_keys(),
        vec![format!("{order}:1")]
    );
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM saga_timers ORDER BY kind")
        .fetch_all(fixture.db.pool())
        .await
        .unwrap();
    assert_eq!(kinds, ["order-expiry", "reservation-check"]);
}

#[tokio::test]
async fn a_declined_card_leaves_the_order_payable() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture, 1_000).await;

    let declined = fixture
        .payments
        .pay(&pay_with(&order, "tok_chargeDeclined"), &metadata())
        .await;
    assert!(
        matches!(&declined, Err(PayError::Declined(m)) if m == "Your card was declined."),
        "{declined:?}"
    );
    assert_eq!(status(&fixture, &order).await, OrderStatus::Created);

    let junk = fixture
        .payments
        .pay(&pay_with(&order, "asldkfj"), &metadata())
        .await;
    assert!(
        matches!(&junk, Err(PayError::Declined(m)) if m == "The payment token is not valid"),
        "{junk:?}"
    );
    assert_eq!(status(&fixture, &order).await, OrderStatus::Created);

    // Attempt 2 gets its own idempotency key, so Stripe does not replay the
    // decline (the junk token never started an attempt).
    let _ = fixture
        .payments
        .pay(&pay_with(&order, "tok_visa"), &metadata())
        .await
        .unwrap();
    assert_eq!(status(&fixture, &order).await, OrderStatus::Complete);
    assert_eq!(fixture.stripe.charges().len(), 1);
}

#[tokio::test]
async fn paying_again_never_charges_twice() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture, 1_000).await;
    let first = pay_with(&order, "tok_visa");
    let _ = fixture.payments.pay(&first, &metadata()).await.unwrap();

    // Another payment, and the same payment re-sent.
    for again in [pay_with(&order, "tok_visa"), first] {
        let refused = fixture.payments.pay(&again, &metadata()).await;
        assert!(
            matches!(
                &refused,
                Err(PayError::Order(CommandError::Rejected(
                    OrderError::AlreadyPaid
                )))
            ),
            "{refused:?}"
        );
    }
    assert_eq!(fixture.stripe.charges().len(), 1);
    assert_eq!(fixture.stripe.requests(), 1);
}

#[tokio::test]
async fn a_cancelled_or_foreign_order_cannot_be_paid() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture, 1_000).await;
    let mut foreign = pay_with(&order, "tok_visa");
    foreign.user_id = "someone-else".to_owned();
    let refused = fixture.payments.pay(&foreign, &metadata()).await;
    assert!(
        matches!(
            &refused,
            Err(PayError::Order(CommandError::Rejected(
                OrderError::NotOwner
            )))
        ),
        "{refused:?}"
    );

    fixture.cancel(&order).await;
    let refused = fixture
        .payments
        .pay(&pay_with(&order, "tok_visa"), &metadata())
        .await;
    let message = refused.as_ref().map_err(ToString::to_string).unwrap_err();
    assert_eq!(message, "Cannot pay for an cancelled order");
    assert_eq!(fixture.stripe.requests(), 0);
}

#[tokio::test]
async fn a_failing_stripe_opens_the_circuit_and_every_payment_settles_after_recovery() {
    let fixture = Fixture::with_breaker(
        BreakerSettings {
            failure_threshold: 2,
            open_for: StdDuration::from_millis(500),
        },
        StdDuration::from_secs(5),
    )
    .await;
    let orders = [
        open_order(&fixture, 1_000).await.1,
        open_order(&fixture, 2_000).await.1,
        open_order(&fixture, 3_000).await.1,
    ];
    fixture.stripe.set_failing(true);

    // Two 5xx: the outcome is unknown, the orders wait for recovery.
    for order in &orders[..2] {
        let result = fixture
            .payments
            .pay(&pay_with(order, "tok_visa"), &metadata())
            .await;
        assert!(
            matches!(result, Err(PayError::Unavailable(_))),
            "{result:?}"
        );
        assert_eq!(status(&fixture, order).await, OrderStatus::AwaitingPayment);
    }
    assert_eq!(fixture.stripe.requests(), 2);
    // Open: fails fast without calling Stripe, and since nothing was sent
    // the order is payable again at once.
    let result = fixture
        .payments
        .pay(&pay_with(&orders[2], "tok_visa"), &metadata())
        .await;
    assert!(
        matches!(result, Err(PayError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(fixture.stripe.requests(), 2);
    assert_eq!(status(&fixture, &orders[2]).await, OrderStatus::Created);

    // Stripe recovers; the breaker probes after its cool-down and the
    // recovery timers settle the two open payments with their own keys.
    fixture.stripe.set_failing(false);
    let worker = fixture.worker();
    let started = std::time::Instant::now();
    while status(&fixture, &orders[0]).await != OrderStatus::Complete
        || status(&fixture, &orders[1]).await != OrderStatus::Complete
    {
        assert!(
            started.elapsed() < StdDuration::from_secs(30),
            "never recovered"
        );
        let _ = worker.try_execute_task().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let _ = fixture
        .payments
        .pay(&pay_with(&orders[2], "tok_visa"), &metadata())
        .await
        .unwrap();
    assert_eq!(status(&fixture, &orders[2]).await, OrderStatus::Complete);
    assert_eq!(fixture.stripe.charges().len(), 3);
}

#[tokio::test]
async fn a_timed_out_charge_is_settled_by_recovery_exactly_once() {
    let fixture =
        Fixture::with_breaker(BreakerSettings::default(), StdDuration::from_millis(300)).await;
    let (_, order) = open_order(&fixture, 1_000).await;
    fixture.stripe.set_stall(StdDuration::from_millis(1_000));

    let result = fixture
        .payments
        .pay(&pay_with(&order, "tok_visa"), &metadata())
        .await;
    assert!(
        matches!(result, Err(PayError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(status(&fixture, &order).await, OrderStatus::AwaitingPayment);

    fixture.stripe.set_stall(StdDuration::ZERO);
    let worker = fixture.worker();
    let started = std::time::Instant::now();
    while status(&fixture, &order).await != OrderStatus::Complete {
        assert!(
            started.elapsed() < StdDuration::from_secs(30),
            "never recovered"
        );
        let _ = worker.try_execute_task().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    // However the stalled request ended, the key allowed one charge.
    assert_eq!(fixture.stripe.charges().len(), 1);
    assert_eq!(
        fixture.stripe.idempotency_keys(),
        vec![format!("{order}:1")]
    );
}
