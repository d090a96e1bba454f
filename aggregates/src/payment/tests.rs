#![allow(clippy::unwrap_used)]

use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};

use super::{Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentStatus};
use crate::Money;

type PaymentTestFramework = TestFramework<Payment>;

fn framework() -> PaymentTestFramework {
    PaymentTestFramework::with(())
}

fn requested() -> PaymentEvent {
    PaymentEvent::PaymentRequested {
        order_id: "order-1".to_owned(),
        user_id: "user-1".to_owned(),
        amount_cents: 1_999,
        currency: "usd".to_owned(),
    }
}

fn succeeded(stripe_id: &str) -> PaymentEvent {
    PaymentEvent::PaymentSucceeded {
        stripe_id: stripe_id.to_owned(),
    }
}

fn failed() -> PaymentEvent {
    PaymentEvent::PaymentFailed {
        reason: "card declined".to_owned(),
    }
}

fn request() -> PaymentCommand {
    PaymentCommand::Request {
        order_id: "order-1".to_owned(),
        user_id: "user-1".to_owned(),
        amount: Money::from_cents(1_999).unwrap(),
    }
}

fn succeed(stripe_id: &str) -> PaymentCommand {
    PaymentCommand::Succeed {
        stripe_id: stripe_id.to_owned(),
    }
}

fn fail() -> PaymentCommand {
    PaymentCommand::Fail {
        reason: "card declined".to_owned(),
    }
}

fn replay(events: Vec<PaymentEvent>) -> Payment {
    let mut payment = Payment::default();
    for event in events {
        payment.apply(event);
    }
    payment
}

#[test]
fn request_records_a_usd_charge() {
    framework()
        .given_no_previous_events()
        .when(request())
        .then_expect_events(vec![requested()]);
}

#[test]
fn request_twice_is_refused() {
    framework()
        .given(vec![requested()])
        .when(request())
        .then_expect_error_message("Payment already requested");
}

#[test]
fn outcomes_for_a_missing_payment_are_not_found() {
    for command in [succeed("ch_1"), fail()] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error_message("Not Found");
    }
}

#[test]
fn succeed_settles_a_pending_payment() {
    framework()
        .given(vec![requested()])
        .when(succeed("ch_1"))
        .then_expect_events(vec![succeeded("ch_1")]);
}

#[test]
fn fail_settles_a_pending_payment() {
    framework()
        .given(vec![requested()])
        .when(fail())
        .then_expect_events(vec![failed()]);
}

#[test]
fn succeed_again_with_the_same_charge_is_a_no_op() {
    framework()
        .given(vec![requested(), succeeded("ch_1")])
        .when(succeed("ch_1"))
        .then_expect_events(vec![]);
}

#[test]
fn succeed_with_another_charge_is_refused() {
    framework()
        .given(vec![requested(), succeeded("ch_1")])
        .when(succeed("ch_2"))
        .then_expect_error(PaymentError::AlreadySettled);
}

#[test]
fn fail_after_success_is_refused() {
    framework()
        .given(vec![requested(), succeeded("ch_1")])
        .when(fail())
        .then_expect_error_message("Payment already settled");
}

#[test]
fn nothing_changes_a_failed_payment() {
    for command in [succeed("ch_1"), fail()] {
        framework()
            .given(vec![requested(), failed()])
            .when(command)
            .then_expect_error(PaymentError::AlreadySettled);
    }
}

#[test]
fn state_follows_the_events() {
    let missing = Payment::default();
    assert!(!missing.exists());
    assert_eq!(missing.version(), 0);

    let pending = replay(vec![requested()]);
    assert!(pending.exists());
    assert_eq!(pending.order_id(), "order-1");
    assert_eq!(pending.user_id(), "user-1");
    assert_eq!(pending.amount(), Money::from_cents(1_999).unwrap());
    assert_eq!(pending.status(), PaymentStatus::Pending);
    assert_eq!(pending.stripe_id(), None);
    assert_eq!(pending.version(), 0);

    let paid = replay(vec![requested(), succeeded("ch_1")]);
    assert_eq!(paid.status(), PaymentStatus::Succeeded);
    assert_eq!(paid.stripe_id(), Some("ch_1"));
    assert_eq!(paid.version(), 1);

    let declined = replay(vec![requested(), failed()]);
    assert_eq!(declined.status(), PaymentStatus::Failed);
    assert_eq!(declined.stripe_id(), None);
}

#[test]
fn status_names_are_lowercase() {
    let cases = [
        (PaymentStatus::Pending, "pending"),
        (PaymentStatus::Succeeded, "succeeded"),
        (PaymentStatus::Failed, "failed"),
    ];
    for (status, name) in cases {
        assert_eq!(status.as_str(), name);
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            format!("\"{name}\"")
        );
    }
    assert_eq!(PaymentStatus::default(), PaymentStatus::Pending);
}

#[test]
fn events_are_named_and_versioned() {
    let cases = [
        (requested(), "PaymentRequested"),
        (succeeded("ch_1"), "PaymentSucceeded"),
        (failed(), "PaymentFailed"),
    ];
    for (event, name) in cases {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1.0");
    }
    assert_eq!(Payment::TYPE, "Payment");
}

#[test]
fn events_and_state_round_trip_through_json() {
    let json = serde_json::to_string(&requested()).unwrap();
    assert_eq!(
        serde_json::from_str::<PaymentEvent>(&json).unwrap(),
        requested()
    );
    let payment = replay(vec![requested(), succeeded("ch_1")]);
    let json = serde_json::to_string(&payment).unwrap();
    assert_eq!(serde_json::from_str::<Payment>(&json).unwrap(), payment);
}

#[test]
fn messages_match_the_api() {
    let cases = [
        (PaymentError::AlreadyExists, "Payment already requested"),
        (PaymentError::NotFound, "Not Found"),
        (PaymentError::AlreadySettled, "Payment already settled"),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}
