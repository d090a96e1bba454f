//! Payments under faults (issue 13): every charge made is recorded as
//! made, nothing is recorded as failed while a charge may exist, recovery
//! ends within its bound, and what the client sent is never kept.

use async_trait::async_trait;
use chrono::{Duration, Utc};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};
use ticketing_aggregates::{OrderStatus, PaymentStatus};
use ticketing_sagas::circuit_breaker::GuardedProvider;
use ticketing_sagas::stripe::StripeProvider;
use ticketing_sagas::stripe_stand_in::SECRET_KEY;
use ticketing_sagas::{
    BreakerSettings, BreakerState, Charge, ChargeError, ChargeRequest, CircuitBreaker, PayError,
    PayRequest, PaymentProvider, SagaWorker,
};
use tokio::task::JoinHandle;
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

async fn open_order(fixture: &Fixture) -> (String, String) {
    let ticket = fixture.ticket(1_000).await;
    let order = fixture
        .order(&ticket, Utc::now() + Duration::minutes(15))
        .await;
    (ticket, order)
}

async fn status(fixture: &Fixture, order: &str) -> OrderStatus {
    fixture.commands.orders.load(order).await.unwrap().status()
}

async fn count_events(fixture: &Fixture, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(fixture.db.pool())
        .await
        .unwrap()
}

/// Runs saga rounds until `done`, for at most `limit`.
async fn run_until<F, Fut>(worker: &SagaWorker, limit: StdDuration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        let _ = worker.try_execute_task().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

fn stripe(fixture: &Fixture) -> Arc<dyn PaymentProvider> {
    Arc::new(
        StripeProvider::new(
            &fixture.stripe.base_url(),
            SECRET_KEY,
            StdDuration::from_secs(5),
        )
        .unwrap(),
    )
}

/// The gateway's provider in the race of item 1: before its own call goes
/// out, the saga worker fires the payment's recovery (the request's commit
/// was slow), and the call goes out once recovery's charge reached Stripe.
struct RecoveryFirst {
    inner: Arc<dyn PaymentProvider>,
    worker: Mutex<Option<SagaWorker>>,
    fixture_stripe: ticketing_sagas::stripe_stand_in::StripeStandIn,
    recovery: Mutex<Option<JoinHandle<()>>>,
}

#[async_trait]
impl PaymentProvider for RecoveryFirst {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError> {
        let worker = self.worker.lock().unwrap().take();
        if let Some(worker) = worker {
            let fired = tokio::spawn(async move {
                let _ = worker.try_execute_task().await.unwrap();
            });
            *self.recovery.lock().unwrap() = Some(fired);
            let started = Instant::now();
            while self.fixture_stripe.requests() == 0 {
                assert!(started.elapsed() < StdDuration::from_secs(10));
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
        }
        self.inner.charge(request).await
    }

    async fn find_charge(
        &self,
        order_id: &str,
        attempt: u32,
    ) -> Result<Option<ticketing_sagas::FoundCharge>, ChargeError> {
        self.inner.find_charge(order_id, attempt).await
    }
}

#[tokio::test]
async fn a_fail_fast_request_never_fails_a_charge_that_recovery_made() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture).await;
    // The gateway's breaker is open; the saga worker's (the fixture's) is
    // closed.
    let open = Arc::new(CircuitBreaker::new(
        "gateway",
        BreakerSettings {
            failure_threshold: 1,
            open_for: StdDuration::from_secs(60),
        },
    ));
    open.record(false, Instant::now());
    let hook = Arc::new(RecoveryFirst {
        inner: Arc::new(GuardedProvider::new(stripe(&fixture), open)),
        worker: Mutex::new(Some(fixture.worker())),
        fixture_stripe: fixture.stripe.clone(),
        recovery: Mutex::new(None),
    });
    // Recovery is due at once; its charge goes through, its answer is late.
    let gateway = fixture.other_service(hook.clone(), Duration::zero());
    fixture
        .stripe
        .set_stall_after(StdDuration::from_millis(500));

    let request = pay_with(&order, "tok_visa");
    let answered = gateway.pay(&request, &metadata()).await;
    let recovery = hook.recovery.lock().unwrap().take().unwrap();
    recovery.await.unwrap();

    assert_eq!(fixture.stripe.charges_for(&order).len(), 1);
    let payment = fixture
        .commands
        .payments
        .load(&request.payment_id)
        .await
        .unwrap();
    assert_eq!(
        (
            payment.status(),
            count_events(&fixture, "PaymentFailed").await
        ),
        (PaymentStatus::Succeeded, 0),
        "a charge that went through was recorded as failed; the request answered {answered:?}"
    );
    assert_eq!(status(&fixture, &order).await, OrderStatus::Complete);
    assert!(
        !matches!(&answered, Err(PayError::Unavailable(m)) if m.contains("no charge was made")),
        "{answered:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_or_a_key_in_use_is_never_a_decline() {
    let fixture = Fixture::new().await;
    for (status_code, code) in [(429, "rate_limit"), (409, "idempotency_key_in_use")] {
        let (_, order) = open_order(&fixture).await;
        fixture
            .stripe
            .force_error(Some((status_code, "invalid_request_error", Some(code))));
        let answered = fixture
            .payments
            .pay(&pay_with(&order, "tok_visa"), &metadata())
            .await;
        assert!(
            matches!(&answered, Err(PayError::Unavailable(_))),
            "{status_code} {code}: {answered:?}"
        );
        // Whatever was recorded, the order gets paid once Stripe answers.
        fixture.stripe.force_error(None);
        let worker = fixture.worker();
        run_until(&worker, StdDuration::from_secs(20), code, || async {
            match status(&fixture, &order).await {
                OrderStatus::Complete => true,
                OrderStatus::Created => {
                    // Failed without a charge: the buyer may pay again.
                    let _ = fixture
                        .payments
                        .pay(&pay_with(&order, "tok_visa"), &metadata())
                        .await;
                    false
                }
                _ => false,
            }
        })
        .await;
        assert_eq!(fixture.stripe.charges_for(&order).len(), 1, "{code}");
    }
    assert_eq!(count_events(&fixture, "OrderCompleted").await, 2);
}

#[tokio::test]
async fn a_replayed_5xx_after_a_charge_is_settled_by_looking_the_charge_up() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture).await;
    // Stripe charged, then stored a 500 under the key: every re-send of
    // the key gets the 500 again.
    fixture.stripe.fail_next_stored(true);

    let request = pay_with(&order, "tok_visa");
    let answered = fixture.payments.pay(&request, &metadata()).await;
    assert!(
        matches!(&answered, Err(PayError::Unavailable(_))),
        "{answered:?}"
    );

    let worker = fixture.worker();
    run_until(&worker, StdDuration::from_secs(15), "settled", || async {
        status(&fixture, &order).await == OrderStatus::Complete
    })
    .await;
    let charges = fixture.stripe.charges_for(&order);
    assert_eq!(charges.len(), 1);
    let payment = fixture
        .commands
        .payments
        .load(&request.payment_id)
        .await
        .unwrap();
    assert_eq!(payment.stripe_id(), charges[0]["id"].as_str());
    assert_eq!(fixture.timers().await, 2, "expiry and reservation check");
}

#[tokio::test]
async fn a_replayed_5xx_without_a_charge_fails_within_the_bound_and_frees_the_order() {
    let fixture = Fixture::with_settle_within(Duration::seconds(3)).await;
    let (ticket, order) = open_order(&fixture).await;
    fixture.stripe.fail_next_stored(false);

    let request = pay_with(&order, "tok_visa");
    let _ = fixture.payments.pay(&request, &metadata()).await;
    assert_eq!(status(&fixture, &order).await, OrderStatus::AwaitingPayment);

    let worker = fixture.worker();
    run_until(&worker, StdDuration::from_secs(15), "failed", || async {
        status(&fixture, &order).await == OrderStatus::Created
    })
    .await;
    let payment = fixture
        .commands
        .payments
        .load(&request.payment_id)
        .await
        .unwrap();
    assert_eq!(payment.status(), PaymentStatus::Failed);
    assert!(fixture.stripe.charges_for(&order).is_empty());
    // No longer blocked: the buyer can cancel and the ticket is freed.
    fixture.cancel(&order).await;
    fixture.drain(&worker).await;
    assert_eq!(fixture.reserved_by(&ticket).await, None);
}

/// Everything logged while it is the thread's subscriber, at every level.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_card_number_sent_as_the_token_is_never_echoed_or_stored() {
    let fixture = Fixture::new().await;
    let (_, order) = open_order(&fixture).await;
    let card = "4242424242424242";
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();

    // (A current-thread runtime: the pay runs on this thread.)
    let answered = {
        let _logging = tracing::subscriber::set_default(subscriber);
        fixture
            .payments
            .pay(&pay_with(&order, card), &metadata())
            .await
    };
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(!logged.is_empty(), "nothing was captured");
    assert!(!logged.contains(card), "logged: {logged}");
    let message = answered.as_ref().map_err(ToString::to_string).unwrap_err();
    assert!(!message.contains(card), "{message}");
    assert!(
        matches!(&answered, Err(PayError::Declined(_))),
        "{answered:?}"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events WHERE payload::text LIKE $1 OR metadata::text LIKE $1) \
              + (SELECT count(*) FROM saga_timers WHERE payload::text LIKE $1)",
    )
    .bind(format!("%{card}%"))
    .fetch_one(fixture.db.pool())
    .await
    .unwrap();
    assert_eq!(stored, 0, "the card number was stored");
    assert_eq!(fixture.stripe.requests(), 0);
    assert_eq!(status(&fixture, &order).await, OrderStatus::Created);
}

#[tokio::test]
async fn a_bad_api_key_is_unavailable_and_counts_against_the_breaker() {
    let fixture = Fixture::with_breaker(
        BreakerSettings {
            failure_threshold: 2,
            open_for: StdDuration::from_secs(60),
        },
        StdDuration::from_secs(5),
    )
    .await;
    fixture
        .stripe
        .force_error(Some((401, "invalid_request_error", None)));
    for _ in 0..3 {
        let (_, order) = open_order(&fixture).await;
        let answered = fixture
            .payments
            .pay(&pay_with(&order, "tok_visa"), &metadata())
            .await;
        match &answered {
            Err(PayError::Unavailable(m)) => assert!(!m.contains("sk_"), "{m}"),
            other => panic!("a provider configuration error answered {other:?}"),
        }
    }
    // The third never reached Stripe: the breaker opened.
    assert_eq!(fixture.stripe.requests(), 2);
}

#[tokio::test]
async fn a_dropped_probe_does_not_leave_the_breaker_half_open() {
    let fixture = Fixture::new().await;
    let breaker = Arc::new(CircuitBreaker::new(
        "probe",
        BreakerSettings {
            failure_threshold: 1,
            open_for: StdDuration::from_millis(200),
        },
    ));
    let guarded = GuardedProvider::new(stripe(&fixture), Arc::clone(&breaker));
    let request = |key: &str| ChargeRequest {
        amount_cents: 1_000,
        currency: "usd".to_owned(),
        token: "tok_visa".to_owned(),
        idempotency_key: key.to_owned(),
        order_id: "order".to_owned(),
        attempt: 1,
    };
    fixture.stripe.set_failing(true);
    assert!(guarded.charge(&request("a")).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    fixture.stripe.set_failing(false);
    tokio::time::sleep(StdDuration::from_millis(250)).await;

    // The probe goes out and its caller goes away (a client disconnect
    // drops the handler's future).
    fixture.stripe.set_stall(StdDuration::from_secs(2));
    let dropped =
        tokio::time::timeout(StdDuration::from_millis(200), guarded.charge(&request("b"))).await;
    assert!(dropped.is_err(), "the probe should still be in flight");
    fixture.stripe.set_stall(StdDuration::ZERO);

    // Another probe is let through after a cool-down, and closes it.
    tokio::time::sleep(StdDuration::from_millis(250)).await;
    let probe = guarded.charge(&request("c")).await;
    assert!(probe.is_ok(), "{probe:?}");
    assert_eq!(breaker.state(), BreakerState::Closed);
}
