use chrono::{Duration, Utc};
use futures::future::join_all;
use ticketing_sagas::ExecutionOutcome;
use tokio_util::sync::CancellationToken;

use crate::common::Fixture;

async fn count_events(fixture: &Fixture, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(fixture.db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_workers_fire_each_of_a_thousand_timers_exactly_once() {
    // Arrange: 1,000 orders whose windows already ended.
    let fixture = Fixture::new().await;
    let past = Utc::now() - Duration::minutes(1);
    let orders = join_all((0..1_000).map(|_| async {
        let ticket = fixture.ticket(1_000).await;
        fixture.order(&ticket, past).await
    }))
    .await;
    assert_eq!(orders.len(), 1_000);

    // Act: two workers race over the due timers.
    let (a, b) = (fixture.worker(), fixture.worker());
    let run = |worker: ticketing_sagas::SagaWorker| async move {
        let mut fired = 0;
        loop {
            match worker.try_execute_task().await.unwrap() {
                ExecutionOutcome::Fired { fired: n, .. } => fired += n,
                ExecutionOutcome::EmptyQueue => return fired,
            }
        }
    };
    let (fired_a, fired_b) = tokio::join!(run(a), run(b));

    // Assert: 1,000 expiries, 1,000 releases and 1,000 reservation checks
    // (all due: the deadlines passed long ago) fired once in all; each order
    // expired once and each ticket was released once.
    assert_eq!(fired_a + fired_b, 3_000, "a: {fired_a}, b: {fired_b}");
    assert_eq!(count_events(&fixture, "OrderExpired").await, 1_000);
    assert_eq!(count_events(&fixture, "TicketReleased").await, 1_000);
    assert_eq!(fixture.timers().await, 0);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_timers WHERE attempts > 1")
        .fetch_one(fixture.db.pool())
        .await
        .unwrap();
    assert_eq!(claims, 0);
}

#[tokio::test]
async fn a_timer_that_fell_due_while_stopped_fires_after_start_up() {
    let fixture = Fixture::new().await;
    // A worker runs, then everything stops.
    let first_run = CancellationToken::new();
    let first = tokio::spawn(fixture.worker().run_until_stopped(first_run.clone()));
    let ticket = fixture.ticket(500).await;
    let deadline = Utc::now() + Duration::milliseconds(300);
    let order = fixture.order(&ticket, deadline).await;
    first_run.cancel();
    first.await.unwrap();
    // The deadline passes while no worker runs.
    while Utc::now() <= deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        fixture.commands.orders.load(&order).await.unwrap().status(),
        ticketing_aggregates::OrderStatus::Created
    );

    // A new worker starts and fires it.
    let second_run = CancellationToken::new();
    let second = tokio::spawn(fixture.worker().run_until_stopped(second_run.clone()));
    let started = std::time::Instant::now();
    while fixture.reserved_by(&ticket).await.is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "never fired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    second_run.cancel();
    second.await.unwrap();
    assert_eq!(
        fixture.commands.orders.load(&order).await.unwrap().status(),
        ticketing_aggregates::OrderStatus::Cancelled
    );
}

#[tokio::test]
async fn a_timer_whose_lease_ran_out_in_a_slow_batch_fires_once() {
    // Two payments left to recovery, whose timers are due together.
    let fixture = Fixture::new().await;
    fixture.stripe.set_failing(true);
    let mut orders = Vec::new();
    for _ in 0..2 {
        let ticket = fixture.ticket(1_000).await;
        let order = fixture
            .order(&ticket, Utc::now() + Duration::minutes(15))
            .await;
        let request = ticketing_sagas::PayRequest {
            order_id: order.clone(),
            user_id: crate::common::BUYER.to_owned(),
            token: "tok_visa".to_owned(),
            payment_id: uuid::Uuid::new_v4().to_string(),
        };
        let _ = fixture
            .payments
            .pay(&request, &crate::common::metadata())
            .await;
        orders.push(order);
    }
    fixture.stripe.set_failing(false);
    let sent_before = fixture.stripe.requests();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    // Each recovery takes longer than the lease: worker A's batch of two
    // outlives its claim while worker B keeps polling.
    fixture
        .stripe
        .set_stall(std::time::Duration::from_millis(1_500));
    let config = ticketing_sagas::SagaConfig {
        lease: std::time::Duration::from_secs(1),
        ..ticketing_sagas::SagaConfig::default()
    };
    let (a, b) = (fixture.worker_with(config), fixture.worker_with(config));
    let done = CancellationToken::new();
    let b_polls = async {
        while !done.is_cancelled() {
            let _ = b.try_execute_task().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let a_runs = async {
        let _ = a.try_execute_task().await.unwrap();
        // Whatever B claimed, let it finish.
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        done.cancel();
    };
    tokio::join!(a_runs, b_polls);

    // One re-send per payment, each order completed once.
    assert_eq!(fixture.stripe.requests() - sent_before, 2);
    assert_eq!(count_events(&fixture, "OrderCompleted").await, 2);
    assert_eq!(fixture.stripe.charges().len(), 2);
}
