#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};

use super::{Order, OrderCommand, OrderError, OrderEvent, OrderStatus, OrderTicket};

type OrderTestFramework = TestFramework<Order>;

const BUYER: &str = "user-1";
const TICKET_ID: &str = "ticket-1";

fn framework() -> OrderTestFramework {
    OrderTestFramework::with(())
}

fn expiry() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 15, 0).unwrap()
}

fn ticket() -> OrderTicket {
    OrderTicket {
        id: TICKET_ID.to_owned(),
        title: "concert".to_owned(),
        price_cents: 2_000,
        version: 1,
    }
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced {
        user_id: BUYER.to_owned(),
        ticket: ticket(),
        expires_at: expiry(),
    }
}

fn cancelled() -> OrderEvent {
    OrderEvent::OrderCancelled {
        ticket_id: TICKET_ID.to_owned(),
    }
}

fn expired() -> OrderEvent {
    OrderEvent::OrderExpired {
        ticket_id: TICKET_ID.to_owned(),
    }
}

fn completed(payment_id: &str) -> OrderEvent {
    OrderEvent::OrderCompleted {
        payment_id: payment_id.to_owned(),
    }
}

fn place() -> OrderCommand {
    OrderCommand::Place {
        user_id: BUYER.to_owned(),
        ticket: ticket(),
        expires_at: expiry(),
    }
}

fn cancel(user_id: &str) -> OrderCommand {
    OrderCommand::Cancel {
        user_id: user_id.to_owned(),
    }
}

fn expire_at(now: DateTime<Utc>) -> OrderCommand {
    OrderCommand::Expire { now }
}

fn complete(payment_id: &str) -> OrderCommand {
    OrderCommand::Complete {
        payment_id: payment_id.to_owned(),
    }
}

fn payment_started(payment_id: &str, attempt: u32) -> OrderEvent {
    OrderEvent::OrderPaymentStarted {
        payment_id: payment_id.to_owned(),
        attempt,
    }
}

fn payment_failed(payment_id: &str) -> OrderEvent {
    OrderEvent::OrderPaymentFailed {
        payment_id: payment_id.to_owned(),
    }
}

fn before_expiry() -> DateTime<Utc> {
    expiry() - Duration::minutes(5)
}

fn start_payment(payment_id: &str, user_id: &str, now: DateTime<Utc>) -> OrderCommand {
    OrderCommand::StartPayment {
        payment_id: payment_id.to_owned(),
        user_id: user_id.to_owned(),
        now,
        max_attempts: 3,
    }
}

fn fail_payment(payment_id: &str) -> OrderCommand {
    OrderCommand::FailPayment {
        payment_id: payment_id.to_owned(),
    }
}

fn replay(events: Vec<OrderEvent>) -> Order {
    let mut order = Order::default();
    for event in events {
        order.apply(event);
    }
    order
}

#[test]
fn place_records_the_order() {
    framework()
        .given_no_previous_events()
        .when(place())
        .then_expect_events(vec![placed()]);
}

#[test]
fn place_twice_is_refused() {
    framework()
        .given(vec![placed()])
        .when(place())
        .then_expect_error_message("Order already exists");
}

#[test]
fn commands_on_a_missing_order_are_not_found() {
    for command in [cancel(BUYER), expire_at(expiry()), complete("payment-1")] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(OrderError::NotFound);
    }
}

#[test]
fn owner_cancels_an_open_order() {
    framework()
        .given(vec![placed()])
        .when(cancel(BUYER))
        .then_expect_events(vec![cancelled()]);
}

#[test]
fn cancel_by_another_user_is_refused() {
    framework()
        .given(vec![placed()])
        .when(cancel("user-2"))
        .then_expect_error_message("Not authorized");
}

#[test]
fn cancel_checks_ownership_before_status() {
    framework()
        .given(vec![placed(), completed("payment-1")])
        .when(cancel("user-2"))
        .then_expect_error(OrderError::NotOwner);
}

#[test]
fn cancel_of_a_completed_order_is_refused() {
    framework()
        .given(vec![placed(), completed("payment-1")])
        .when(cancel(BUYER))
        .then_expect_error_message("Cannot cancel a completed order");
}

#[test]
fn cancel_of_a_cancelled_order_is_a_no_op() {
    for ending in [cancelled(), expired()] {
        framework()
            .given(vec![placed(), ending])
            .when(cancel(BUYER))
            .then_expect_events(vec![]);
    }
}

#[test]
fn expire_at_or_after_the_deadline_ends_the_order() {
    for now in [expiry(), expiry() + Duration::seconds(1)] {
        framework()
            .given(vec![placed()])
            .when(expire_at(now))
            .then_expect_events(vec![expired()]);
    }
}

#[test]
fn expire_before_the_deadline_is_refused() {
    framework()
        .given(vec![placed()])
        .when(expire_at(expiry() - Duration::seconds(1)))
        .then_expect_error_message("Order has not expired yet");
}

#[test]
fn expire_of_a_completed_order_is_a_no_op() {
    framework()
        .given(vec![placed(), completed("payment-1")])
        .when(expire_at(expiry() + Duration::hours(1)))
        .then_expect_events(vec![]);
}

#[test]
fn expire_of_a_cancelled_order_is_a_no_op() {
    for ending in [cancelled(), expired()] {
        framework()
            .given(vec![placed(), ending])
            .when(expire_at(expiry() + Duration::hours(1)))
            .then_expect_events(vec![]);
    }
}

#[test]
fn complete_records_the_payment() {
    framework()
        .given(vec![placed()])
        .when(complete("payment-1"))
        .then_expect_events(vec![completed("payment-1")]);
}

#[test]
fn complete_of_a_cancelled_order_is_refused() {
    for ending in [cancelled(), expired()] {
        framework()
            .given(vec![placed(), ending])
            .when(complete("payment-1"))
            .then_expect_error_message("Cannot pay for an cancelled order");
    }
}

#[test]
fn complete_again_with_the_same_payment_is_a_no_op() {
    framework()
        .given(vec![placed(), completed("payment-1")])
        .when(complete("payment-1"))
        .then_expect_events(vec![]);
}

#[test]
fn complete_with_a_payment_that_already_failed_is_refused() {
    // A late success of a failed attempt must not pay the order: the
    // attempt was settled as failed and the buyer may be on the next one.
    framework()
        .given(vec![
            placed(),
            payment_started("payment-1", 1),
            payment_failed("payment-1"),
        ])
        .when(complete("payment-1"))
        .then_expect_error_message("This payment is not the order's payment in flight");
    framework()
        .given(vec![
            placed(),
            payment_started("payment-1", 1),
            payment_failed("payment-1"),
            payment_started("payment-2", 2),
        ])
        .when(complete("payment-1"))
        .then_expect_error(OrderError::PaymentInProgress);
}

#[test]
fn complete_with_another_payment_is_refused() {
    framework()
        .given(vec![placed(), completed("payment-1")])
        .when(complete("payment-2"))
        .then_expect_error_message("Order has already been paid");
}

#[test]
fn state_follows_the_events() {
    let missing = Order::default();
    assert!(!missing.exists());
    assert_eq!(missing.version(), 0);
    assert_eq!(missing.ticket(), None);

    let order = replay(vec![placed()]);
    assert!(order.exists());
    assert_eq!(order.user_id(), BUYER);
    assert_eq!(order.status(), OrderStatus::Created);
    assert_eq!(order.ticket(), Some(&ticket()));
    assert_eq!(order.expires_at(), Some(expiry()));
    assert_eq!(order.payment_id(), None);
    assert_eq!(order.version(), 0);

    assert_eq!(
        replay(vec![placed(), cancelled()]).status(),
        OrderStatus::Cancelled
    );
    assert_eq!(
        replay(vec![placed(), expired()]).status(),
        OrderStatus::Cancelled
    );
    let paid = replay(vec![placed(), completed("payment-1")]);
    assert_eq!(paid.status(), OrderStatus::Complete);
    assert_eq!(paid.payment_id(), Some("payment-1"));
    assert_eq!(paid.version(), 1);
}

#[test]
fn status_names_are_lowercase() {
    let cases = [
        (OrderStatus::Created, "created"),
        (OrderStatus::Cancelled, "cancelled"),
        (OrderStatus::AwaitingPayment, "awaiting:payment"),
        (OrderStatus::Complete, "complete"),
    ];
    for (status, name) in cases {
        assert_eq!(status.as_str(), name);
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            format!("\"{name}\"")
        );
    }
    assert_eq!(OrderStatus::default(), OrderStatus::Created);
}

#[test]
fn events_are_named_and_versioned() {
    let cases = [
        (placed(), "OrderPlaced"),
        (cancelled(), "OrderCancelled"),
        (expired(), "OrderExpired"),
        (completed("payment-1"), "OrderCompleted"),
        (payment_started("payment-1", 1), "OrderPaymentStarted"),
        (payment_failed("payment-1"), "OrderPaymentFailed"),
    ];
    for (event, name) in cases {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1.0");
    }
    assert_eq!(Order::TYPE, "Order");
}

#[test]
fn events_and_state_round_trip_through_json() {
    let json = serde_json::to_string(&placed()).unwrap();
    assert_eq!(serde_json::from_str::<OrderEvent>(&json).unwrap(), placed());
    let order = replay(vec![placed(), completed("payment-1")]);
    let json = serde_json::to_string(&order).unwrap();
    assert_eq!(serde_json::from_str::<Order>(&json).unwrap(), order);
}

#[test]
fn messages_match_the_api() {
    let cases = [
        (OrderError::AlreadyExists, "Order already exists"),
        (OrderError::NotFound, "Not Found"),
        (OrderError::NotOwner, "Not authorized"),
        (
            OrderError::AlreadyComplete,
            "Cannot cancel a completed order",
        ),
        (OrderError::Cancelled, "Cannot pay for an cancelled order"),
        (OrderError::AlreadyPaid, "Order has already been paid"),
        (OrderError::NotYetExpired, "Order has not expired yet"),
        (
            OrderError::PaymentInProgress,
            "A payment for this order is already in progress",
        ),
        (
            OrderError::PaymentNotInFlight,
            "This payment is not the order's payment in flight",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn the_owner_starts_paying_an_open_order() {
    framework()
        .given(vec![placed()])
        .when(start_payment("payment-1", BUYER, before_expiry()))
        .then_expect_events(vec![payment_started("payment-1", 1)]);
}

#[test]
fn another_user_cannot_pay() {
    framework()
        .given(vec![placed()])
        .when(start_payment("payment-1", "user-2", before_expiry()))
        .then_expect_error(OrderError::NotOwner);
}

#[test]
fn paying_a_cancelled_or_lapsed_order_is_refused() {
    for history in [vec![placed(), cancelled()], vec![placed(), expired()]] {
        framework()
            .given(history)
            .when(start_payment("payment-1", BUYER, before_expiry()))
            .then_expect_error_message("Cannot pay for an cancelled order");
    }
    // Past the deadline, before the timer fired.
    framework()
        .given(vec![placed()])
        .when(start_payment("payment-1", BUYER, expiry()))
        .then_expect_error(OrderError::Cancelled);
}

#[test]
fn paying_a_complete_order_again_is_refused() {
    framework()
        .given(vec![
            placed(),
            payment_started("payment-1", 1),
            completed("payment-1"),
        ])
        .when(start_payment("payment-2", BUYER, before_expiry()))
        .then_expect_error(OrderError::AlreadyPaid);
}

#[test]
fn one_payment_at_a_time_and_a_retried_start_is_a_no_op() {
    let history = vec![placed(), payment_started("payment-1", 1)];
    framework()
        .given(history.clone())
        .when(start_payment("payment-2", BUYER, before_expiry()))
        .then_expect_error(OrderError::PaymentInProgress);
    framework()
        .given(history)
        .when(start_payment("payment-1", BUYER, before_expiry()))
        .then_expect_events(vec![]);
}

#[test]
fn an_order_being_paid_is_neither_cancelled_nor_expired() {
    let history = vec![placed(), payment_started("payment-1", 1)];
    framework()
        .given(history.clone())
        .when(cancel(BUYER))
        .then_expect_error(OrderError::PaymentInProgress);
    framework()
        .given(history)
        .when(expire_at(expiry() + Duration::hours(1)))
        .then_expect_error(OrderError::PaymentInProgress);
}

#[test]
fn a_failed_payment_makes_the_order_payable_again_with_the_next_attempt() {
    framework()
        .given(vec![placed(), payment_started("payment-1", 1)])
        .when(fail_payment("payment-1"))
        .then_expect_events(vec![payment_failed("payment-1")]);
    framework()
        .given(vec![
            placed(),
            payment_started("payment-1", 1),
            payment_failed("payment-1"),
        ])
        .when(start_payment("payment-2", BUYER, before_expiry()))
        .then_expect_events(vec![payment_started("payment-2", 2)]);
}

#[test]
fn a_failed_payment_is_never_started_again() {
    // A client retrying a request whose payment failed (its Idempotency-Key
    // keeps the payment id across a 503) must not start it as a new
    // attempt: the payment is recorded as failed, so a charge made for it
    // could never complete the order, which would stay awaiting payment.
    framework()
        .given(vec![
            placed(),
            payment_started("payment-1", 1),
            payment_failed("payment-1"),
        ])
        .when(start_payment("payment-1", BUYER, before_expiry()))
        .then_expect_error(OrderError::PaymentNotInFlight);
}

#[test]
fn failing_a_payment_that_is_not_in_flight_is_a_no_op() {
    for history in [
        vec![placed()],
        vec![placed(), payment_started("payment-1", 1)],
        vec![
            placed(),
            payment_started("payment-2", 1),
            completed("payment-2"),
        ],
    ] {
        framework()
            .given(history)
            .when(fail_payment("payment-3"))
            .then_expect_events(vec![]);
    }
}

#[test]
fn only_the_payment_in_flight_completes_the_order() {
    let history = vec![placed(), payment_started("payment-1", 1)];
    framework()
        .given(history.clone())
        .when(complete("payment-1"))
        .then_expect_events(vec![completed("payment-1")]);
    framework()
        .given(history)
        .when(complete("payment-2"))
        .then_expect_error(OrderError::PaymentInProgress);
}

#[test]
fn payment_state_follows_the_events() {
    let paying = replay(vec![placed(), payment_started("payment-1", 1)]);
    assert_eq!(paying.status(), OrderStatus::AwaitingPayment);
    assert_eq!(paying.payment_id(), Some("payment-1"));
    assert_eq!(paying.payment_attempts(), 1);
    let payable = replay(vec![
        placed(),
        payment_started("payment-1", 1),
        payment_failed("payment-1"),
    ]);
    assert_eq!(payable.status(), OrderStatus::Created);
    assert_eq!(payable.payment_id(), None);
    assert_eq!(payable.payment_attempts(), 1);
    assert_eq!(payable.version(), 2);
}

#[test]
fn no_payment_starts_past_the_attempts_cap() {
    // Three attempts failed (the cap in `start_payment` is 3).
    let history = vec![
        placed(),
        payment_started("payment-1", 1),
        payment_failed("payment-1"),
        payment_started("payment-2", 2),
        payment_failed("payment-2"),
        payment_started("payment-3", 3),
        payment_failed("payment-3"),
    ];
    framework()
        .given(history)
        .when(start_payment("payment-4", BUYER, before_expiry()))
        .then_expect_error(OrderError::TooManyPaymentAttempts);
}
