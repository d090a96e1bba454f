#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;

use super::{Ticket, TicketCommand, TicketError, TicketEvent};
use crate::{Money, Title};

type TicketTestFramework = TestFramework<Ticket>;

const OWNER: &str = "user-1";

fn framework() -> TicketTestFramework {
    TicketTestFramework::with(())
}

fn expiry() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 15, 0).unwrap()
}

fn created() -> TicketEvent {
    TicketEvent::TicketCreated {
        title: "concert".to_owned(),
        price_cents: 2_000,
        user_id: OWNER.to_owned(),
        currency: "usd".to_owned(),
    }
}

fn reserved(order_id: &str) -> TicketEvent {
    TicketEvent::TicketReserved {
        order_id: order_id.to_owned(),
        expires_at: expiry(),
    }
}

fn released(order_id: &str) -> TicketEvent {
    TicketEvent::TicketReleased {
        order_id: order_id.to_owned(),
    }
}

fn create(user_id: &str) -> TicketCommand {
    TicketCommand::Create {
        title: Title::parse("concert").unwrap(),
        price: Money::from_cents(2_000).unwrap(),
        user_id: user_id.to_owned(),
    }
}

fn update(user_id: &str) -> TicketCommand {
    TicketCommand::Update {
        title: Title::parse("new title").unwrap(),
        price: Money::from_cents(1_999).unwrap(),
        user_id: user_id.to_owned(),
    }
}

fn reserve(order_id: &str) -> TicketCommand {
    TicketCommand::Reserve {
        order_id: order_id.to_owned(),
        expires_at: expiry(),
    }
}

fn release(order_id: &str) -> TicketCommand {
    TicketCommand::Release {
        order_id: order_id.to_owned(),
    }
}

fn replay(events: Vec<TicketEvent>) -> Ticket {
    let mut ticket = Ticket::default();
    for event in events {
        ticket.apply(event);
    }
    ticket
}

#[test]
fn create_records_the_ticket() {
    framework()
        .given_no_previous_events()
        .when(create(OWNER))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_twice_is_refused() {
    framework()
        .given(vec![created()])
        .when(create(OWNER))
        .then_expect_error(TicketError::AlreadyExists);
}

#[test]
fn commands_on_a_missing_ticket_are_not_found() {
    for command in [update(OWNER), reserve("order-1"), release("order-1")] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error_message("Not Found");
    }
}

#[test]
fn owner_updates_an_unreserved_ticket() {
    framework()
        .given(vec![created()])
        .when(update(OWNER))
        .then_expect_events(vec![TicketEvent::TicketUpdated {
            title: "new title".to_owned(),
            price_cents: 1_999,
        }]);
}

#[test]
fn update_after_release_is_allowed() {
    framework()
        .given(vec![created(), reserved("order-1"), released("order-1")])
        .when(update(OWNER))
        .then_expect_events(vec![TicketEvent::TicketUpdated {
            title: "new title".to_owned(),
            price_cents: 1_999,
        }]);
}

#[test]
fn update_by_another_user_is_refused() {
    framework()
        .given(vec![created()])
        .when(update("user-2"))
        .then_expect_error_message("Not authorized");
}

#[test]
fn update_of_a_reserved_ticket_is_refused() {
    framework()
        .given(vec![created(), reserved("order-1")])
        .when(update(OWNER))
        .then_expect_error_message("Cannot edit a reserved ticket");
}

#[test]
fn update_reports_reserved_before_ownership() {
    framework()
        .given(vec![created(), reserved("order-1")])
        .when(update("user-2"))
        .then_expect_error(TicketError::Reserved);
}

#[test]
fn reserve_holds_a_free_ticket() {
    framework()
        .given(vec![created()])
        .when(reserve("order-1"))
        .then_expect_events(vec![reserved("order-1")]);
}

#[test]
fn reserve_again_for_the_same_order_is_a_no_op() {
    framework()
        .given(vec![created(), reserved("order-1")])
        .when(reserve("order-1"))
        .then_expect_events(vec![]);
}

#[test]
fn reserve_for_another_order_is_refused() {
    framework()
        .given(vec![created(), reserved("order-1")])
        .when(reserve("order-2"))
        .then_expect_error_message("Ticket is already reserved");
}

#[test]
fn reserve_after_release_is_allowed() {
    framework()
        .given(vec![created(), reserved("order-1"), released("order-1")])
        .when(reserve("order-2"))
        .then_expect_events(vec![reserved("order-2")]);
}

#[test]
fn release_by_the_holding_order_frees_the_ticket() {
    framework()
        .given(vec![created(), reserved("order-1")])
        .when(release("order-1"))
        .then_expect_events(vec![released("order-1")]);
}

#[test]
fn release_by_another_order_is_a_no_op() {
    framework()
        .given(vec![created(), reserved("order-1")])
        .when(release("order-2"))
        .then_expect_events(vec![]);
}

#[test]
fn release_of_a_free_ticket_is_a_no_op() {
    framework()
        .given(vec![created()])
        .when(release("order-1"))
        .then_expect_events(vec![]);
}

#[test]
fn release_twice_is_a_no_op() {
    framework()
        .given(vec![created(), reserved("order-1"), released("order-1")])
        .when(release("order-1"))
        .then_expect_events(vec![]);
}

#[test]
fn state_follows_the_events() {
    let missing = Ticket::default();
    assert!(!missing.exists());
    assert_eq!(missing.version(), 0);
    assert_eq!(missing.order_id(), None);

    let ticket = replay(vec![created(), reserved("order-1")]);
    assert!(ticket.exists());
    assert_eq!(ticket.title(), "concert");
    assert_eq!(ticket.price(), Money::from_cents(2_000).unwrap());
    assert_eq!(ticket.user_id(), OWNER);
    assert_eq!(ticket.order_id(), Some("order-1"));
    assert_eq!(ticket.reservation_expires_at(), Some(expiry()));

    let ticket = replay(vec![created(), reserved("order-1"), released("order-1")]);
    assert_eq!(ticket.order_id(), None);
    assert_eq!(ticket.reservation_expires_at(), None);
}

#[test]
fn version_counts_every_change_after_creation() {
    assert_eq!(replay(vec![created()]).version(), 0);
    let update = TicketEvent::TicketUpdated {
        title: "new title".to_owned(),
        price_cents: 1_999,
    };
    let ticket = replay(vec![created(), update.clone()]);
    assert_eq!(ticket.version(), 1);
    assert_eq!(ticket.title(), "new title");
    assert_eq!(ticket.price().cents(), 1_999);
    let history = vec![created(), reserved("order-1"), released("order-1"), update];
    assert_eq!(replay(history).version(), 3);
}

#[test]
fn events_are_named_and_versioned() {
    let cases = [
        (created(), "TicketCreated"),
        (
            TicketEvent::TicketUpdated {
                title: "t".to_owned(),
                price_cents: 1,
            },
            "TicketUpdated",
        ),
        (reserved("order-1"), "TicketReserved"),
        (released("order-1"), "TicketReleased"),
    ];
    for (event, name) in cases {
        assert_eq!(event.event_type(), name);
        let expected = if name == "TicketCreated" {
            "1.1"
        } else {
            "1.0"
        };
        assert_eq!(event.event_version(), expected, "{name}");
    }
    assert_eq!(Ticket::TYPE, "Ticket");
}

#[test]
fn events_and_state_round_trip_through_json() {
    let event = reserved("order-1");
    let json = serde_json::to_string(&event).unwrap();
    assert_eq!(serde_json::from_str::<TicketEvent>(&json).unwrap(), event);
    let ticket = replay(vec![created(), event]);
    let json = serde_json::to_string(&ticket).unwrap();
    assert_eq!(serde_json::from_str::<Ticket>(&json).unwrap(), ticket);
}

#[test]
fn messages_match_the_api() {
    let cases = [
        (TicketError::AlreadyExists, "Ticket already exists"),
        (TicketError::NotFound, "Not Found"),
        (TicketError::Reserved, "Cannot edit a reserved ticket"),
        (TicketError::NotOwner, "Not authorized"),
        (TicketError::AlreadyReserved, "Ticket is already reserved"),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

fn stored(event_type: &str, version: &str, payload: serde_json::Value) -> SerializedEvent {
    SerializedEvent::new(
        "ticket-1".to_owned(),
        1,
        Ticket::TYPE.to_owned(),
        event_type.to_owned(),
        version.to_owned(),
        payload,
        serde_json::Value::Null,
    )
}

#[test]
fn a_ticket_created_at_1_0_loads_with_the_default_currency() {
    let old = stored(
        "TicketCreated",
        "1.0",
        json!({"TicketCreated": {"title": "concert", "price_cents": 2000, "user_id": OWNER}}),
    );
    assert!(serde_json::from_value::<TicketEvent>(old.payload.clone()).is_err());

    let lifted = crate::upcasting::upcast(old);

    assert_eq!(lifted.event_version, "1.1.0");
    let event: TicketEvent = serde_json::from_value(lifted.payload).unwrap();
    assert_eq!(event, created());
    assert_eq!(replay(vec![event]).currency(), "usd");
}

#[test]
fn a_current_event_is_not_upcast() {
    let mut payload = serde_json::to_value(created()).unwrap();
    payload["TicketCreated"]["currency"] = json!("eur");
    let current = stored("TicketCreated", "1.1", payload.clone());

    let lifted = crate::upcasting::upcast(current);

    assert_eq!(
        (lifted.event_version.as_str(), lifted.payload),
        ("1.1", payload)
    );
}

#[test]
fn other_ticket_events_at_1_0_are_left_alone() {
    let payload = serde_json::to_value(released("order-1")).unwrap();
    let lifted = crate::upcasting::upcast(stored("TicketReleased", "1.0", payload.clone()));
    assert_eq!(lifted.payload, payload);
}
